"""Rollout tooling: the deploy switch, rollout windows, and the fleet's status.

This is the Python API that the ``cronpolicy deploy``, ``window`` and
``status`` commands are thin wrappers around; release tooling can call it
directly::

    from cronpolicy.config import Settings
    from cronpolicy.database import Database
    from cronpolicy import rollout

    db = Database(Settings.load())
    rollout.deploy_begin(db, reason="release 4521")
    result = rollout.wait_until_quiet(db, timeout=30 * 60)
    if not result.quiet:
        ...                               # result.blockers: the runs still going
    ...                                   # upgrade
    rollout.deploy_end(db)

Times are always the database's clock.
"""

import collections
import datetime
import os
import time

from sqlalchemy import and_, select, text

from cronpolicy import config
from cronpolicy.errors import NotFound, UsageError
from cronpolicy.policies import policy_rows
from cronpolicy.policy import glob_matches, is_pattern, matching_policies
from cronpolicy.tables import deploy_state, drain, rollout_window, script_policy, script_run
from cronpolicy.timeutil import UTC, parse_time

_EPOCH = datetime.datetime(2000, 1, 1, tzinfo=UTC)


def _who(db):
    """Extra values for who-columns: PostgreSQL records session_user itself."""
    return db.who() if db.backend == config.SQLITE else None


def read_deploy_state(db, connection):
    row = connection.execute(select(deploy_state).where(deploy_state.c.id == 1)).mappings().first()
    return dict(row) if row is not None else None


def _set_deploy(db, pending, reason, doing, audit_reason=None):
    values = {"deploy_pending": pending, "reason": reason}
    if _who(db):
        values["changed_by"] = _who(db)
    with db.begin(doing, reason=audit_reason or reason) as connection:
        before = read_deploy_state(db, connection)
        if before is None:
            connection.execute(deploy_state.insert().values(id=1, **values))
        else:
            connection.execute(deploy_state.update().where(deploy_state.c.id == 1).values(**values))
        return before, read_deploy_state(db, connection)


def deploy_begin(db, reason=""):
    """Set deploy pending: no script starts until deploy_end().  Returns (before, after)."""
    return _set_deploy(db, True, reason or "", "begin the deploy")


def deploy_end(db, reason=""):
    """Clear deploy pending: every script's own policy applies again.  Returns (before, after).
    ``reason`` goes to the audit only (the switch's own reason is cleared)."""
    return _set_deploy(db, False, "", "end the deploy", audit_reason=reason)


def _check_pattern(what, value):
    if value is None or not str(value).strip():
        raise UsageError("%s pattern must not be empty" % what)
    return str(value).strip()


def add_window(db, start, end=None, duration=None, reason="", host="*", script="*"):
    """Schedule a rollout window; ``start``/``end`` are text (ISO 8601, now, +10m),
    ``duration`` seconds.  Returns the new row."""
    if (end is None) == (duration is None):
        raise UsageError("give exactly one of an end time and a duration")
    if duration is not None and duration <= 0:
        raise UsageError("window duration must be positive")
    host = _check_pattern("host", host)
    script = _check_pattern("script", script)
    # Reject unparsable times before touching the database.
    parse_time(start, _EPOCH)
    if end is not None:
        parse_time(end, _EPOCH)
    with db.begin("add the rollout window", reason=reason) as connection:
        now = db.now(connection)
        starts_at = parse_time(start, now)
        ends_at = (parse_time(end, now) if end is not None
                   else starts_at + datetime.timedelta(seconds=duration))
        if ends_at <= starts_at:
            raise UsageError("window must end after it starts (start %s, end %s)"
                             % (starts_at.isoformat(), ends_at.isoformat()))
        if ends_at <= now:
            raise UsageError("window would already be over (it ends %s, the database says now is %s)"
                             % (ends_at.isoformat(), now.isoformat()))
        values = dict(starts_at=starts_at, ends_at=ends_at, reason=reason or "",
                      host=host, script=script)
        if _who(db):
            values["created_by"] = _who(db)
        window_id = connection.execute(
            rollout_window.insert().values(**values).returning(rollout_window.c.id)).scalar_one()
        return _window_dict(connection.execute(
            select(rollout_window).where(rollout_window.c.id == window_id)).mappings().one(), now)


def window_state(row, now):
    if row["cancelled_at"] is not None:
        return "cancelled"
    if row["ends_at"] <= now:
        return "over"
    if row["starts_at"] <= now:
        return "active"
    return "upcoming"


def _window_dict(row, now):
    result = dict(row)
    result["state"] = window_state(row, now)
    return result


def list_windows(db, include_all=False):
    """Standing windows (active and upcoming), or every window with ``include_all``."""
    with db.begin("list rollout windows") as connection:
        now = db.now(connection)
        query = select(rollout_window).order_by(rollout_window.c.starts_at, rollout_window.c.id)
        if not include_all:
            query = query.where(and_(rollout_window.c.cancelled_at.is_(None),
                                     rollout_window.c.ends_at > now))
        return now, [_window_dict(row, now) for row in connection.execute(query).mappings()]


