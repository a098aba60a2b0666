"""Schedules: registering a host's crontab, and what each script runs by.

`cronpolicy schedule import [FILES...]` (and `crontab wrap --register`)
reads the crontabs of this host, names each job as `crontab wrap` names it,
and registers its schedule for this host in cronpolicy.script_schedule: the
five fields (or @keyword) of the line, in the time zone cron reads them in
(a CRON_TZ line above it, else this host's own zone).  A line cron would
not run as a schedule (@reboot) is said and left out.

``fleet_schedules`` is what the tooling plans with: for every script and
host seen lately, the schedule ``cronpolicy.schedule.resolve`` picks.
"""

import collections
import datetime
import os

from cronpolicy import schedule as schedules
from cronpolicy.errors import UsageError

#: One job of a crontab, as registered: its file and line, name, schedule
#: expression and time zone (None: UTC).
CrontabJob = collections.namedtuple("CrontabJob", "path number name schedule tz")

#: How far back the history is read for the scripts and hosts a rollout may meet.
RECENT = datetime.timedelta(days=30)


def host_time_zone():
    """The IANA name of this host's time zone, which cron reads schedules in
    (/etc/timezone, else the /etc/localtime link), or None for UTC.  Not
    the TZ of whoever runs the command: cron does not read it."""
    candidates = []
    try:
        with open("/etc/timezone", encoding="utf-8") as handle:
            candidates.append(handle.read().strip())
    except OSError:
        pass
    try:
        link = os.readlink("/etc/localtime")
        candidates.append(link.split("zoneinfo/", 1)[1] if "zoneinfo/" in link else "")
    except OSError:
        pass
    for candidate in candidates:
        if candidate and schedules.schedule_problem("@daily", candidate) is None:
            return None if candidate in ("UTC", "Etc/UTC") else candidate
    return None


def crontab_jobs(crontabs, default_tz=None):
    """([CrontabJob], [(path, line, name, problem)]): the jobs of ``crontabs``
    (tooling.crontab.Crontab) with the names wrap gives them, and what was
    left out (lines whose schedule cronpolicy cannot read, and why)."""
    from cronpolicy.tooling.crontab import name_files
    from cronpolicy.tooling.crontab.lines import parse_crontab, schedule_of
    jobs, left = [], []
    for crontab, named in zip(crontabs, name_files(crontabs)):
        entries = {entry.number: entry for entry in parse_crontab(crontab.text, crontab.system)}
        for job in named:
            entry = entries[job.number]
            expression = schedule_of(entry.job, crontab.system)
            zone = entry.cron_tz or default_tz
            problem = schedules.schedule_problem(expression, zone)
            if problem:
                left.append((crontab.path, job.number, job.name, problem))
                continue
            jobs.append(CrontabJob(crontab.path, job.number, job.name, expression,
                                   zone if zone not in ("UTC", "Etc/UTC") else None))
    return jobs, left


def register(db, jobs, host, replace=False):
    """Register ``jobs`` (CrontabJob) for ``host``; with ``replace``, the
    host's registrations no job names any more go.  Returns a dict of the
    names added, changed, unchanged, removed and refused (rows of a host
    this login may not write as: row-level security hides them from its
    changes; on PostgreSQL only).  Two jobs of one name on
    one host are refused: their schedules would fight.  ``db``: the
    commands' store.writes.Plain, or a tooling Database (plain SQL either way)."""
    from cronpolicy.store.writes import who
    names = collections.Counter(job.name for job in jobs)
    doubled = sorted(name for name, count in names.items() if count > 1)
    if doubled:
        raise UsageError("more than one job is named %s on this host: give each its own name "
                         "(# cronpolicy: name=... above the line)" % ", ".join(doubled))
    # refused: rows of a host this login may not write as (row-level
    # security lets it read them, not change them).
    outcome = {"added": [], "changed": [], "unchanged": [], "removed": [], "refused": []}
    with db.writing("register the schedules of %s" % host) as writer:
        existing = {row["name"]: row for row in writer.rows("host_schedules", {"host": host})}
        for job in jobs:
            origin = "%s line %d" % (job.path if job.path == "-" else os.path.abspath(job.path),
                                     job.number)
            values = {"name": job.name, "host": host, "schedule": job.schedule,
                      "schedule_tz": job.tz, "origin": origin, "who": who()}
            before = existing.get(job.name)
            if before is None:
                writer.count("add_schedule", values)
                outcome["added"].append(job.name)
            elif (before["schedule"], before["schedule_tz"], before["origin"]) != (
                    job.schedule, job.tz, origin):
                done = writer.count("set_schedule", dict(values, now=writer._time(writer.now())))
                outcome["changed" if done else "refused"].append(job.name)
            else:
                outcome["unchanged"].append(job.name)
        if replace:
            for name in sorted(set(existing) - set(names)):
                done = writer.count("drop_schedule", {"name": name, "host": host})
                outcome["removed" if done else "refused"].append(name)
    return outcome


