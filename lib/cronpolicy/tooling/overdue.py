"""Jobs that have not succeeded for too long: what every skipped deploy risks.

By schedule (issue 15): a script with a schedule on a host is overdue there
when its last success there started before the newest scheduled start
whose run should have succeeded by now (that start, plus its estimate,
plus a grace); and it is starving when the last ``starving`` rollouts in a
row skipped it (deploys or windows; ``planning.starving``).  Those reports
say ``"kind": "schedule"``; the ones below, ``"kind": "interval"``.


A script declares how often it should succeed (the class's
``expected_interval``, recorded with each run) or a DBA does (the policy
column ``script_policy.expected_interval``, which wins; which row applies is
``policy.expected_interval``).  A script is overdue when its last success
(or, if it never succeeded, the first we heard of it) is older than that
interval times a tolerance.  For each overdue script the report says what
happened since: skipped by policy (and the last reason), failing (and the
last exit code), or not started at all.
"""

import datetime

from cronpolicy import policy
from cronpolicy.tooling import planning
from cronpolicy.errors import UsageError
from cronpolicy.matching import glob_matches, is_pattern
from cronpolicy.timeutil import format_duration, format_time

#: Overdue after this many intervals without a success.
DEFAULT_TOLERANCE = 1.5


def overdue_scripts(settings, tolerance=DEFAULT_TOLERANCE, include_all=False, details=True):
    """(now, [report dict]) for scripts with an expected interval; only the
    overdue ones unless ``include_all``.  ``details`` False leaves out what
    happened since the last success (state "overdue" or "ok", no counts):
    metrics needs only whether each is overdue, and a fleet has thousands."""
    from cronpolicy.store.reads import reading
    if tolerance <= 0:
        raise UsageError("--tolerance must be positive")
    with reading(settings, "look for overdue scripts") as reader:
        return overdue_of(reader, tolerance, include_all, details)


def overdue_of(reader, tolerance=DEFAULT_TOLERANCE, include_all=False, details=True):
    """``overdue_scripts`` as ``reader`` (store.reads.Reader) reads it, in its transaction."""
    now = reader.now()
    policies = reader.policies()
    with_interval = [row for row in policies
                     if row.host == "*" and row.expected_interval is not None]
    declared = reader.declared_intervals()
    names = set(declared) | {row.name for row in with_interval if not is_pattern(row.name)}
    patterns = [row for row in with_interval if is_pattern(row.name)]
    if patterns:
        names |= {name for name, _ in reader.recent_pairs(now - datetime.timedelta(days=90))
                  if any(glob_matches(row.name, name) for row in patterns)}
    by_id = {row.id: row for row in policies}
    intervals = {}
    for name in names:
        interval, policy_id = policy.expected_interval(policies, name)
        if interval is None:
            interval, policy_id = declared.get(name), None
        if interval is not None:
            intervals[name] = (float(interval), by_id.get(policy_id))
    measured = reader.success_and_first_run(intervals)
    reports = []
    for name in sorted(intervals):
        interval, row = intervals[name]
        report, since = _measured(now, name, interval, tolerance, row, *measured[name])
        if report["overdue"] or include_all:
            if details:
                _say_what_happened(report, since, reader.runs_since(name, since),
                                   interval * tolerance)
            reports.append(report)
    return now, reports


def _measured(now, name, interval, tolerance, policy_row, last_success, first_started):
    """(the report of ``name`` before its details, since when it is
    measured): its last success, else the first we heard of it, else its
    policy row's change, else now; overdue when that is longer ago than allowed."""
    since = last_success or first_started or (
        policy_row.changed_at if policy_row is not None else now)
    age = (now - since).total_seconds()
    overdue = age > interval * tolerance
    return {"kind": "interval", "name": name, "expected_interval": interval,
            "interval_source": "policy" if policy_row is not None else "script",
            "last_success": last_success, "seconds_since": age,
            "overdue": overdue, "state": "overdue" if overdue else "ok", "detail": "",
            "counts": {}}, since


#: What `overdue` allows a scheduled run beyond its estimate.
DEFAULT_GRACE = 600.0


def scheduled_reports(settings, grace=DEFAULT_GRACE, starving_after=None, include_all=False,
                      warn=None, host="*"):
    """(now, [report dict]) of the scripts with a schedule, on each host (of
    the glob ``host``): overdue by it, or starving; every one with
    ``include_all``.  Dead runs are recorded first."""
    from cronpolicy.store.reads import reading
    with reading(settings, "look for overdue scripts", reap=True) as reader:
        return scheduled_reports_of(reader, settings, grace, starving_after, include_all,
                                    warn, host)


