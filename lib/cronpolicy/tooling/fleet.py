"""The fleet at a glance: the switch, windows, policies that stop scripts,
what is running now, and recording dead runs as abandoned."""

import datetime
import os

from sqlalchemy import and_, select, text

from cronpolicy import config
from cronpolicy.errors import DatabaseError
from cronpolicy.matching import glob_matches
from cronpolicy.store import queries
from cronpolicy.tooling.tables import deploy_state, script_policy, script_run
from cronpolicy.tooling.windows import standing_windows


def read_deploy_state(connection):
    row = connection.execute(select(deploy_state).where(deploy_state.c.id == 1)).mappings().first()
    return dict(row) if row is not None else None


def status(db):
    """What a release manager needs at a glance, as one dict."""
    reap_if_free(db)
    with db.read("read the status") as connection:
        now = db.now(connection)
        windows = standing_windows(connection, now)
        disabled = [dict(row) for row in connection.execute(
            select(script_policy).where(script_policy.c.enabled.is_(False))
            .order_by(script_policy.c.name, script_policy.c.host)).mappings()]
        exempt = [dict(row) for row in connection.execute(
            select(script_policy).where(and_(script_policy.c.enabled.is_(True),
                                             script_policy.c.rollout_exempt.is_(True)))
            .order_by(script_policy.c.name, script_policy.c.host)).mappings()]
        return {
            "now": now,
            "deploy": read_deploy_state(connection),
            "active_windows": [w for w in windows if w["state"] == "active"],
            "upcoming_windows": [w for w in windows if w["state"] == "upcoming"],
            "disabled_policies": disabled,
            "exempt_policies": exempt,
            "running": live_runs(connection, now),
        }


def reap_if_free(db):
    """Record dead runs as abandoned, unless the database is busy with a
    writer (SQLite): then this read goes on without, and a later one does
    it.  Live runs are told from dead ones by their leases anyway."""
    try:
        with db.briefly("record dead runs") as connection:
            reap_dead_runs(db, connection)
    except DatabaseError as error:
        if db.backend != config.SQLITE or "locked" not in str(error):
            raise
        import logging
        logging.getLogger("cronpolicy").info("dead runs not recorded now: %s", error)


def reap_dead_runs(db, connection):
    """Record runs whose lease ran out as ``abandoned``; return their ids.

    A running run renews its lease with every heartbeat (lease_ttl, 30s by
    default), so a killed process or a lost host is given up on within one
    lease; a lost connection alone never ends a run.  On SQLite, a run of
    this host whose process is gone is given up on at once too.
    """
    if db.backend == config.POSTGRESQL:
        # A SECURITY DEFINER function: roles that may only update their own
        # runs (roles.sql) can still record other hosts' dead runs.
        return [row[0] for row in connection.execute(text("SELECT cronpolicy.reap_dead_runs()"))]
    sql = queries("sqlite")
    reaped = [row[0] for row in connection.execute(text(sql["reap_stale"]))]
    for run_id, pid in connection.execute(
            select(script_run.c.id, script_run.c.pid).where(and_(
                script_run.c.status == "running", script_run.c.host == db.settings.host))):
        if pid and not _pid_alive(pid):
            connection.execute(text(sql["reap_gone"]), {"id": run_id})
            reaped.append(run_id)
    return reaped


def _lease_ran_out(row, now):
    """As reap_dead_runs sees it: the lease, or 30s after the last sign of
    life for a run written without one (hosts older than schema 8)."""
    expires = row["lease_expires_at"] or (
        (row["heartbeat_at"] or row["started_at"]) + datetime.timedelta(seconds=30))
    return expires < now


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_runs(connection, now, host="*"):
    """Running runs on hosts matching ``host`` (reap first), oldest first, with
    how long they have run and when their estimate says they will finish."""
    runs = []
    for row in connection.execute(select(script_run).where(script_run.c.status == "running")
                                  .order_by(script_run.c.started_at, script_run.c.id)).mappings():
        if not glob_matches(host, row["host"]) or _lease_ran_out(row, now):
            continue        # (dead, even if not yet recorded as abandoned)
        run = dict(row)
        run["running_seconds"] = max(0.0, (now - row["started_at"]).total_seconds())
        run["heard_seconds"] = max(0.0, (now - (row["heartbeat_at"] or row["started_at"]))
                                   .total_seconds())
        run["predicted_finish"] = (
            row["started_at"] + datetime.timedelta(seconds=row["estimate_seconds"])
            if row["estimate_seconds"] is not None else None)
        runs.append(run)
    return runs
