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

Written in plain SQL (store.writes), so that disable and enable import no
SQLAlchemy: ``db`` is anything with a ``writing(doing, reason)`` block
giving a store.writes.Writer (the commands' store.writes.Plain, or the
tooling's Database).
"""

import collections

from cronpolicy import policy
from cronpolicy.errors import UsageError
from cronpolicy.matching import (
    glob_matches, is_pattern, matching_policies, pattern_specificity)
from cronpolicy.rows import PolicyRow, from_mapping
from cronpolicy.store.writes import who

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
    with db.writing("%s %s" % (verb, name), reason=reason) as writer:
        key = {"name": name, "host": host}
        own = _row(writer, "policy_row_held", key)
        rows = _rows(writer)
        known = {row["name"] for row in writer.rows("known_names")}
        known |= {row.name for row in rows if not is_pattern(row.name)}
        if enabled:
            change = _enable(writer, key, reason, own, rows)
        else:
            change = _disable(writer, key, reason, own, known)
        if not is_pattern(name) and name not in known:
            change.warnings.append("no script named %s has run or has a policy row "
                                   "(a typo?)" % name)
        return change


def _row(writer, query, key):
    """The row of exactly (name, host) as a dict of its columns, or None."""
    found = writer.rows(query, key)
    return from_mapping(PolicyRow, found[0])._asdict() if found else None


def _rows(writer):
    """Every policy row, in id order (PolicyRow)."""
    return sorted((from_mapping(PolicyRow, row) for row in writer.rows("policies")),
                  key=lambda row: row.id)


def _known_hosts(writer):
    return {row["host"] for row in writer.rows("known_hosts")}


def _write(writer, key, reason, own, enabled):
    writer.count("add_policy_row" if own is None else "set_policy_row", dict(
        key, enabled=enabled, reason=reason or "", who=who()))
    return _row(writer, "policy_row", key)


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


def _disable(writer, key, reason, own, known):
    name, host = key["name"], key["host"]
    written = _write(writer, key, reason, own, False)
    change = Change("created" if own is None else "updated", written, [], [])
    rows = _rows(writer)
    hosts = _hosts_within(host, rows, _known_hosts(writer))
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


def _enable(writer, key, reason, own, rows):
    name, host = key["name"], key["host"]
    change = Change("unchanged", own and dict(own), [], [])
    if own is not None and not own["enabled"]:
        if any(own[column] != nothing for column, nothing in SETTINGS.items()):
            change = Change("updated", _write(writer, key, reason, own, True), [], [])
        else:
            writer.count("delete_policy_row", key)
            change = Change("deleted", None,
                            ["removed policy #%d, which disabled it" % own["id"]], [])
            own = None
        rows = _rows(writer)
    disabling = None if is_pattern(name) else policy.disabling_row(rows, name, host)
    if disabling is not None:
        # Only a row of (name, host) can outrank it: write one, then look again.
        written = _write(writer, key, reason, own, True)
        rows = _rows(writer)
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
