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
    one host are refused: their schedules would fight."""
    from sqlalchemy import and_, select
    from cronpolicy.tooling.tables import script_schedule
    names = collections.Counter(job.name for job in jobs)
    doubled = sorted(name for name, count in names.items() if count > 1)
    if doubled:
        raise UsageError("more than one job is named %s on this host: give each its own name "
                         "(# cronpolicy: name=... above the line)" % ", ".join(doubled))
    # refused: rows of a host this login may not write as (row-level
    # security lets it read them, not change them).
    outcome = {"added": [], "changed": [], "unchanged": [], "removed": [], "refused": []}
    with db.begin("register the schedules of %s" % host) as connection:
        existing = {row["name"]: row for row in connection.execute(
            select(script_schedule).where(script_schedule.c.host == host)).mappings()}
        for job in jobs:
            origin = "%s line %d" % (job.path if job.path == "-" else os.path.abspath(job.path),
                                     job.number)
            values = {"schedule": job.schedule, "schedule_tz": job.tz, "origin": origin}
            values.update(db.who_columns("registered_by"))
            before = existing.get(job.name)
            where = and_(script_schedule.c.name == job.name, script_schedule.c.host == host)
            if before is None:
                connection.execute(script_schedule.insert().values(name=job.name, host=host,
                                                                   **values))
                outcome["added"].append(job.name)
            elif (before["schedule"], before["schedule_tz"], before["origin"]) != (
                    job.schedule, job.tz, origin):
                done = connection.execute(script_schedule.update().where(where).values(
                    registered_at=db.now(connection), **values)).rowcount
                outcome["changed" if done else "refused"].append(job.name)
            else:
                outcome["unchanged"].append(job.name)
        if replace:
            for name in sorted(set(existing) - set(names)):
                done = connection.execute(script_schedule.delete().where(and_(
                    script_schedule.c.name == name, script_schedule.c.host == host))).rowcount
                outcome["removed" if done else "refused"].append(name)
    return outcome


def register_crontabs(settings, crontabs, time_zone=None, replace=False, warn=None):
    """Register the jobs of ``crontabs`` for this host; (outcome, jobs), with
    what was left out said through ``warn``."""
    from cronpolicy.tooling.database import Database
    jobs, left = crontab_jobs(crontabs, time_zone or host_time_zone())
    for path, number, name, problem in left:
        if warn is not None:
            warn("%s, line %d: %s: not registered: %s" % (
                "standard input" if path == "-" else path, number, name, problem))
    return register(Database(settings), jobs, settings.host, replace=replace), jobs


def fleet_schedules(reader, inputs, warn=None, host="*", script="*", scheduled_only=False,
                    first_after=None):
    """{(name, host): Schedule or None} for every script and host seen in
    the last 30 days, registered, or named by a policy row for a host, as
    ``reader`` (store.reads.Reader) reads them, among ``host`` and
    ``script`` (globs).  ``scheduled_only``: the caller wants only those
    with a schedule (others may be left out): the scripts seen are then
    looked for only when a policy row gives schedules (the rest have theirs
    from a crontab or their own start), a read of 30 days of history that
    took most of `status`'s time on a fleet of thousands of jobs.
    ``first_after``: a moment whose next start the caller will ask of each
    (schedule.Schedule's)."""
    from cronpolicy.matching import glob_matches, is_pattern
    registered, declared = reader.schedule_sources(inputs.now - RECENT)
    pairs = set(registered) | set(declared)
    if not scheduled_only or any(row.schedule is not None for row in inputs.policies):
        pairs |= set(reader.recent_pairs(inputs.now - RECENT))
    # A script only a policy row names, on no host seen yet: "*", its hosts.
    seen = {name for name, _ in pairs}
    pairs |= {(row.name, row.host if not is_pattern(row.host) else "*")
              for row in inputs.policies if not is_pattern(row.name) and row.name not in seen}
    rows = schedules.schedule_rows(inputs.policies)
    return {(name, on): schedules.resolve(rows, registered, declared, name, on, warn,
                                          first_after)
            for name, on in sorted(pairs)
            if glob_matches(script, name) and glob_matches(host, on)}


def fleet_starts(reader, inputs, warn=None, host="*", script="*"):
    """[(next start after inputs.now or None, name, host)] of every pair
    fleet_schedules(..., scheduled_only=True) gives a schedule, with the
    same warnings in the same order, in no order: status's text shows only
    how many there are and the first three (on a fleet of 5,000 a Schedule
    and a row each were a fifth of its time).

    When no policy row sets a schedule, a pair's schedule is its host's
    crontab line if that reads, else what the script declared: each line
    that reads takes its expression's start (worked out once per
    expression), and only the others (a line that does not read, a script
    that only declared) are resolved as fleet_schedules resolves them, in
    its order (a pair a policy row alone names has no schedule then).
    Otherwise every pair is resolved by fleet_schedules."""
    from cronpolicy.matching import glob_matches
    now = inputs.now
    if any(row.schedule is not None for row in inputs.policies):
        return [(found.next_after(now), name, on) for (name, on), found in fleet_schedules(
            reader, inputs, warn, host, script, scheduled_only=True, first_after=now).items()
            if found is not None]
    every = script == "*" and host == "*"
    declared = reader.declared_schedules(now - RECENT)
    found, known, unread, invalid = [], {}, {}, object()
    for name, on, expression, tz, origin in reader.schedule_lines():
        if not every and not (glob_matches(script, name) and glob_matches(host, on)):
            continue
        start = known.get((expression, tz), known)
        if start is known:
            # (no warning here: a line that does not read is resolved
            # below, which says it as fleet_schedules would)
            schedule = schedules.maybe_schedule(expression, tz, first_after=now)
            start = known[expression, tz] = (invalid if schedule is None else
                                             schedule.next_after(now))
        if start is invalid:
            unread[name, on] = {"schedule": expression, "schedule_tz": tz, "origin": origin}
        else:
            found.append((start, name, on))
    rest = set(unread)
    if declared:
        registered = {(name, on) for _, name, on in found}
        rest |= {pair for pair in declared if pair not in registered and (
            every or glob_matches(script, pair[0]) and glob_matches(host, pair[1]))}
    rest = sorted(rest)
    for name, on in rest:
        schedule = schedules.resolve((), unread, declared, name, on, warn, now)
        if schedule is not None:
            found.append((schedule.next_after(now), name, on))
    return found


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