def scheduled_reports_of(reader, settings, grace=DEFAULT_GRACE, starving_after=None,
                         include_all=False, warn=None, host="*", last_successes=None,
                         details=True):
    """``scheduled_reports`` as ``reader`` reads it, in its transaction,
    recording nothing (the caller has recorded dead runs).
    ``last_successes``: {(name, host): when its newest success started}
    of every pair that ever succeeded, when the caller has it (metrics
    counts the runs in one pass that finds it too); ``details``
    False: each report's "detail" is left empty (metrics shows none of them)."""
    from cronpolicy.tooling.rollout_plans import gather_of
    from cronpolicy.tooling.schedules import RECENT
    if host == "*":
        # The whole fleet: every pair's last success from one pass over the
        # history (Reader.pair_starts, which also tells the pairs seen
        # lately that gather asks), not its scripts' recent starts and then,
        # for each pair they do not tell (hundreds), a walk through its
        # script's runs.
        seen = {}

        def recent_pairs(since):
            seen.update(reader.pair_starts(since))
            return sorted(pair for pair, (recent, _) in seen.items() if recent)
        fleet = gather_of(reader, settings, host=host, warn=warn, history=False,
                          recent_pairs=recent_pairs if last_successes is None else None)
        if last_successes is None:
            if not seen:
                seen = reader.pair_starts(fleet.inputs.now - RECENT)
            last_successes = {pair: started for pair, (_, started) in seen.items()
                              if started is not None}
        last_success = {(job.name, job.host): last_successes.get((job.name, job.host))
                        for job in fleet.jobs if job.schedule is not None}
    elif last_successes is not None:
        # (metrics --host: the last successes are in its count of the host's
        # runs, so neither its scripts' recent starts nor, for the pairs
        # those do not tell, a walk through their runs)
        fleet = gather_of(reader, settings, host=host, warn=warn, history=False)
        last_success = {(job.name, job.host): last_successes.get((job.name, job.host))
                        for job in fleet.jobs if job.schedule is not None}
    else:
        fleet = gather_of(reader, settings, host=host, warn=warn)
        last_success = _last_success(fleet)
        unknown = [pair for pair, moment in last_success.items() if moment is None]
        if unknown:
            last_success.update(reader.last_success_of_each(unknown))
    return _scheduled(fleet, settings, last_success, grace, starving_after, include_all,
                      details)


def _last_success(fleet):
    """{(name, host): when it last succeeded} of the fleet's scheduled jobs,
    as far as their recent history tells (None where it does not)."""
    last_success = {}
    for job in fleet.jobs:
        if job.schedule is not None:
            last_success.setdefault((job.name, job.host), next(
                (run["started_at"] for run in fleet.history[job.name]
                 if run["host"] == job.host and run["status"] == "succeeded"), None))
    return last_success


def _scheduled(fleet, settings, last_success, grace, starving_after, include_all,
               details=True):
    """scheduled_reports of ``fleet``, whose jobs last succeeded as ``last_success`` says."""
    starving_after = starving_after or planning.STARVING_AFTER
    now = fleet.inputs.now
    reports = []
    scheduled = [(job, planning.job_estimate(job, settings).seconds)    # (gather worked it out)
                 for job in fleet.jobs if job.schedule is not None]
    # Each (expression, zone, estimate)'s start due worked out once (a
    # fleet's thousands of jobs share a few hundred), the latest moments
    # asked first: a schedule remembers its previous start for every moment
    # back to that start (Schedule.previous_before), so its jobs with longer
    # estimates mostly need no cronsim.
    dues, next_starts = {}, {}
    for job, estimate in sorted(scheduled, key=lambda one: one[1]):
        key = (job.schedule.expression, job.schedule.tz, estimate)
        if key not in dues:
            dues[key] = planning.scheduled_due(job.schedule, estimate, grace, now)
    for job, estimate in scheduled:
        last = last_success[job.name, job.host]
        due = dues[job.schedule.expression, job.schedule.tz, estimate]
        late = planning.missed_since_known(due, last, job.schedule.known_since)
        starving = job.starving >= starving_after
        if not (late or starving or include_all):
            continue
        key = (job.schedule.expression, job.schedule.tz)
        next_start = next_starts.get(key, next_starts)
        if next_start is next_starts:
            next_start = next_starts[key] = job.schedule.next_after(now)
        reports.append({
            "kind": "schedule", "name": job.name, "host": job.host,
            "schedule": job.schedule.expression, "schedule_tz": job.schedule.tz,
            "schedule_origin": job.schedule.origin, "missed_start": due,
            "last_success": last, "estimate_seconds": estimate,
            "overdue": late, "starving": job.starving if starving else 0,
            "skipped_by": job.starving, "next_start": next_start,
            "state": "starving" if starving else "late" if late else "ok",
            "detail": _scheduled_detail(job, late, due, last, starving) if details else ""})
    return now, reports


def _scheduled_detail(job, late, due, last, starving):
    said = []
    last_said = format_time(last) if last else "never"
    if late:
        said.append("the start of %s has not succeeded (last success: %s)" % (
            format_time(due), last_said))
    if starving:
        said.append("skipped by the last %d rollouts in a row" % job.starving)
    if said:
        return "; ".join(said)
    if due is None:
        return "no scheduled start has come due yet (last success: %s)" % last_said
    if last is not None and not planning.missed(due, last):
        return "succeeded since its last scheduled start (%s)" % format_time(due)
    # Not late only because that start came before anyone knew the schedule.
    return "its last scheduled start (%s) came before its schedule was known (known only " \
           "since %s); last success: %s" % (format_time(due), format_time(
               job.schedule.known_since), last_said)


def _say_what_happened(report, since, after, allowed):
    """Fill ``report``'s state, detail and counts from ``after``, its
    script's runs since ``since`` (its last success), newest first."""
    counts = {}
    for row in after:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    failures = [row for row in after if row["status"] in ("failed", "abandoned", "interrupted")]
    skips = [row for row in after if row["status"] == "skipped"]
    if failures:
        state, detail = "failing", "%d failed run%s since, last exit code %s" % (
            len(failures), "" if len(failures) == 1 else "s", failures[0]["exit_code"])
    elif skips:
        state, detail = "skipped", "skipped %d time%s since, last: %s" % (
            len(skips), "" if len(skips) == 1 else "s", skips[0]["skip_reason"])
    elif counts.get("running"):
        state, detail = "running", "a run is under way"
    elif report["last_success"] is not None and report["seconds_since"] <= allowed:
        state, detail = "ok", "succeeded %s ago" % format_duration(report["seconds_since"])
    else:
        state, detail = "not started", "no run started since %s" % format_time(since)
    report.update(state=state, detail=detail, counts=counts)
