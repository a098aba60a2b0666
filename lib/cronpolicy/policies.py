"""Switching scripts off and on: the rows of cronpolicy.script_policy.

``disable``/``enable`` write the row for exactly (name, host), creating it
if needed; other rows are never touched, so a DBA's hand-written pattern
rows stay as they are.  Because precedence is by specificity (see
``cronpolicy.policy``), ``enable`` reports any remaining rows that still
switch the script off somewhere, rather than silently deleting them.
"""

from sqlalchemy import and_, select

from cronpolicy import config
from cronpolicy.errors import UsageError
from cronpolicy.policy import PolicyRow, glob_matches, is_pattern, matching_policies
from cronpolicy.tables import script_policy


def policy_rows(connection):
    """Every script_policy row, as the decision functions take them."""
    return [PolicyRow(row["id"], row["name"], row["host"], row["enabled"], row["reason"],
                      row["expected_runtime"], row["rollout_exempt"], row["changed_by"],
                      row["changed_at"], row["interruptible"], row["fleet_single_instance"])
            for row in connection.execute(select(script_policy)).mappings()]


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
    values = {"enabled": enabled, "reason": reason or ""}
    if db.backend == config.SQLITE:
        values["changed_by"] = db.who()
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
            rows = policy_rows(connection)
            if not is_pattern(host):
                # What the gate will actually do on that host.
                winner = matching_policies(rows, name, host)[0]
                if not winner.enabled:
                    still_disabling.append(winner)
            else:
                still_disabling = [
                    other for other in rows
                    if not other.enabled and other.id != row["id"]
                    and glob_matches(other.name, name)
                    and (host == "*" or other.host == host or other.host == "*")]
        return dict(row), existing is None, still_disabling


def list_policies(db):
    with db.begin("list policies") as connection:
        return [dict(row) for row in connection.execute(
            select(script_policy).order_by(script_policy.c.name, script_policy.c.host)).mappings()]
