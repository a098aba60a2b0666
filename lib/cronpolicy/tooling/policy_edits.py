"""Switching scripts off and on: the rows of cronpolicy.script_policy.

The rule the gate applies (``cronpolicy.matching``): among the rows that
match a script on a host, the most specific decides (an exact name beats a
pattern, a specific host beats ``*``; on a tie a disabling row wins).
``disable`` and ``enable`` keep to that rule and make the operator's latest
action take effect where it can, and say exactly why where it cannot:

* ``disable NAME`` makes the row for exactly (NAME, host) disabling, then
  names every known script the row covers that a row outranking it keeps
  enabled on the hosts asked, with the command that disables it there too
  (never beyond those hosts); it never overrules such a row: someone made
  it on purpose.
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
from cronpolicy.matching import (
    glob_matches, is_pattern, matching_policies, pattern_specificity)
from cronpolicy.rows import PolicyRow, from_mapping
from cronpolicy.tooling.tables import script_policy, script_run

#: The columns that make a policy row more than an on/off switch, with the
#: value that means "says nothing" (fleet_single_instance = false says
#: something: no limit, whatever the script declares).
SETTINGS = {"expected_runtime": None, "rollout_exempt": False, "interruptible": False,
            "fleet_single_instance": None, "expected_interval": None, "max_concurrent": None}

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


def _known_hosts(connection):
    return {row[0] for row in connection.execute(select(script_run.c.host).distinct())}


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


def _overlap(one, other):
    """Whether two glob patterns can match a common name (as far as either
    matches the other's text: enough for the rows operators write)."""
    return one == other or glob_matches(one, other) or glob_matches(other, one)


def _hosts_within(host, rows, known_hosts):
    """The host (pattern) given, then the rows' hosts and the known hosts it
    covers, broadest first: where a disabling row of ``host`` may be outranked.
    Only hosts within ``host``: advice for them never reaches beyond it."""
    within = {candidate for candidate in {row.host for row in rows} | set(known_hosts)
              if candidate != host and glob_matches(host, candidate)}
    return [host] + sorted(within, key=lambda candidate: (pattern_specificity(candidate),
                                                          candidate))


def _describe(row):
    return "policy #%d (name %s, host %s%s)" % (row.id, row.name, row.host,
                                                ": " + row.reason if row.reason else "")


def _outranks(winner, written):
    """Why ``winner`` comes before the row ``written`` (matching.precedence)."""
    if pattern_specificity(winner.name) > pattern_specificity(written["name"]):
        return "its name is exact" if not is_pattern(winner.name) else \
            "its name pattern is more specific"
    return "its host is more specific" if not is_pattern(winner.host) or \
        pattern_specificity(winner.host) > pattern_specificity(written["host"]) else \
        "it comes first"


def _command(verb, name, host):
    """The command line that does ``verb`` to ``name`` on ``host``, quoted for the shell."""
    import shlex
    return "cronpolicy %s %s%s" % (verb, shlex.quote(name),
                                   "" if host == "*" else " --host " + shlex.quote(host))


def _disable(db, connection, name, host, reason, own, where, known):
    written = _write(db, connection, name, host, reason, own, where, False)
    change = Change("created" if own is None else "updated", written, [], [])
    rows = _rows(connection)
    hosts = _hosts_within(host, rows, _known_hosts(connection))
    for script in sorted(known):
        if not glob_matches(name, script):
            continue
        advised = []        # (host pattern, winner id) a warning already covers
        for where_host in hosts:
            winner = next(iter(matching_policies(rows, script, where_host)), None)
            if winner is None or not winner.enabled or any(
                    winner.id == covered_by and glob_matches(pattern, where_host)
                    for pattern, covered_by in advised):
                continue
            advised.append((where_host, winner.id))
            change.warnings.append(
                "%s stays enabled%s: %s outranks policy #%d (%s) and enables it (run `%s` to "
                "disable it there too)" % (
                    script, "" if where_host == "*" else " on " + where_host,
                    _describe(winner), written["id"], _outranks(winner, written),
                    _command("disable", script, where_host)))
    return change


def _enable(db, connection, name, host, reason, own, where):
    change = Change("unchanged", own and dict(own), [], [])
    if own is not None and not own["enabled"]:
        if any(own[column] != nothing for column, nothing in SETTINGS.items()):
            change = Change("updated", _write(db, connection, name, host, reason, own, where,
                                              True), [], [])
        else:
            connection.execute(delete(script_policy).where(where))
            change = Change("deleted", None,
                            ["removed policy #%d, which disabled it" % own["id"]], [])
            own = None
    rows = _rows(connection)
    disabling = None if is_pattern(name) else policy.disabling_row(rows, name, host)
    if disabling is not None:
        # Only a row of (name, host) can outrank it: write one, then look again.
        written = _write(db, connection, name, host, reason, own, where, True)
        rows = _rows(connection)
        still = policy.disabling_row(rows, name, host)
        if still is None:
            change.notes.append("%s disables it; policy #%d enables %s on %s and wins, being "
                                "more specific" % (_describe(disabling), written["id"], name,
                                                   host))
        else:
            change.warnings.append("%s still disables it: it is as specific as policy #%d, "
                                   "and on a tie the disabling row wins" % (
                                       _describe(still), written["id"]))
        change = Change("created" if own is None else "updated", written, change.notes,
                        change.warnings)
    # Every other row that still disables what this enables, anywhere.
    others = [row for row in rows if not row.enabled and _overlap(row.name, name)
              and _overlap(row.host, host) and (row.name, row.host) != (name, host)
              and (disabling is None or row.id != disabling.id)]
    for row in others:
        change.warnings.append("%s still disables %s%s" % (
            _describe(row), row.name if row.name != name else "it",
            "" if row.host == host else " on " + row.host))
    if change.action == "unchanged" and not others and disabling is None:
        change.notes.append("%s was not disabled%s" % (
            name, "" if host == "*" else " on " + host))
    return change
