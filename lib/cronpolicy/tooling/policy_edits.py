"""Switching scripts off and on: the rows of cronpolicy.script_policy.

The rule the gate applies (``cronpolicy.matching``): among the rows that
match a script on a host, the most specific decides (an exact name beats a
pattern, a specific host beats ``*``; on a tie a disabling row wins).
``disable`` and ``enable`` keep to that rule and make the operator's latest
action take effect where it can, and say exactly why where it cannot:

* ``disable NAME`` makes the row for exactly (NAME, host) disabling, then
  names every known script the row covers that a more specific row keeps
  enabled (it never overrules such a row: someone made it on purpose).
* ``enable NAME`` takes back the disabling row for exactly (NAME, host):
  deleted when it says nothing else, else switched to enabled.  Only when
  another, less specific row still disables the script does it write an
  enabling row for (NAME, host), and it says which row it overrides; a row
  that only enables, left behind for nothing, would make a later
  ``disable 'publish-*'`` silently miss the script.  Rows that disable the
  script on other hosts are named.
* Either warns when NAME is a name no run and no row has ever mentioned
  (a typo disables nothing).

Other rows are never changed, so a DBA's hand-written rows stay as they are.
"""

import collections

from sqlalchemy import and_, delete, select

from cronpolicy import policy
from cronpolicy.errors import UsageError
from cronpolicy.matching import glob_matches, is_pattern, matching_policies
from cronpolicy.rows import PolicyRow, from_mapping
from cronpolicy.tooling.tables import script_policy, script_run

#: The columns that make a policy row more than an on/off switch.
SETTINGS = ("expected_runtime", "rollout_exempt", "interruptible", "fleet_single_instance",
            "expected_interval", "max_concurrent")

#: What a change did: ``action`` is one of created, updated, deleted,
#: unchanged; ``row`` the (name, host) row after it (None once deleted);
#: ``notes`` lines for the operator, ``warnings`` lines for standard error.
Change = collections.namedtuple("Change", "action row notes warnings")


def set_enabled(db, name, enabled, host="*", reason=""):
    """Disable or enable ``name`` (a script or a pattern) on ``host``."""
    name, host = (name or "").strip(), (host or "").strip()
    if not name:
        raise UsageError("script name must not be empty")
    if not host:
        raise UsageError("host must not be empty")
    verb = "enable" if enabled else "disable"
    with db.begin("%s %s" % (verb, name), reason=reason) as connection:
        where = and_(script_policy.c.name == name, script_policy.c.host == host)
        own = connection.execute(select(script_policy).where(where).with_for_update()
                                 ).mappings().first()
        known = _known_names(connection)
        if enabled:
            change = _enable(db, connection, name, host, reason, own, where)
        else:
            change = _disable(db, connection, name, host, reason, own, where, known)
        if not is_pattern(name) and name not in known:
            change.warnings.append("no script named %s has run or has a policy row "
                                   "(a typo?)" % name)
        return change


def _known_names(connection):
    names = {row[0] for row in connection.execute(select(script_run.c.name).distinct())}
    names |= {row[0] for row in connection.execute(select(script_policy.c.name).distinct())
              if not is_pattern(row[0])}
    return names


def _rows(connection):
    return [from_mapping(PolicyRow, row)
            for row in connection.execute(select(script_policy)).mappings()]


def _write(db, connection, name, host, reason, own, where, enabled):
    values = dict({"enabled": enabled, "reason": reason or ""}, **db.who_columns("changed_by"))
    if own is None:
        connection.execute(script_policy.insert().values(name=name, host=host, **values))
    else:
        connection.execute(script_policy.update().where(where).values(**values))
    return dict(connection.execute(select(script_policy).where(where)).mappings().one())


def _describe(row):
    return "policy #%d (name %s, host %s%s)" % (row.id, row.name, row.host,
                                                ": " + row.reason if row.reason else "")


def _disable(db, connection, name, host, reason, own, where, known):
    written = _write(db, connection, name, host, reason, own, where, False)
    change = Change("created" if own is None else "updated", written, [], [])
    rows = _rows(connection)
    for script in sorted(known):
        if not glob_matches(name, script):
            continue
        winner = next(iter(matching_policies(rows, script, host)), None)
        if winner is not None and winner.enabled:
            change.warnings.append(
                "%s stays enabled%s: %s is more specific and enables it (run `cronpolicy "
                "disable %s%s` to disable it too)" % (
                    script, "" if host == "*" else " on " + host, _describe(winner), script,
                    "" if host == "*" else " --host " + host))
    return change


def _enable(db, connection, name, host, reason, own, where):
    change = Change("unchanged", own and dict(own), [], [])
    if own is not None and not own["enabled"]:
        if any(own[column] not in (None, False) for column in SETTINGS):
            change = Change("updated", _write(db, connection, name, host, reason, own, where,
                                              True), [], [])
        else:
            connection.execute(delete(script_policy).where(where))
            change = Change("deleted", None,
                            ["removed policy #%d, which disabled it" % own["id"]], [])
            own = None
    if is_pattern(name):
        _name_specific_disablers(connection, name, host, change)
        return change
    rows = _rows(connection)
    disabling = policy.disabling_row(rows, name, host)
    if disabling is not None:
        # Only a row of (name, host) outranks it: write one, and say why.
        written = _write(db, connection, name, host, reason, own, where, True)
        change = Change("created" if own is None else "updated", written,
                        change.notes + ["%s disables it; policy #%d enables %s on %s and wins, "
                                        "being more specific" % (
                                            _describe(disabling), written["id"], name, host)],
                        change.warnings)
    elif change.action == "unchanged":
        change.notes.append("%s was not disabled%s" % (
            name, "" if host == "*" else " on " + host))
    if host == "*":
        rows = _rows(connection)
        for row in rows:
            if (not row.enabled and row.host != "*" and glob_matches(row.name, name)
                    and policy.disabling_row(rows, name, row.host) is not None):
                change.warnings.append("still disabled on %s by %s" % (row.host, _describe(row)))
    return change


def _name_specific_disablers(connection, pattern, host, change):
    """After enabling a pattern: the more specific rows that still disable
    some of the scripts it covers."""
    for row in _rows(connection):
        if (not row.enabled and row.name != pattern and glob_matches(pattern, row.name)
                and (host == "*" or glob_matches(host, row.host))):
            change.warnings.append("%s still disables %s: it is more specific" % (
                _describe(row), row.name))
