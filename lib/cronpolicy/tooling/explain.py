"""Why a script did not run: the change behind each skip or interruption.

``explain`` takes a script's recent runs and, for each skip or
interruption, finds the change behind it from the decision the run
recorded (``decision``, ``policy_id``, ``window_id``, ``block``; for an
interruption ``stop_decision``, ``stop_policy_id``, ``stop_window_id``,
``stop_block``): the audit entry that last changed the disabling policy
row, that began the rollout, that set deploy pending, or that created or
moved the window.  Reason text is only ever shown.

A read command (``cronpolicy why``): no SQLAlchemy.  The audit's row
documents are read here for ``cronpolicy audit`` too (audit.py).
"""

import re

from cronpolicy import policy
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


def _service_begun(service):
    return lambda entry: (entry.get("new_row") or {}).get("service") == service


def _rollout_of(block):
    """The rollout id a block names ("rollout:12"), or None."""
    kind, _, what = (block or "").partition(":")
    return int(what) if kind == "rollout" and what.isdigit() else None


def _cause(reader, run):
    block = run.get("block") if run["status"] == "skipped" else \
        run.get("stop_block") if run["status"] == "interrupted" else None
    if _rollout_of(block) is not None:
        # The rollout's beginning: who, when, why.
        return _latest_before(reader, "rollout", _rollout_of(block), run["finished_at"]
                              or run["started_at"], lambda entry: entry["operation"] == "INSERT")
    if run["status"] == "skipped" and run["decision"] == policy.SERVICE_PENDING:
        service = policy.block_service(run.get("block"))
        return _latest_before(reader, "service_deploy", None, run["started_at"],
                              _service_begun(service)) if service else None
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
    return _latest_before(reader, table, row_id, moment, where)


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