def cancel_window(db, window_id, reason=""):
    """Cancel a window.  Returns (row, already_cancelled).  Unknown ids raise NotFound."""
    with db.begin("cancel the rollout window", reason=reason) as connection:
        now = db.now(connection)
        row = connection.execute(select(rollout_window).where(
            rollout_window.c.id == window_id).with_for_update()).mappings().first()
        if row is None:
            raise NotFound("no rollout window with id %s" % window_id)
        if row["cancelled_at"] is not None:
            return _window_dict(row, now), True
        connection.execute(rollout_window.update().where(rollout_window.c.id == window_id).values(
            cancelled_at=now,
            cancelled_by=_who(db) if _who(db) else text("session_user")))
        row = connection.execute(select(rollout_window).where(
            rollout_window.c.id == window_id)).mappings().one()
        return _window_dict(row, now), False


def status(db):
    """What a release manager needs at a glance, as one dict."""
    with db.begin("read the status") as connection:
        reap_dead_runs(db, connection)
        now = db.now(connection)
        windows = [_window_dict(row, now) for row in connection.execute(
            select(rollout_window).where(and_(rollout_window.c.cancelled_at.is_(None),
                                              rollout_window.c.ends_at > now))
            .order_by(rollout_window.c.starts_at, rollout_window.c.id)).mappings()]
        disabled = [dict(row) for row in connection.execute(
            select(script_policy).where(script_policy.c.enabled.is_(False))
            .order_by(script_policy.c.name, script_policy.c.host)).mappings()]
        exempt = [dict(row) for row in connection.execute(
            select(script_policy).where(and_(script_policy.c.enabled.is_(True),
                                             script_policy.c.rollout_exempt.is_(True)))
            .order_by(script_policy.c.name, script_policy.c.host)).mappings()]
        running = live_runs(connection, now)
        return {
            "now": now,
            "deploy": read_deploy_state(db, connection),
            "active_windows": [w for w in windows if w["state"] == "active"],
            "upcoming_windows": [w for w in windows if w["state"] == "upcoming"],
            "disabled_policies": disabled,
            "exempt_policies": exempt,
            "running": running,
        }


# Runs in flight -------------------------------------------------------------

_REAP_SQLITE_STALE = text("""
UPDATE cronpolicy.script_run
   SET status = 'abandoned',
       finished_at = max(started_at, coalesce(heartbeat_at, started_at)),
       stop_reason = 'abandoned: no heartbeat for more than ' || :dead_after || 's'
 WHERE status = 'running'
   AND (heartbeat_at IS NULL OR julianday(heartbeat_at) < julianday('now') - :dead_after / 86400.0)
RETURNING id
""")

_REAP_SQLITE_GONE = text("""
UPDATE cronpolicy.script_run
   SET status = 'abandoned',
       finished_at = max(started_at, coalesce(heartbeat_at, started_at)),
       stop_reason = 'abandoned: process ' || pid || ' is gone'
 WHERE id = :run_id AND status = 'running'
""")


def reap_dead_runs(db, connection):
    """Record runs whose process is dead as ``abandoned``; return their ids.

    PostgreSQL: a running script's session holds an advisory lock keyed on
    its run id, so a run without that lock is dead at once (kill -9, OOM,
    crash); a run whose heartbeat is older than ``dead_after`` is dead too
    (a lost host whose session lingers).  SQLite: the heartbeat, and for runs
    on this host, whether the pid still exists.
    """
    dead_after = float(db.settings.dead_after)
    if db.backend == config.POSTGRESQL:
        # A SECURITY DEFINER function: roles that may only update their own
        # runs (roles.sql) can still record other hosts' dead runs.
        return [row[0] for row in connection.execute(
            text("SELECT cronpolicy.reap_dead_runs(:dead_after)"), {"dead_after": dead_after})]
    reaped = [row[0] for row in connection.execute(_REAP_SQLITE_STALE, {"dead_after": dead_after})]
    for run_id, pid in connection.execute(
            select(script_run.c.id, script_run.c.pid).where(and_(
                script_run.c.status == "running", script_run.c.host == db.settings.host))):
        if pid and not _pid_alive(pid):
            connection.execute(_REAP_SQLITE_GONE, {"run_id": run_id})
            reaped.append(run_id)
    return reaped


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_runs(connection, now, host="*"):
    """Running runs (reap first), oldest first, with how long they have run
    and when their estimate says they will finish."""
    runs = []
    for row in connection.execute(select(script_run).where(script_run.c.status == "running")
                                  .order_by(script_run.c.started_at, script_run.c.id)).mappings():
        if not glob_matches(host, row["host"]):
            continue
        run = dict(row)
        run["running_seconds"] = max(0.0, (now - row["started_at"]).total_seconds())
        run["predicted_finish"] = (
            row["started_at"] + datetime.timedelta(seconds=row["estimate_seconds"])
            if row["estimate_seconds"] is not None else None)
        runs.append(run)
    return runs


def _exempt(policies, name, host):
    matching = matching_policies(policies, name, host)
    return bool(matching and matching[0].enabled and matching[0].rollout_exempt)


