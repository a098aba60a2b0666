"""Who changed what: the entries of cronpolicy.policy_audit.

Triggers fill the audit on every change to policies, windows, ownership and
the deploy switch (by this command or by plain SQL).  Their row documents
are read as both backends agree on them by ``explain.with_documents_normalized``;
why a script did not run (``cronpolicy why``) is ``explain.explain``.
"""

import datetime

from sqlalchemy import select

from cronpolicy.errors import UsageError
from cronpolicy.timeutil import UTC, parse_time
from cronpolicy.tooling.explain import with_documents_normalized
from cronpolicy.tooling.tables import policy_audit

_EPOCH = datetime.datetime(2000, 1, 1, tzinfo=UTC)


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
    return [with_documents_normalized(entry) for entry in reversed(entries)]
