"""Row shapes: the one place where database rows become Python objects.

Every shape is a named tuple whose fields are named exactly like the columns
they come from, with a kind per field.  ``from_mapping`` builds one from any
mapping of column names to values, whatever produced it: psycopg2 (JSON of
the row), sqlite3.Row, SQLAlchemy, the host's policy cache, the spool.  The
kinds absorb the backends' differences (epoch numbers, SQLite's text
timestamps, 0/1 booleans, intervals as seconds or timedeltas), so no other
module indexes rows by position or converts their values.

Columns a shape does not know (a database newer than this code) are
ignored; fields a mapping lacks (an older cache file) take their defaults.
tests/test_rows.py holds every shape to the columns of ``tooling/tables.py``.
"""

import datetime

from cronpolicy.shapes import shape

UTC = datetime.timezone.utc


# Kinds: how a raw value becomes the field's value -------------------------

#: Stored times are read within these bounds, durations up to MAX_SECONDS
#: (100 years, PostgreSQL's interval '100 years'), so that a time plus or
#: minus any duration is still a time Python can hold.  Schema patch 0009
#: refuses anything else when it is written (times from 1970 to LATEST);
#: a row that holds one anyway ('infinity', year 200000, '100000 years',
#: text in a number column on SQLite) is clamped, with a warning.
MAX_SECONDS = 100 * 365.25 * 86400
EARLIEST = datetime.datetime(102, 1, 1, tzinfo=UTC)
LATEST = datetime.datetime(9898, 12, 31, tzinfo=UTC)


_warned = set()


def _clamped(value, bound):
    """``bound``, saying once per process that ``value`` became it: one
    line, however many such values a command reads (a row written past the
    range guards holds several, and each was a line of its own)."""
    if not _warned:
        _warned.add(repr(value))
        import logging
        logging.getLogger("cronpolicy").warning(
            "a stored value (%.60r) is beyond what cronpolicy handles; read as %s"
            " (and any other such value as the nearest it handles)", value,
            "unknown" if bound is None else bound)
    return bound


def to_time(value):
    """An aware UTC datetime from a datetime, epoch seconds or timestamp text,
    clamped to [EARLIEST, LATEST]."""
    if value is None:
        return None
    try:
        if isinstance(value, datetime.datetime):
            moment = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        elif not isinstance(value, str):     # epoch seconds: int, float, Decimal
            moment = datetime.datetime.fromtimestamp(float(value), UTC)
        else:
            parsed = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            moment = (parsed if parsed.tzinfo is not None
                      else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, TypeError, OverflowError, OSError):
        text = str(value).strip().lower()
        if text in ("infinity", "+infinity", "inf", "+inf") or _far_future(text):
            return _clamped(value, LATEST)
        # Before 1 AD, or not a time at all ('tomorrow'): the distant past,
        # where it decides nothing.
        return _clamped(value, EARLIEST)
    if moment > LATEST:
        return _clamped(value, LATEST)
    if moment < EARLIEST:
        return _clamped(value, EARLIEST)
    return moment


def _far_future(text):
    """Whether ``text`` is a timestamp whose year has more than four digits
    (or epoch seconds too large for a datetime)."""
    year = text.split("-", 1)[0]
    if year.isdigit():
        return len(year) > 4
    try:
        return float(text) > 0
    except ValueError:
        return False


def to_seconds(value):
    """Float seconds from a number or a timedelta (PostgreSQL's interval),
    clamped to [-MAX_SECONDS, MAX_SECONDS]; not a number is None."""
    if value is None:
        return None
    if type(value) is float and -MAX_SECONDS <= value <= MAX_SECONDS:
        return value            # the common case, first (estimates read 20 of them each)
    try:
        seconds = value.total_seconds() if isinstance(value, datetime.timedelta) else float(value)
    except (ValueError, TypeError):     # '20 minutes' in a SQLite number column
        return _clamped(value, None)
    if seconds != seconds:      # nan
        return _clamped(value, None)
    if abs(seconds) > MAX_SECONDS:
        return _clamped(value, MAX_SECONDS if seconds > 0 else -MAX_SECONDS)
    return seconds


def _optional(convert):
    return lambda value: None if value is None else convert(value)


def to_int(value):
    """An int; None for None or what is not a whole number ('two', 2.5:
    SQLite stores them in integer columns), with a warning."""
    if value is None or isinstance(value, int):     # bool is an int
        return None if value is None else int(value)
    try:
        number = float(value)
        if number == int(number):
            return int(number)
    except (ValueError, TypeError, OverflowError):
        pass
    return _clamped(value, None)


