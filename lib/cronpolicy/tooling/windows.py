"""Rollout windows: scheduling, listing and cancelling them.

Times are text as people type them (ISO 8601, now, +10m) and are resolved
against the database clock, which every host agrees on.  Everything here is
plain SQL (store.reads, store.writes), so that the window commands import
no SQLAlchemy (0.2 s of a command's 0.04).  ``db`` is anything with
``writing(doing, reason)`` and ``reading(doing)`` blocks: the commands'
store.writes.Plain, or the tooling's Database (the Python API).
"""

import datetime

from cronpolicy.errors import NotFound, UsageError
from cronpolicy.rows import Window, from_mapping
from cronpolicy.store.reads import window_dict
from cronpolicy.store.writes import who
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
    with db.writing("add the rollout window", reason=reason) as writer:
        now = writer.now()
        starts_at = parse_time(start, now)
        ends_at = (parse_time(end, now) if end is not None
                   else starts_at + datetime.timedelta(seconds=duration))
        if ends_at <= starts_at:
            raise UsageError("window must end after it starts (start %s, end %s)"
                             % (starts_at.isoformat(), ends_at.isoformat()))
        if ends_at <= now:
            raise UsageError("window would already be over (it ends %s, the database says now is %s)"
                             % (ends_at.isoformat(), now.isoformat()))
        [row] = writer.rows("add_window", {
            "starts_at": writer._time(starts_at), "ends_at": writer._time(ends_at),
            "reason": reason or "", "host": host, "script": script, "service": service,
            "who": who()})
        return window_dict(_window(writer, "window", row["id"]), now)


def _window(writer, query, window_id):
    """Window ``window_id`` (a Window), or None."""
    found = writer.rows(query, {"id": window_id})
    return from_mapping(Window, found[0]) if found else None


def listed(reader, include_all=False):
    """(now, windows) read by ``reader`` (a store.reads.Reader in a
    transaction): standing windows (active and upcoming), or every window
    with ``include_all``, as dicts with their state."""
    now = reader.now()
    found = reader.windows() if include_all else reader.standing_windows(now)
    return now, [window_dict(window, now) for window in found]


def list_windows(db, include_all=False):
    """``listed`` in a reading transaction of ``db`` (a tooling Database,
    or store.writes.Plain)."""
    with db.reading("list rollout windows") as reader:
        return listed(reader, include_all)


def cancel_window(db, window_id, reason=""):
    """Cancel a window.  Returns (row, already_cancelled).  Unknown ids raise NotFound."""
    with db.writing("cancel the rollout window", reason=reason) as writer:
        now = writer.now()
        window = _window(writer, "window_held", window_id)
        if window is None:
            raise NotFound("no rollout window with id %s" % window_id)
        if window.cancelled_at is not None:
            return window_dict(window, now), True
        writer.count("cancel_window", {"id": window_id, "now": writer._time(now),
                                       "who": who()})
        return window_dict(_window(writer, "window", window_id), now), False