def register_crontabs(settings, crontabs, time_zone=None, replace=False, warn=None):
    """Register the jobs of ``crontabs`` for this host; (outcome, jobs), with
    what was left out said through ``warn``."""
    from cronpolicy.store.writes import Plain
    jobs, left = crontab_jobs(crontabs, time_zone or host_time_zone())
    for path, number, name, problem in left:
        if warn is not None:
            warn("%s, line %d: %s: not registered: %s" % (
                "standard input" if path == "-" else path, number, name, problem))
    return register(Plain(settings), jobs, settings.host, replace=replace), jobs


def fleet_schedules(reader, inputs, warn=None, host="*", script="*", scheduled_only=False,
                    first_after=None, recent_pairs=None):
    """{(name, host): Schedule or None} for every script and host seen in
    the last 30 days, registered, or named by a policy row for a host, as
    ``reader`` (store.reads.Reader) reads them, among ``host`` and
    ``script`` (globs).  ``scheduled_only``: the caller wants only those
    with a schedule (others may be left out): the scripts seen are then
    looked for only when a policy row gives schedules (the rest have theirs
    from a crontab or their own start), a read of 30 days of history that
    took most of `status`'s time on a fleet of thousands of jobs.
    ``first_after``: a moment whose next start the caller will ask of each
    (schedule.Schedule's).  ``recent_pairs``: what asks the pairs seen
    since a moment (default reader.recent_pairs; overdue's also finds the
    last successes in the same pass)."""
    from cronpolicy.matching import glob_matches, is_pattern
    from cronpolicy.store.reads import registered_row
    # One host (no pattern): its rows only (`metrics --host H`, on every
    # host each minute, read the fleet's 5,000 each time).
    exact = host if host != "*" and not is_pattern(host) and recent_pairs is None else None
    registered, declared, pairs = _pairs_seen(reader, inputs, scheduled_only, exact,
                                              recent_pairs)
    named = _named_only_by_rows(inputs, pairs)
    if exact is not None and any(row.host == exact for row in named):
        # A row names on it a script it has not seen: only the whole
        # fleet's pairs tell whether any host has.
        registered, declared, pairs = _pairs_seen(reader, inputs, scheduled_only)
        named = _named_only_by_rows(inputs, pairs)
    # A script only a policy row names, on no host seen yet: "*", its hosts.
    pairs |= {(row.name, row.host if not is_pattern(row.host) else "*") for row in named}
    rows = schedules.schedule_rows(inputs.policies)
    every = script == "*" and host == "*"
    found = {}
    for name, on in sorted(pairs):
        if not every and not (glob_matches(script, name) and glob_matches(host, on)):
            continue
        line = registered.get((name, on))
        if line is None:
            found[name, on] = schedules.resolve(rows, {}, declared, name, on, warn,
                                                first_after)
        elif not rows:
            # resolve's steps when no policy row sets a schedule: the line,
            # else the script's declaration (a fleet's thousands of pairs,
            # without a dict of each line).
            found[name, on] = schedules.crontab_schedule(
                on, *line, warn, first_after) or schedules.resolve(
                    (), {}, declared, name, on, warn, first_after)
        else:
            found[name, on] = schedules.resolve(rows, {(name, on): registered_row(*line)},
                                                declared, name, on, warn, first_after)
    return found


