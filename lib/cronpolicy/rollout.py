"""Rollout tooling: the deploy switch, rollout windows, and the fleet's status.

This is the Python API that the ``cronpolicy deploy``, ``window`` and
``status`` commands are thin wrappers around; release tooling can call it
directly::

    from cronpolicy.config import Settings
    from cronpolicy.database import Database
    from cronpolicy import rollout

    db = Database(Settings.load())
    rollout.deploy_begin(db, reason="release 4521")
    ...                                   # upgrade
    rollout.deploy_end(db)

Times are always the database's clock.
"""

import datetime

from sqlalchemy import and_, select, text

from cronpolicy import config
from cronpolicy.errors import NotFound, UsageError
from cronpolicy.tables import deploy_state, rollout_window, script_policy, script_run
from cronpolicy.timeutil import UTC, parse_time

_EPOCH = datetime.datetime(2000, 1, 1, tzinfo=UTC)


def _who(db):
    """Extra values for who-columns: PostgreSQL records session_user itself."""
    return db.who() if db.backend == config.SQLITE else None


def read_deploy_state(db, connection):
    row = connection.execute(select(deploy_state).where(deploy_state.c.id == 1)).mappings().first()
    return dict(row) if row is not None else None


def _set_deploy(db, pending, reason, doing):
    values = {"deploy_pending": pending, "reason": reason}
    if _who(db):
        values["changed_by"] = _who(db)
    with db.begin(doing) as connection:
        before = read_deploy_state(db, connection)
        if before is None:
            connection.execute(deploy_state.insert().values(id=1, **values))
        else:
            connection.execute(deploy_state.update().where(deploy_state.c.id == 1).values(**values))
        return before, read_deploy_state(db, connection)


def deploy_begin(db, reason=""):
    """Set deploy pending: no script starts until deploy_end().  Returns (before, after)."""
    return _set_deploy(db, True, reason or "", "begin the deploy")


def deploy_end(db):
    """Clear deploy pending: every script's own policy applies again.  Returns (before, after)."""
    return _set_deploy(db, False, "", "end the deploy")


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
    with db.begin("add the rollout window") as connection:
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


def cancel_window(db, window_id):
    """Cancel a window.  Returns (row, already_cancelled).  Unknown ids raise NotFound."""
    with db.begin("cancel the rollout window") as connection:
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
        running = []
        for row in connection.execute(
                select(script_run).where(script_run.c.status == "running")
                .order_by(script_run.c.started_at)).mappings():
            run = dict(row)
            run["running_seconds"] = max(0.0, (now - row["started_at"]).total_seconds())
            running.append(run)
        return {
            "now": now,
            "deploy": read_deploy_state(db, connection),
            "active_windows": [w for w in windows if w["state"] == "active"],
            "upcoming_windows": [w for w in windows if w["state"] == "upcoming"],
            "disabled_policies": disabled,
            "exempt_policies": exempt,
            "running": running,
        }


__all__ = ["deploy_begin", "deploy_end", "add_window", "list_windows", "cancel_window",
           "status", "window_state"]