def to_document(value):
    """A JSON object (an audit entry's row document): PostgreSQL's jsonb
    arrives as a dict, SQLite's as text."""
    if value is None or isinstance(value, dict):
        return value
    import json
    try:
        found = json.loads(value)
    except (TypeError, ValueError):
        return _clamped(value, None)
    return found if isinstance(found, dict) else _clamped(value, None)


KINDS = {
    "int": to_int,
    "text": _optional(str),
    "bool": bool,
    "bool?": _optional(bool),
    "seconds": to_seconds,
    "time": to_time,
    "document": to_document,
}


def _shape(name, fields, doc):
    """A named tuple class with ``fields`` = ((field, kind, default), ...)."""
    made = shape(name, [field for field, _, _ in fields],
                 defaults=[default for _, _, default in fields])
    made.__doc__ = doc
    made.kinds = {field: kind for field, kind, _ in fields}
    #: (field, how its raw value becomes the field's), in the fields' order.
    made.converters = tuple((field, KINDS[kind]) for field, kind, _ in fields)
    return made


def from_mapping(shape, mapping):
    """A ``shape`` from a mapping of column names to raw values."""
    present = mapping.keys()
    if type(mapping) is dict and present >= shape.kinds.keys():
        # Every field there (a fleet's hundreds of policy rows): by
        # position, as the keywords below would place them.
        return _TUPLE_NEW(shape, [convert(mapping[field])
                                  for field, convert in shape.converters])
    present = set(present)     # sqlite3.Row's ``in`` looks at values
    return shape(**{field: KINDS[kind](mapping[field])
                    for field, kind in shape.kinds.items() if field in present})


_TUPLE_NEW = tuple.__new__


def to_mapping(shape_value):
    """The inverse, for JSON files: times become epoch seconds."""
    return {field: (value.timestamp() if isinstance(value, datetime.datetime) else value)
            for field, value in shape_value._asdict().items()}


# The shapes --------------------------------------------------------------------

PolicyRow = _shape("PolicyRow", (
    ("id", "int", None),
    ("name", "text", "*"),
    ("host", "text", "*"),
    ("enabled", "bool", True),
    ("reason", "text", ""),
    ("expected_runtime", "seconds", None),
    ("rollout_exempt", "bool", False),
    ("changed_by", "text", ""),
    ("changed_at", "time", None),
    ("interruptible", "bool", False),
    ("fleet_single_instance", "bool?", None),
    ("expected_interval", "seconds", None),
    ("max_concurrent", "int", None),
    ("schedule", "text", None),
    ("schedule_tz", "text", None),
    ("catch_up", "text", None),
    ("needs", "text", None),
), "One cronpolicy.script_policy row; runtimes and intervals in seconds.")

Window = _shape("Window", (
    ("id", "int", None),
    ("starts_at", "time", None),
    ("ends_at", "time", None),
    ("reason", "text", ""),
    ("host", "text", "*"),
    ("script", "text", "*"),
    ("created_by", "text", ""),
    ("created_at", "time", None),
    ("cancelled_at", "time", None),
    ("cancelled_by", "text", None),
    ("service", "text", None),
), "One cronpolicy.rollout_window row (aware UTC times).")

DeployState = _shape("DeployState", (
    ("deploy_pending", "bool", False),
    ("reason", "text", ""),
    ("changed_by", "text", ""),
    ("changed_at", "time", None),
), "The cronpolicy.deploy_state row (its id is always 1).")

RunRecord = _shape("RunRecord", (
    ("name", "text", None),
    ("host", "text", None),
    ("pid", "int", None),
    ("started_at", "time", None),
    ("finished_at", "time", None),
    ("status", "text", "running"),
    ("exit_code", "int", None),
    ("skip_reason", "text", None),
    ("estimate_seconds", "seconds", None),
    ("estimate_source", "text", None),
    ("policy_ignored", "bool", False),
    ("decision", "text", None),
    ("policy_id", "int", None),
    ("window_id", "int", None),
    ("expected_interval", "seconds", None),
    ("stop_reason", "text", None),
    ("stop_decision", "text", None),
    ("stop_policy_id", "int", None),
    ("stop_window_id", "int", None),
    ("spool_id", "text", None),      # the run's key (see script_run.spool_id)
    ("schedule", "text", None),      # what the script declared (CronScript.schedule)
    ("schedule_tz", "text", None),
    ("block", "text", None),         # the rollout behind a skip, or what a catch-up catches up
    ("needs", "text", None),         # the services it needed, comma-separated
    ("release", "text", None),       # the release directory it executes
    ("stop_block", "text", None),    # the rollout or window that interrupted it
), "What the gate writes into cronpolicy.script_run for one start (run or skip).")

