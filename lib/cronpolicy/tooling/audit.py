"""Who changed what: the entries of cronpolicy.policy_audit.

Triggers fill the audit on every change to policies, windows, ownership and
the deploy switch (by this command or by plain SQL).  Their row documents
are read as both backends agree on them by ``explain.with_documents_normalized``;
why a script did not run (``cronpolicy why``) is ``explain.explain``.  The
entries are read in plain SQL (store.reads: audit_entries), so that
`cronpolicy audit` does not import SQLAlchemy.
"""

import datetime

from cronpolicy.errors import UsageError
from cronpolicy.timeutil import UTC, parse_time
from cronpolicy.tooling.explain import with_documents_normalized

_EPOCH = datetime.datetime(2000, 1, 1, tzinfo=UTC)


def check(since=None, limit=100):
    """UsageError for what no database need be asked about."""
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    if since is not None:
        parse_time(since, _EPOCH)


def entries(reader, since=None, limit=100, table=None):
    """Audit entries (dicts, oldest first) read by ``reader`` (a
    store.reads.Reader in a transaction), at most ``limit`` of the newest."""
    check(since, limit)
    moment = None if since is None else parse_time(since, reader.now())
    found = reader.audit_entries(moment, table, limit)
    return [with_documents_normalized(entry) for entry in reversed(found)]


def changes(db, since=None, limit=100, table=None):
    """``entries`` in a reading transaction of ``db`` (a tooling Database,
    or store.writes.Plain)."""
    check(since, limit)
    with db.reading("read the audit") as reader:
        return entries(reader, since, limit, table)
