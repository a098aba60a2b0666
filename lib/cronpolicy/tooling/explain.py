"""Why a script did not run: the change behind each skip or interruption.

``explain`` takes a script's recent runs and, for each skip or
interruption, finds the change behind it from the decision the run
recorded (``decision``, ``policy_id``, ``window_id``, ``block``; for an
interruption ``stop_decision``, ``stop_policy_id``, ``stop_window_id``,
``stop_block``): the rule whose code it is says where in the audit to look
(its ``cause``, policy.py): the entry that last changed the disabling
policy row, that began the rollout, that set deploy pending, or that
created or moved the window.  Reason text is only ever shown.

A read command (``cronpolicy why``): no SQLAlchemy.  The audit's row
documents are read here for ``cronpolicy audit`` too (audit.py).
"""

import re

from cronpolicy import policy
from cronpolicy.causes import Recorded
from cronpolicy.errors import UsageError
from cronpolicy.rows import PolicyRow, Rollout, ServiceDeploy, Window, to_seconds, to_time
from cronpolicy.store.reads import DEPLOY_KINDS, reading

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


#: The kind of each column of the audited tables (rows.py's shapes), for
#: reading their row documents.
DOCUMENT_KINDS = {
    "script_policy": PolicyRow.kinds,
    "rollout_window": Window.kinds,
    "deploy_state": DEPLOY_KINDS,
    "script_owner": {"id": "int", "name": "text", "db_role": "text", "granted_by": "text",
                     "granted_at": "time"},
    "host_login": {"id": "int", "host": "text", "db_role": "text", "granted_by": "text",
                   "granted_at": "time"},
    "service_deploy": ServiceDeploy.kinds,
    "rollout": Rollout.kinds,
}


def _normalized(table, document):
    """A row document as both backends agree on it: PostgreSQL's triggers
    write to_jsonb (true/false, ISO times, interval text), SQLite's
    json_object (1/0, its time text, seconds).  Booleans become booleans,
    times aware UTC datetimes, durations seconds."""
    kinds = DOCUMENT_KINDS.get(table)
    if not document or kinds is None:
        return document
    document = dict(document)
    for column, kind in kinds.items():
        value = document.get(column)
        if value is None:
            continue
        if kind in ("bool", "bool?") and value in (0, 1):
            document[column] = bool(value)
        elif kind == "time":
            document[column] = to_time(value)
        elif kind == "seconds":
            document[column] = _interval_seconds(value)
    return document


def with_documents_normalized(entry):
    for key in ("old_row", "new_row"):
        entry[key] = _normalized(entry["table_name"], entry.get(key))
    entry["changes"] = _changed_fields(entry)
    return entry


def _changed_fields(entry):
    old, new = entry.get("old_row") or {}, entry.get("new_row") or {}
    return {key: [old.get(key), new.get(key)] for key in sorted(set(old) | set(new))
            if old.get(key) != new.get(key) and key not in ("changed_at",)}


def _latest_before(reader, table, row_id, moment, where=None):
    for entry in reader.audit_before(table, row_id, moment):
        entry = with_documents_normalized(entry)
        if where is None or where(entry):
            return entry
    return None


def recorded(run):
    """What ``run`` (a recent_runs row) recorded of the decision that skipped
    or stopped it (a causes.Recorded), or None for a run neither."""
    ended_at = run["finished_at"] or run["started_at"]
    if run["status"] == "skipped":
        return Recorded(run["decision"], run.get("block"), run["policy_id"], run["window_id"],
                        False, run["started_at"], ended_at)
    if run["status"] == "interrupted":
        return Recorded(run["stop_decision"], run.get("stop_block"), run["stop_policy_id"],
                        run["stop_window_id"], True, ended_at, ended_at)
    return None


def _cause(reader, run):
    """The audit entry behind ``run``'s skip or stop, where the rule that made
    it says to look; None when it says nothing or nothing is found."""
    decision = recorded(run)
    rule = policy.rule_of(decision.code) if decision is not None else None
    cause = rule.cause(decision) if rule is not None else None
    if cause is None:
        return None
    return _latest_before(reader, cause.table, cause.row_id, cause.moment, cause.where)


def explain(settings, name, limit=10, warn=None):
    """The last ``limit`` decisions about ``name``, newest first, each with the
    audit entry behind a skip or interruption when one can be found."""
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    from cronpolicy.tooling.schedules import describe, schedules_of
    with reading(settings, "explain the decisions") as reader:
        runs = reader.recent_runs(name, limit)
        inputs = reader.inputs()
        found = schedules_of(reader, inputs, {(name, run["host"]) for run in runs}, warn)
        for run in runs:
            run["cause"] = _cause(reader, run)
            run.update(describe(found[(name, run["host"])], inputs.now))
        return runs
