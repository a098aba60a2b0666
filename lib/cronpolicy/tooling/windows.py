"""Rollout windows: scheduling, listing and cancelling them.

Times are text as people type them (ISO 8601, now, +10m) and are resolved
against the database clock, which every host agrees on.  Listing reads in
plain SQL (``listed``, store.reads), so that `window list` does not import
SQLAlchemy (0.2 s of a command's 0.02); adding and cancelling write through
the tooling's Database.
"""

import datetime

from cronpolicy.errors import NotFound, UsageError
from cronpolicy.store.reads import Reader, window_dict
from cronpolicy.timeutil import UTC, parse_time

_EPOCH = datetime.datetime(2000, 1, 1, tzinfo=UTC)


def _check_pattern(what, value):
    if value is None or not str(value).strip():
        raise UsageError("%s pattern must not be empty" % what)
    return str(value).strip()


def add_window(db, start, end=None, duration=None, reason="", host="*", script="*",
               service=None):
    """Schedule a rollout window; ``start``/``end`` are text (ISO 8601, now, +10m),
    ``duration`` seconds; ``service``: it covers only scripts that need it.
    Returns the new row."""
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
    from sqlalchemy import select
    from cronpolicy.tooling.tables import rollout_window
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
        window_id = connection.execute(rollout_window.insert().values(
            starts_at=starts_at, ends_at=ends_at, reason=reason or "", host=host, script=script,
            service=service, **db.who_columns("created_by")).returning(rollout_window.c.id)
        ).scalar_one()
        return window_dict(connection.execute(
            select(rollout_window).where(rollout_window.c.id == window_id)).mappings().one(), now)


def listed(reader, include_all=False):
    """(now, windows) read by ``reader`` (a store.reads.Reader in a
    transaction): standing windows (active and upcoming), or every window
    with ``include_all``, as dicts with their state."""
    now = reader.now()
    found = reader.windows() if include_all else reader.standing_windows(now)
    return now, [window_dict(window, now) for window in found]


def list_windows(db, include_all=False):
    """``listed`` in a reading transaction of tooling Database ``db``."""
    with db.read("list rollout windows") as connection:
        return listed(Reader.of(connection, db), include_all)


def cancel_window(db, window_id, reason=""):
    """Cancel a window.  Returns (row, already_cancelled).  Unknown ids raise NotFound."""
    from sqlalchemy import select, text
    from cronpolicy.tooling.tables import rollout_window
    with db.begin("cancel the rollout window", reason=reason) as connection:
        now = db.now(connection)
        row = connection.execute(select(rollout_window).where(
            rollout_window.c.id == window_id).with_for_update()).mappings().first()
        if row is None:
            raise NotFound("no rollout window with id %s" % window_id)
        if row["cancelled_at"] is not None:
            return window_dict(row, now), True
        connection.execute(rollout_window.update().where(rollout_window.c.id == window_id).values(
            cancelled_at=now,
            cancelled_by=db.who() if db.backend == "sqlite" else text("session_user")))
        row = connection.execute(select(rollout_window).where(
            rollout_window.c.id == window_id)).mappings().one()
        return window_dict(row, now), False