def _pairs_seen(reader, inputs, scheduled_only, host=None, recent_pairs=None):
    """(registered, declared, pairs) of fleet_schedules: the pairs seen (of
    ``host`` only if given), registered or declared."""
    registered = reader.registered_since(host)
    declared = reader.declared_schedules(inputs.now - RECENT, host)
    pairs = set(registered) | set(declared)
    if not scheduled_only or any(row.schedule is not None for row in inputs.policies):
        since = inputs.now - RECENT
        pairs |= set(recent_pairs(since) if recent_pairs else reader.recent_pairs(since, host))
    return registered, declared, pairs


def _named_only_by_rows(inputs, pairs):
    """The policy rows naming (no pattern) a script none of ``pairs`` has."""
    from cronpolicy.matching import is_pattern
    seen = {name for name, _ in pairs}
    return [row for row in inputs.policies if not is_pattern(row.name) and row.name not in seen]


def listed_schedules(reader, now, warn=None, host="*", script="*"):
    """[dict of describe(schedule, now) with "name" and "host" first]
    of the pairs fleet_schedules(..., scheduled_only=True) gives a
    schedule, in its order, with its warnings; None when a policy row sets
    a schedule (then ask fleet_schedules).  `schedule list` shows every
    pair; a fleet's 5,000 share a few hundred (expression, zone): each of
    those is read as a Schedule once (its next start with it) and each pair
    that a readable crontab line gives a schedule is a dict of that, with
    its own origin, not a Schedule of its own.  The rest (a line that does
    not read, a script that only declared) is resolved as fleet_schedules
    resolves it."""
    from cronpolicy.matching import glob_matches
    if reader.policy_sets_schedule():
        return None
    every = script == "*" and host == "*"
    lines = {(line[0], line[1]): line for line in reader.schedule_lines()}
    declared = reader.declared_schedules(now - RECENT)
    read = {}
    listed = []
    # (A pair only a policy row names has no schedule: no row sets one.)
    for name, on in sorted(set(lines).union(declared)):
        if not every and not (glob_matches(script, name) and glob_matches(host, on)):
            continue
        line = lines.get((name, on))
        found = None
        if line is not None:
            # (what the row shows of the line's schedule: worked out once)
            key = (line[2], line[3])
            found = read.get(key, read)
            if found is read:
                schedule = schedules.maybe_schedule(line[2], line[3], first_after=now)
                found = read[key] = None if schedule is None else (
                    schedule.expression, schedule.tz, schedule.next_after(now))
        if found is not None:
            listed.append({"name": name, "host": on, "schedule": found[0],
                           "schedule_tz": found[1], "schedule_source": schedules.FROM_CRONTAB,
                           "schedule_origin": schedules.crontab_origin(on, line[4]),
                           "next_start": found[2]})
            continue
        registered = {} if line is None else {(name, on): {
            "schedule": line[2], "schedule_tz": line[3], "origin": line[4]}}
        found = schedules.resolve((), registered, declared, name, on, warn, now)
        if found is not None:
            listed.append(dict({"name": name, "host": on}, **describe(found, now)))
    return listed


def fleet_starts(reader, inputs, warn=None, host="*", script="*", limit=3):
    """(how many pairs fleet_schedules(..., scheduled_only=True) gives a
    schedule, the first ``limit`` of them as (next start after inputs.now
    or None, name, host) in status's order: soonest first, by name and host,
    those with no start last), with the same warnings in the same order:
    status's text shows only these (on a fleet of 5,000, a Schedule, a row
    and a next start each were most of its time).

    When no policy row sets a schedule, a pair's schedule is its host's
    crontab line if that reads, else what the script declared: the lines
    that read are counted and ranked by first_starts, and only the others
    (a line that does not read, a script that only declared) are resolved
    as fleet_schedules resolves them, in its order (a pair a policy row
    alone names has no schedule then).  Otherwise every pair is resolved by
    fleet_schedules."""
    from cronpolicy.matching import glob_matches
    now = inputs.now
    if any(row.schedule is not None for row in inputs.policies):
        found = [(schedule.next_after(now), name, on) for (name, on), schedule in
                 fleet_schedules(reader, inputs, warn, host, script, scheduled_only=True,
                                 first_after=now).items() if schedule is not None]
        return len(found), _first(found, limit)
    every = script == "*" and host == "*"
    declared = reader.declared_schedules(now - RECENT)
    lines = reader.schedule_lines()
    if not every:
        lines = [line for line in lines
                 if glob_matches(script, line[0]) and glob_matches(host, line[1])]
    count, first, unread = first_starts(lines, now, limit)
    rest = set(unread)
    if declared:
        registered = {(line[0], line[1]) for line in lines}.difference(unread)
        rest |= {pair for pair in declared if pair not in registered and (
            every or glob_matches(script, pair[0]) and glob_matches(host, pair[1]))}
    unread = {pair: {"schedule": line[2], "schedule_tz": line[3], "origin": line[4]}
              for pair, line in unread.items()}
    for name, on in sorted(rest):
        schedule = schedules.resolve((), unread, declared, name, on, warn, now)
        if schedule is not None:
            count += 1
            first.append((schedule.next_after(now), name, on))
    return count, _first(first, limit)


