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

from sqlalchemy import and_, func, select

from cronpolicy import planning, policy
from cronpolicy.errors import UsageError
from cronpolicy.matching import glob_matches, is_pattern
from cronpolicy.rows import PolicyRow, from_mapping
from cronpolicy.timeutil import format_duration, format_time
from cronpolicy.tooling.tables import script_policy, script_run

#: Overdue after this many intervals without a success.
DEFAULT_TOLERANCE = 1.5


def overdue_scripts(db, tolerance=DEFAULT_TOLERANCE, include_all=False):
    """(now, [report dict]) for scripts with an expected interval; only the
    overdue ones unless ``include_all``."""
    if tolerance <= 0:
        raise UsageError("--tolerance must be positive")
    with db.read("look for overdue scripts") as connection:
        now = db.now(connection)
        policies = [from_mapping(PolicyRow, row)
                    for row in connection.execute(select(script_policy)).mappings()]
        with_interval = [row for row in policies
                         if row.host == "*" and row.expected_interval is not None]
        declared = dict(connection.execute(
            select(script_run.c.name, script_run.c.expected_interval)
            .where(script_run.c.id.in_(
                select(func.max(script_run.c.id)).where(
                    script_run.c.expected_interval.is_not(None)).group_by(script_run.c.name)))
        ).all())
        names = set(declared) | {row.name for row in with_interval if not is_pattern(row.name)}
        names |= {name for (name,) in connection.execute(
            select(script_run.c.name).distinct().where(
                script_run.c.started_at > now - datetime.timedelta(days=90)))
            if any(glob_matches(row.name, name) for row in with_interval)}
        reports = []
        for name in sorted(names):
            interval, policy_id = policy.expected_interval(policies, name)
            row = next((row for row in policies if row.id == policy_id), None)
            if interval is None:
                interval = declared.get(name)
            if interval is None:
                continue
            reports.append(_report(connection, now, name, interval, tolerance, row))
    for report in reports:
        report["kind"] = "interval"
    return now, [report for report in reports if include_all or report["overdue"]]


#: What `overdue` allows a scheduled run beyond its estimate.
DEFAULT_GRACE = 600.0


def scheduled_reports(settings, grace=DEFAULT_GRACE, starving_after=None, include_all=False,
                      warn=None):
    """[report dict] of the scripts with a schedule, on each host: overdue
    by it, or starving; every one with ``include_all``."""
    from cronpolicy.store.reads import reading
    from cronpolicy.tooling.rollout_plans import gather
    starving_after = starving_after or planning.STARVING_AFTER
    fleet = gather(settings, warn=warn)
    now = fleet.inputs.now
    planner = planning.Planner(fleet.jobs, [], settings, now, now)
    reports = []
    with reading(settings, "look for overdue scripts") as reader:
        for job in fleet.jobs:
            if job.schedule is None:
                continue
            last = next((run["started_at"] for run in fleet.history[job.name]
                         if run["host"] == job.host and run["status"] == "succeeded"), None) \
                or reader.last_success_on(job.name, job.host)
            late, due = planning.overdue_by_schedule(job.schedule, last, planner.estimate(job),
                                                     grace, now, job.schedule.known_since)
            starving = job.starving >= starving_after
            if not (late or starving or include_all):
                continue
            reports.append({
                "kind": "schedule", "name": job.name, "host": job.host,
                "schedule": job.schedule.expression, "schedule_tz": job.schedule.tz,
                "schedule_origin": job.schedule.origin, "missed_start": due,
                "last_success": last, "estimate_seconds": planner.estimate(job),
                "overdue": late, "starving": job.starving if starving else 0,
                "skipped_by": job.starving, "next_start": job.schedule.next_after(now),
                "state": "starving" if starving else "late" if late else "ok",
                "detail": _scheduled_detail(job, late, due, last, starving)})
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


def _report(connection, now, name, interval, tolerance, policy_row):
    last_success = connection.execute(
        select(func.max(script_run.c.finished_at)).where(and_(
            script_run.c.name == name, script_run.c.status == "succeeded"))).scalar()
    since = last_success
    if since is None:
        first = connection.execute(select(func.min(script_run.c.started_at))
                                   .where(script_run.c.name == name)).scalar()
        since = first if first is not None else (policy_row.changed_at if policy_row is not None
                                                 else now)
    after = [dict(row) for row in connection.execute(
        select(script_run.c.status, script_run.c.started_at, script_run.c.skip_reason,
               script_run.c.exit_code, script_run.c.decision)
        .where(and_(script_run.c.name == name,
                    script_run.c.started_at >= (last_success or since)))
        .order_by(script_run.c.started_at.desc()).limit(1000)).mappings()]
    age = (now - since).total_seconds()
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
    elif last_success is not None and age <= float(interval) * tolerance:
        state, detail = "ok", "succeeded %s ago" % format_duration(age)
    else:
        state, detail = "not started", "no run started since %s" % format_time(since)
    return {"name": name, "expected_interval": float(interval),
            "interval_source": "policy" if policy_row is not None else "script",
            "last_success": last_success, "seconds_since": age,
            "overdue": age > float(interval) * tolerance,
            "state": state, "detail": detail, "counts": counts}
