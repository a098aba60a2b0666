"""Who changed what, and why a script did not run.

``changes`` reads cronpolicy.policy_audit, which triggers fill on every
change to policies, windows and the deploy switch (by this command or by
plain SQL).  ``explain`` takes a script's recent runs and, for each skip or
interruption, finds the change behind it from the decision the run
recorded (``decision``, ``policy_id``, ``window_id``; for an interruption
``stop_decision``, ``stop_policy_id``, ``stop_window_id``): the audit entry
that last changed the disabling policy row, that set deploy pending, or
that created or moved the window.  Reason text is only ever shown.
"""

import datetime
import re

from sqlalchemy import and_, select

from cronpolicy import policy
from cronpolicy.errors import UsageError
from cronpolicy.rows import to_seconds, to_time
from cronpolicy.timeutil import UTC, parse_time
from cronpolicy.tooling import tables
from cronpolicy.tooling.tables import policy_audit, script_run

_EPOCH = datetime.datetime(2000, 1, 1, tzinfo=UTC)

# PostgreSQL's text of an interval in a row document.  The audit functions
# write IntervalStyle 'postgres' ("1 year 2 mons 3 days 04:05:06.5"); entries
# from before schema 11 may be in the writer's style: postgres_verbose
# ("@ 1 day 2 hours ago"), iso_8601 ("P1DT2H") or sql_standard ("1 2:00:00").
# A year and a month count as extract(epoch) counts them.
_INTERVAL_UNITS = {"year": 365.25 * 86400, "mon": 30 * 86400, "day": 86400, "hour": 3600,
                   "min": 60, "sec": 1}
_INTERVAL_PART = r"([+-]?\d+(?:\.\d+)?) (year|mon|day|hour|min|sec)s?"
_INTERVAL_CLOCK = r"([+-]?)(\d+):(\d\d):(\d\d(?:\.\d+)?)"
_INTERVAL_ISO = (r"^(-)?P(?:(-?[\d.]+)Y)?(?:(-?[\d.]+)M)?(?:(-?[\d.]+)W)?(?:(-?[\d.]+)D)?"
                 r"(?:T(?:(-?[\d.]+)H)?(?:(-?[\d.]+)M)?(?:(-?[\d.]+)S)?)?$")
_ISO_UNITS = (365.25 * 86400, 30 * 86400, 7 * 86400, 86400, 3600, 60, 1)


def _interval_seconds(value):
    if not isinstance(value, str):
        return to_seconds(value)
    text = value.strip()
    iso = re.match(_INTERVAL_ISO, text)
    if iso and text != "P":
        seconds = sum(float(part) * unit for part, unit in zip(iso.groups()[1:], _ISO_UNITS)
                      if part)
        return to_seconds(-seconds if iso.group(1) else seconds)
    seconds = sum(float(count) * _INTERVAL_UNITS[unit]
                  for count, unit in re.findall(_INTERVAL_PART, text))
    days = re.match(r"^([+-]?\d+) [+-]?\d+:", text)      # sql_standard: "1 2:00:00"
    if days:
        seconds += int(days.group(1)) * 86400
    clock = re.search(_INTERVAL_CLOCK, text)
    if clock:
        sign, hours, minutes, rest = clock.groups()
        seconds += (-1 if sign == "-" else 1) * (int(hours) * 3600 + int(minutes) * 60
                                                 + float(rest))
    elif not re.search(_INTERVAL_PART, text):
        return to_seconds(value)        # a number as text, or nothing readable
    if text.endswith(" ago"):
        seconds = -seconds
    return to_seconds(seconds)


def _normalized(table, document):
    """A row document as both backends agree on it: PostgreSQL's triggers
    write to_jsonb (true/false, ISO times, interval text), SQLite's
    json_object (1/0, its time text, seconds).  Booleans become booleans,
    times aware UTC datetimes, durations seconds."""
    definition = tables.metadata.tables.get("%s.%s" % (tables.SCHEMA, table))
    if not document or definition is None:
        return document
    document = dict(document)
    for column in definition.columns:
        value = document.get(column.name)
        if value is None:
            continue
        kind = type(column.type).__name__
        if kind == "Boolean" and value in (0, 1):
            document[column.name] = bool(value)
        elif kind == "Timestamp":
            document[column.name] = to_time(value)
        elif kind == "Seconds":
            document[column.name] = _interval_seconds(value)
    return document


def _with_documents_normalized(entry):
    for key in ("old_row", "new_row"):
        entry[key] = _normalized(entry["table_name"], entry.get(key))
    entry["changes"] = _changed_fields(entry)
    return entry


def _changed_fields(entry):
    old, new = entry.get("old_row") or {}, entry.get("new_row") or {}
    return {key: [old.get(key), new.get(key)] for key in sorted(set(old) | set(new))
            if old.get(key) != new.get(key) and key not in ("changed_at",)}


def changes(db, since=None, limit=100, table=None):
    """Audit entries (dicts, oldest first), at most ``limit`` of the newest."""
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    if since is not None:
        parse_time(since, _EPOCH)
    with db.read("read the audit") as connection:
        query = select(policy_audit).order_by(policy_audit.c.id.desc()).limit(limit)
        if since is not None:
            query = query.where(policy_audit.c.changed_at >= parse_time(since, db.now(connection)))
        if table is not None:
            query = query.where(policy_audit.c.table_name == table)
        entries = [dict(row) for row in connection.execute(query).mappings()]
    return [_with_documents_normalized(entry) for entry in reversed(entries)]


def _latest_before(connection, table, row_id, moment, where=None):
    query = (select(policy_audit)
             .where(and_(policy_audit.c.table_name == table,
                         policy_audit.c.changed_at <= moment))
             .order_by(policy_audit.c.changed_at.desc(), policy_audit.c.id.desc()))
    if row_id is not None:
        query = query.where(policy_audit.c.row_id == row_id)
    for row in connection.execute(query.limit(50)).mappings():
        entry = _with_documents_normalized(dict(row))
        if where is None or where(entry):
            return entry
    return None


def _deploy_set(entry):
    return (entry.get("new_row") or {}).get("deploy_pending") in (True, 1)


#: Where to look for the change behind each decision code: (table, which id
#: of the run names the row, which entries count).
_CAUSES = {
    policy.DISABLED: ("script_policy", "policy_id", None),
    policy.DEPLOY_PENDING: ("deploy_state", None, _deploy_set),
    policy.IN_WINDOW: ("rollout_window", "window_id", None),
    policy.WINDOW_CUTOFF: ("rollout_window", "window_id", None),
}


def _cause(connection, run):
    if run["status"] == "skipped":
        code, ids, moment = run["decision"], run, run["started_at"]
    elif run["status"] == "interrupted":
        code, moment = run["stop_decision"], run["finished_at"] or run["started_at"]
        ids = {"policy_id": run["stop_policy_id"], "window_id": run["stop_window_id"]}
    else:
        return None
    if code not in _CAUSES:
        return None
    table, id_column, where = _CAUSES[code]
    row_id = ids[id_column] if id_column is not None else None
    if id_column is not None and row_id is None:
        return None
    return _latest_before(connection, table, row_id, moment, where)


def explain(db, name, limit=10):
    """The last ``limit`` decisions about ``name``, newest first, each with the
    audit entry behind a skip or interruption when one can be found."""
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    with db.read("explain the decisions") as connection:
        runs = [dict(row) for row in connection.execute(
            select(script_run).where(script_run.c.name == name)
            .order_by(script_run.c.started_at.desc(), script_run.c.id.desc())
            .limit(limit)).mappings()]
        for run in runs:
            run["cause"] = _cause(connection, run)
        return runs
