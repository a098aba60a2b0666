"""Switching scripts off and on: the rows of cronpolicy.script_policy.

``disable``/``enable`` write the row for exactly (name, host), creating it
if needed; other rows are never touched, so a DBA's hand-written pattern
rows stay as they are.  Because precedence is by specificity (see
``cronpolicy.matching``), ``enable`` reports any remaining rows that still
switch the script off somewhere, rather than silently deleting them.
"""

from sqlalchemy import and_, select

from cronpolicy import policy
from cronpolicy.errors import UsageError
from cronpolicy.matching import glob_matches, is_pattern
from cronpolicy.rows import PolicyRow, from_mapping
from cronpolicy.tooling.tables import script_policy


def set_enabled(db, name, enabled, host="*", reason=""):
    """Make (name, host)'s own row say ``enabled``.

    Returns ``(row, created, still_disabling)``: the row as written, whether
    it was new, and (when enabling) the other rows that still disable the
    script on some or all hosts.
    """
    name = (name or "").strip()
    host = (host or "").strip()
    if not name:
        raise UsageError("script name must not be empty")
    if not host:
        raise UsageError("host must not be empty")
    values = dict({"enabled": enabled, "reason": reason or ""}, **db.who_columns("changed_by"))
    where = and_(script_policy.c.name == name, script_policy.c.host == host)
    verb = "enable" if enabled else "disable"
    with db.begin("%s %s" % (verb, name), reason=reason) as connection:
        existing = connection.execute(select(script_policy.c.id).where(where)
                                      .with_for_update()).first()
        if existing is None:
            connection.execute(script_policy.insert().values(name=name, host=host, **values))
        else:
            connection.execute(script_policy.update().where(where).values(**values))
        row = connection.execute(select(script_policy).where(where)).mappings().one()
        still_disabling = []
        if enabled and not is_pattern(name):
            rows = [from_mapping(PolicyRow, other)
                    for other in connection.execute(select(script_policy)).mappings()]
            if not is_pattern(host):
                # What the gate will actually do on that host.
                disabling = policy.disabling_row(rows, name, host)
                if disabling is not None:
                    still_disabling.append(disabling)
            else:
                still_disabling = [
                    other for other in rows
                    if not other.enabled and other.id != row["id"]
                    and glob_matches(other.name, name)
                    and (host == "*" or other.host == host or other.host == "*")]
        return dict(row), existing is None, still_disabling