#: What wait_until_quiet returns.  ``blockers`` are the runs still going.
WaitResult = collections.namedtuple("WaitResult", "quiet waited_seconds blockers stop_asked")


def blocking_runs(db, connection, host="*"):
    """(now, runs that a rollout on ``host`` must wait for, whether anything asks
    scripts to stop).  Rollout-exempt scripts never block."""
    reap_dead_runs(db, connection)
    now = db.now(connection)
    policies = policy_rows(connection)
    runs = [run for run in live_runs(connection, now, host)
            if not _exempt(policies, run["name"], run["host"])]
    state = read_deploy_state(db, connection)
    active_window = connection.execute(select(rollout_window.c.id).where(and_(
        rollout_window.c.cancelled_at.is_(None), rollout_window.c.starts_at <= now,
        rollout_window.c.ends_at > now)).limit(1)).first()
    stop_asked = state is None or bool(state["deploy_pending"]) or active_window is not None
    return now, runs, stop_asked


def wait_until_quiet(db, timeout, host="*", poll_interval=0.25, on_progress=None):
    """Wait until no live, non-exempt run on ``host`` (a glob) remains.

    Scripts that are safe to interrupt stop by themselves once deploy
    pending (or a window) asks them to; this waits for those and for the
    unsafe ones to finish.  Dead runs never block.  Gives up after
    ``timeout`` seconds.  ``on_progress(now, runs, waited)`` is called after
    every look.  Returns a WaitResult.
    """
    started = time.monotonic()
    first_now = None
    blocked = {}     # run id -> [script name, first seen, last seen] (waited seconds)
    while True:
        with db.begin("check the running scripts") as connection:
            now, runs, stop_asked = blocking_runs(db, connection, host)
        first_now = first_now or now
        waited = time.monotonic() - started
        for run in runs:
            blocked.setdefault(run["id"], [run["name"], waited, waited])[2] = waited
        if on_progress is not None:
            on_progress(now, runs, waited)
        if not runs or waited >= timeout:
            _record_drain(db, first_now, now, host, not runs, blocked)
            return WaitResult(not runs, waited, runs, stop_asked)
        time.sleep(max(0.0, min(poll_interval, timeout - waited)))


def _record_drain(db, started_at, finished_at, host, quiet, blocked):
    """Remember this wait for the metrics: how long, and who held it up longest."""
    longest = max(blocked.values(), key=lambda entry: entry[2] - entry[1], default=None)
    with db.begin("record the drain") as connection:
        connection.execute(drain.insert().values(
            started_at=started_at, finished_at=max(started_at, finished_at), host=host,
            quiet=quiet, longest_blocker=longest[0] if longest else None,
            longest_blocker_seconds=(longest[2] - longest[1]) if longest else None))


def plan(db, settings, at, host="*", script="*"):
    """What a rollout starting at ``at`` (text: ISO time or +D) would mean, changing nothing.

    Returns a dict: ``skipped`` lists, for every script known from the last 30
    days of history or named by a policy row, from when its starts would be
    skipped (the cut-off: at - estimate - margin); ``running`` lists live runs
    with their predicted finish and whether they would still be running at
    ``at``.
    """
    from cronpolicy.history import estimates

    parse_time(at, _EPOCH)
    with db.begin("plan the rollout") as connection:
        reap_dead_runs(db, connection)
        now = db.now(connection)
        at_time = parse_time(at, now)
        policies = policy_rows(connection)
        recent = connection.execute(
            select(script_run.c.name).distinct()
            .where(script_run.c.started_at > now - datetime.timedelta(days=30))).scalars().all()
        running = live_runs(connection, now, host)
    names = sorted({name for name in recent if glob_matches(script, name)}
                   | {row.name for row in policies
                      if not is_pattern(row.name) and glob_matches(script, row.name)})
    policy_host = host if not is_pattern(host) else "*"
    skipped = []
    for estimate in estimates(settings, names, policy_host):
        name = estimate["name"]
        matching = matching_policies(policies, name, policy_host)
        disabled = bool(matching and not matching[0].enabled)
        exempt = _exempt(policies, name, policy_host)
        cutoff = at_time - datetime.timedelta(
            seconds=estimate["estimate_seconds"] + settings.cutoff_margin)
        skipped.append(dict(estimate, cutoff_at=max(cutoff, now) if not exempt else None,
                            already=cutoff <= now and not exempt,
                            disabled=disabled, exempt=exempt))
    for run in running:
        run["running_at"] = (run["predicted_finish"] is None or run["predicted_finish"] > at_time)
        run["exempt"] = _exempt(policies, run["name"], run["host"])
    return {"now": now, "at": at_time, "host": host, "script": script,
            "cutoff_margin": settings.cutoff_margin, "skipped": skipped, "running": running}


__all__ = ["deploy_begin", "deploy_end", "add_window", "list_windows", "cancel_window",
           "status", "window_state", "reap_dead_runs", "live_runs", "blocking_runs",
           "wait_until_quiet", "plan", "WaitResult"]
