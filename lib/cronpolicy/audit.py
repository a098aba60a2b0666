"""Who changed what, and why a script did not run.

``changes`` reads cronpolicy.policy_audit, which triggers fill on every
change to policies, windows and the deploy switch (by this command or by
plain SQL).  ``explain`` takes a script's recent runs and, for each skip or
interruption, finds the change behind it: the policy row that disabled it
and the audit entry that last changed that row before the skip; the audit
entry that set deploy pending; the entry that created the window.
"""

import datetime
import re

from sqlalchemy import and_, select

from cronpolicy.errors import UsageError
from cronpolicy.tables import policy_audit, script_run
from cronpolicy.timeutil import UTC, parse_time

_EPOCH = datetime.datetime(2000, 1, 1, tzinfo=UTC)
_SKIPPED = ("skipped", "interrupted")


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
    with db.begin("read the audit") as connection:
        query = select(policy_audit).order_by(policy_audit.c.id.desc()).limit(limit)
        if since is not None:
            query = query.where(policy_audit.c.changed_at >= parse_time(since, db.now(connection)))
        if table is not None:
            query = query.where(policy_audit.c.table_name == table)
        entries = [dict(row) for row in connection.execute(query).mappings()]
    for entry in entries:
        entry["changes"] = _changed_fields(entry)
    return list(reversed(entries))


def _latest_before(connection, table, row_id, moment, where=None):
    query = (select(policy_audit)
             .where(and_(policy_audit.c.table_name == table,
                         policy_audit.c.changed_at <= moment))
             .order_by(policy_audit.c.changed_at.desc(), policy_audit.c.id.desc()))
    if row_id is not None:
        query = query.where(policy_audit.c.row_id == row_id)
    for row in connection.execute(query.limit(50)).mappings():
        entry = dict(row)
        if where is None or where(entry):
            entry["changes"] = _changed_fields(entry)
            return entry
    return None


def _number_after(marker, text):
    match = re.search(re.escape(marker) + r"(\d+)", text)
    return int(match.group(1)) if match else None


def explain(db, name, limit=10):
    """The last ``limit`` decisions about ``name``, newest first, each with the
    audit entry behind a skip or interruption when one can be found."""
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    with db.begin("explain the decisions") as connection:
        runs = [dict(row) for row in connection.execute(
            select(script_run).where(script_run.c.name == name)
            .order_by(script_run.c.started_at.desc(), script_run.c.id.desc())
            .limit(limit)).mappings()]
        for run in runs:
            run["cause"] = None
            moment = run["started_at"] if run["status"] == "skipped" else (
                run["finished_at"] or run["started_at"])
            if run["status"] not in _SKIPPED:
                continue
            reason = run["skip_reason"] or run["stop_reason"] or ""
            policy_id = _number_after("policy #", reason) or (
                run["policy_id"] if run.get("decision") == "disabled" else None)
            window_id = _number_after("window #", reason) or (
                run["window_id"] if run.get("decision") in ("in-window", "window-cutoff")
                else None)
            if reason.startswith("disabled by policy") and policy_id is not None:
                run["cause"] = _latest_before(connection, "script_policy", policy_id, moment)
            elif reason.startswith("deploy pending"):
                run["cause"] = _latest_before(
                    connection, "deploy_state", None, moment,
                    lambda entry: (entry.get("new_row") or {}).get("deploy_pending") in (True, 1))
            elif window_id is not None:
                run["cause"] = _latest_before(connection, "rollout_window", window_id, moment)
        return runs