def _first(found, limit):
    """The first ``limit`` of (start or None, name, host): soonest first,
    then those with no start, by name and host ("scheduled"'s order)."""
    import heapq
    first = heapq.nsmallest(limit, [one for one in found if one[0] is not None])
    return first + sorted((one for one in found if one[0] is None),
                          key=lambda one: one[1:])[:limit - len(first)]


def first_starts(lines, now, limit=3):
    """(how many of ``lines`` (name, host, expression, tz, ...) read as
    schedules, the first ``limit`` of those as (start after ``now`` or None,
    name, host) in _first's order, {(name, host): line} of those that do not
    read).  Each expression is read once; its first start is worked out
    only when it is not known already (schedule.Schedule.next_known) and
    could be among the first: expressions whose start_bound (with their
    first name and host) comes after the last of the first so far are left
    alone (on a fleet of 5,000 schedules, all but a few dozen of its
    hundreds of expressions)."""
    by_key = {}
    for line in lines:
        by_key.setdefault((line[2], line[3]), []).append(line)
    count, known, bounded, unread = 0, [], [], {}
    for (expression, tz), found in by_key.items():
        schedule = schedules.maybe_schedule(expression, tz)
        if schedule is None:
            unread.update(((line[0], line[1]), line) for line in found)
            continue
        count += len(found)
        pairs = sorted((line[0], line[1]) for line in found)
        start = schedule.next_known(now)
        if start is schedule:
            bound = schedule.start_bound(now)
            if bound is not None:
                bounded.append((bound, pairs[0], schedule, pairs))
                continue
            start = schedule.next_after(now)
        known.append((start, pairs))

    def first_of(entries):
        return _first([(start, name, on) for start, pairs in entries
                       for name, on in pairs[:limit]], limit)

    first = first_of(known)
    bounded.sort(key=lambda entry: entry[:2])
    for bound, (name, on), schedule, pairs in bounded:
        if len(first) >= limit and first[-1][0] is not None and \
                (bound, name, on) > first[-1]:
            break       # (and every later one: its start is at its bound or after)
        known.append((schedule.next_after(now), pairs))
        first = first_of([(first_start, [(first_name, first_host)])
                          for first_start, first_name, first_host in first] +
                         [known[-1]])
    return count, first, unread


def describe(found, now):
    """A schedule as the commands show it: a dict with its next start."""
    if found is None:
        return {"schedule": None, "schedule_tz": None, "schedule_source": None,
                "schedule_origin": None, "next_start": None}
    return {"schedule": found.expression, "schedule_tz": found.tz,
            "schedule_source": found.source, "schedule_origin": found.origin,
            "next_start": found.next_after(now)}


def schedules_of(reader, inputs, pairs, warn=None):
    """{(name, host): Schedule or None} for the given pairs."""
    registered, declared = reader.schedule_sources(inputs.now - RECENT)
    rows = schedules.schedule_rows(inputs.policies)
    return {(name, on): schedules.resolve(rows, registered, declared, name, on, warn)
            for name, on in pairs}


def upcoming(found, now, limit=None):
    """[(next start, name, host, Schedule)] of ``found`` ({pair: Schedule}),
    soonest first."""
    starts = sorted((schedule.next_after(now), name, host, schedule)
                    for (name, host), schedule in found.items()
                    if schedule is not None and schedule.next_after(now) is not None)
    return starts[:limit] if limit else starts