ServiceDeploy = _shape("ServiceDeploy", (
    ("id", "int", None),
    ("service", "text", None),
    ("reason", "text", ""),
    ("changed_by", "text", ""),
    ("changed_at", "time", None),
), "One cronpolicy.service_deploy row: a deploy of that service is pending.")

Rollout = _shape("Rollout", (
    ("id", "int", None),
    ("kind", "text", "full"),
    ("services", "text", ""),
    ("reason", "text", ""),
    ("owner", "text", ""),
    ("owner_host", "text", None),
    ("owner_pid", "int", None),
    ("began_at", "time", None),
    ("expected_duration", "seconds", None),
    ("lease_expires_at", "time", None),
    ("quiet_at", "time", None),
    ("ended_at", "time", None),
    ("ended_by", "text", None),
), "One cronpolicy.rollout row: kind 'full' or 'services' (comma-separated), open while "
   "ended_at is None.")

RunEnd = _shape("RunEnd", (
    ("status", "text", None),
    ("exit_code", "int", None),
    ("finished_at", "time", None),
    ("stop_reason", "text", None),
    ("stop_decision", "text", None),
    ("stop_policy_id", "int", None),
    ("stop_window_id", "int", None),
    ("stop_block", "text", None),
), "How a recorded run ended: the columns its finish updates.")


#: Shapes only the read commands need, made on first use (a cron job's
#: start would pay for building them): name -> maker.
_READ_SHAPES = {
    "RunRow": lambda: _shape("RunRow", (("id", "int", None),) + tuple(
        (field, RunRecord.kinds[field], RunRecord._field_defaults[field])
        for field in RunRecord._fields) + (
        ("db_user", "text", None),
        ("heartbeat_at", "time", None),
        ("safe_to_interrupt", "bool?", None),
        ("lease_expires_at", "time", None),
        ("spooled", "bool", False),
    ), "A whole cronpolicy.script_run row, as the read commands show it."),
    "AuditEntry": lambda: _shape("AuditEntry", (
        ("id", "int", None),
        ("changed_at", "time", None),
        ("db_user", "text", None),
        ("table_name", "text", None),
        ("operation", "text", None),
        ("row_id", "int", None),
        ("old_row", "document", None),
        ("new_row", "document", None),
        ("reason", "text", None),
    ), "One cronpolicy.policy_audit entry; its row documents as they were written."),
}


def __getattr__(name):
    maker = _READ_SHAPES.get(name)
    if maker is None:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    made = globals()[name] = maker()
    return made


#: A run the gate holds: its row id (None when the start could not be
#: written and the whole record goes to the spool at the end) and the record.
RunHandle = shape("RunHandle", "id record")


# Everything the decision reads -----------------------------------------------------

#: Where a decision's inputs came from.
FROM_DATABASE = "database"
FROM_CACHE = "cache"
UNAVAILABLE = "unavailable"

Inputs = shape(
    "Inputs", "now schema_version deploy policies windows recent_runtimes source age error "
              "services rollouts policy_version", defaults=(FROM_DATABASE, None, None, (), (), None))
Inputs.__doc__ = """Everything the decision for one script needs.

``now`` is the database clock (aware UTC); ``deploy`` a DeployState, or None
when its row is missing; ``policies`` every PolicyRow; ``windows`` the
windows neither cancelled nor over; ``recent_runtimes`` the seconds of the
script's last succeeded runs, newest first; ``services`` the ServiceDeploy
rows (the services with a deploy pending); ``rollouts`` the open Rollout rows,
oldest first.  ``source`` says where they came
from (FROM_DATABASE, FROM_CACHE with its ``age`` in seconds, or UNAVAILABLE
with the ``error`` that made them so); ``policy_version`` the policy's
version read with them (schema patch 0019), or None where none was read."""


def unavailable_inputs(now, error):
    """Inputs when neither the database nor a fresh cache could answer:
    nothing is known, so nothing in them stops a run (on_database_error
    decides instead)."""
    return Inputs(now=now, schema_version=None, deploy=DeployState(), policies=[], windows=[],
                  recent_runtimes=[], source=UNAVAILABLE, age=None, error=error)
