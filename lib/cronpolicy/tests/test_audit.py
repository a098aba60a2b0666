"""Who changed what, and why a script was skipped: both backends."""

import json

import pytest

from cronpolicy import exitcodes

#: Every test here is integration (they reach a database or start processes):
#: under -m unit alone the module is not even imported (tests/layers.py).
pytestmark = pytest.mark.integration


def test_cli_and_plain_sql_changes_are_audited_with_reasons(cli, dba):
    assert cli("disable", "publish-*", "--reason", "mirror down")[0] == exitcodes.OK
    assert cli("deploy", "begin", "--reason", "release 42")[0] == exitcodes.OK
    code, out, _ = cli("window", "add", "--start", "+1h", "--duration", "1h", "--reason",
                       "nightly", "--json")
    window_id = json.loads(out)["id"]
    dba.execute("UPDATE cronpolicy.rollout_window SET cancelled_at = starts_at")   # plain SQL
    dba.execute("DELETE FROM cronpolicy.script_policy")
    code, out, _ = cli("audit", "--json")
    entries = json.loads(out)["changes"]
    summary = [(e["table_name"], e["operation"], e["reason"]) for e in entries]
    # (deploy begin opens a rollout; the switch follows it.)
    assert summary == [
        ("script_policy", "INSERT", "mirror down"),
        ("rollout", "INSERT", "release 42"),
        ("deploy_state", "UPDATE", "release 42"),
        ("rollout_window", "INSERT", "nightly"),
        ("rollout_window", "UPDATE", None),
        ("script_policy", "DELETE", None),
    ]
    assert entries[0]["new_row"]["name"] == "publish-*"
    assert entries[1]["new_row"]["kind"] == "full" and entries[1]["new_row"]["ended_at"] is None
    assert entries[2]["changes"]["deploy_pending"] in ([False, True], [0, 1])
    assert entries[4]["row_id"] == window_id and entries[4]["old_row"]["cancelled_at"] is None
    assert entries[5]["old_row"]["reason"] == "mirror down"
    if dba.backend == "postgresql":
        users = {e["db_user"] for e in entries}
        assert users == {dba.scalar("SELECT session_user")}
    code, out, _ = cli("audit")
    assert code == exitcodes.OK and "mirror down" in out and "deploy_pending" in out
    code, out, _ = cli("audit", "--since", "now+1h", "--json")
    assert json.loads(out)["changes"] == []


def test_why_names_the_row_and_the_change_behind_a_skip(cli, dba, scripts):
    scripts.write("publish-distro")
    assert cli("disable", "publish-*", "--reason", "mirror down")[0] == exitcodes.OK
    assert scripts.run("publish-distro").returncode == exitcodes.OK      # skipped
    assert cli("enable", "publish-*")[0] == exitcodes.OK
    assert cli("deploy", "begin", "--reason", "release 42")[0] == exitcodes.OK
    assert scripts.run("publish-distro").returncode == exitcodes.OK      # skipped again
    assert cli("deploy", "end")[0] == exitcodes.OK
    assert scripts.run("publish-distro").returncode == exitcodes.OK      # ran
    code, out, _ = cli("why", "publish-distro", "--json")
    runs = json.loads(out)["runs"]
    assert [run["status"] for run in runs] == ["succeeded", "skipped", "skipped"]
    deploy_cause, policy_cause = runs[1]["cause"], runs[2]["cause"]
    assert (deploy_cause["table_name"], deploy_cause["operation"]) == ("rollout", "INSERT")
    assert deploy_cause["reason"] == "release 42" and runs[1]["block"] == "rollout:1"
    assert policy_cause["table_name"] == "script_policy"
    assert policy_cause["reason"] == "mirror down" and policy_cause["operation"] == "INSERT"
    assert runs[2]["decision"] == "disabled" and runs[2]["policy_id"] == policy_cause["row_id"]
    code, out, _ = cli("why", "publish-distro")
    assert "caused by INSERT of script_policy" in out and "mirror down" in out


def test_injection_through_reasons_and_names_is_stored_literally(cli, dba):
    hostile = "x'); DELETE FROM cronpolicy.policy_audit; --"
    assert cli("disable", hostile, "--reason", hostile)[0] == exitcodes.OK
    code, out, _ = cli("audit", "--json")
    [entry] = json.loads(out)["changes"]
    assert entry["reason"] == hostile and entry["new_row"]["name"] == hostile
    code, out, _ = cli("why", hostile, "--json")
    assert code == exitcodes.OK and json.loads(out)["runs"] == []


def _audit_as_seen(cli, dba):
    """`audit --json` after the same changes, without what differs by nature
    (ids, clocks, who)."""
    assert cli("deploy", "begin", "--reason", "release 4521")[0] == exitcodes.OK
    assert cli("disable", "publish-distro", "--reason", "mirror down")[0] == exitcodes.OK
    runtime = "interval '20 minutes'" if dba.backend == "postgresql" else "1200"
    dba.execute("UPDATE cronpolicy.script_policy SET expected_runtime = %s" % runtime)
    dba.execute("INSERT INTO cronpolicy.rollout_window (starts_at, ends_at) VALUES ({}, {})".format(
        "'2030-01-01 02:00:00+00'" if dba.backend == "postgresql" else "'2030-01-01 02:00:00'",
        "'2030-01-01 03:00:00+00'" if dba.backend == "postgresql" else "'2030-01-01 03:00:00'"))
    code, out, err = cli("audit", "--json")
    assert code == exitcodes.OK, err
    entries = json.loads(out)["changes"]
    volatile = {"id", "changed_at", "created_at", "changed_by", "created_by", "began_at",
                "owner"}
    return [(entry["table_name"], entry["operation"],
             {key: value for key, value in (entry["new_row"] or {}).items()
              if key not in volatile},
             {key: value for key, value in entry["changes"].items() if key not in volatile})
            for entry in entries]


@pytest.mark.integration
@pytest.mark.postgresql
def test_the_audit_reads_the_same_on_both_backends(request, monkeypatch, tmp_path):
    """SQLite's triggers write 1/0, its own time text and seconds where
    PostgreSQL's write true/false, ISO times and interval text."""
    from .conftest import DBA, dsn_for, in_process_cli, make_env
    seen = {}
    for backend in ("postgresql", "sqlite"):
        dsn = dsn_for(request, backend)
        home = tmp_path / backend
        home.mkdir()
        cli = in_process_cli(make_env(home, dsn), monkeypatch,
                             request.getfixturevalue("capsys"))
        seen[backend] = _audit_as_seen(cli, DBA(dsn))
    for postgresql, sqlite in zip(seen["postgresql"], seen["sqlite"]):
        assert postgresql == sqlite
    assert len(seen["postgresql"]) == len(seen["sqlite"])
    deploy = next(changes for table, op, _, changes in seen["sqlite"] if table == "deploy_state")
    assert deploy["deploy_pending"] == [False, True]
    begun = next(row for table, op, row, _ in seen["sqlite"] if table == "rollout")
    assert (begun["kind"], begun["reason"], begun["ended_at"]) == ("full", "release 4521", None)
    policy = [changes for table, op, _, changes in seen["sqlite"]
              if table == "script_policy" and op == "UPDATE"][-1]
    assert policy["expected_runtime"] == [None, 1200.0]


@pytest.mark.parametrize("style", ["sql_standard", "iso_8601", "postgres_verbose"])
def test_durations_in_the_audit_whatever_the_writers_interval_style(pg_dsn, style, monkeypatch,
                                                                     tmp_path, capsys):
    """A DBA's session with another IntervalStyle wrote '1 2:00:00' or
    'P1DT2H' into the row documents, read back as 7200 or nothing."""
    from .conftest import DBA, in_process_cli, make_env
    DBA(pg_dsn).execute("SET IntervalStyle = '%s'; INSERT INTO cronpolicy.script_policy"
                        " (name, expected_runtime) VALUES ('c', '1 day 2 hours')" % style)
    code, out, _ = in_process_cli(make_env(tmp_path, pg_dsn), monkeypatch, capsys)("audit",
                                                                                 "--json")
    assert code == exitcodes.OK
    [entry] = json.loads(out)["changes"]
    assert entry["new_row"]["expected_runtime"] == 93600.0


def test_why_and_the_audit_name_who_changed_a_row_on_both_backends(cli, dba, scripts):
    """Issue 26.13: on SQLite `why` said "by -" for a change the cronpolicy
    command made: the audit entry had no user.  It is the login on
    PostgreSQL, the operating-system user on SQLite (as changed_by)."""
    import getpass
    scripts.write("publish-distro")
    assert cli("disable", "publish-distro", "--reason", "mirror down")[0] == exitcodes.OK
    assert scripts.run("publish-distro").returncode == exitcodes.OK        # skipped
    who = dba.scalar("SELECT session_user") if dba.backend == "postgresql" else getpass.getuser()
    code, out, _ = cli("why", "publish-distro")
    assert code == exitcodes.OK and "caused by INSERT of script_policy #1 by %s at" % who in out, out
    code, out, _ = cli("audit", "--json")
    assert [entry["db_user"] for entry in json.loads(out)["changes"]] == [who]
    # A DBA's own change on SQLite has no known user: said as such, not guessed.
    if dba.backend == "sqlite":
        dba.execute("UPDATE cronpolicy.script_policy SET reason = 'still down'")
        code, out, _ = cli("audit", "--json")
        assert [entry["db_user"] for entry in json.loads(out)["changes"]] == [who, ""]


def _json_types(value):
    """The JSON type of every leaf of ``value``, by path: 0 and false differ here."""
    if isinstance(value, dict):
        return {key: _json_types(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_types(item) for item in value]
    return {bool: "boolean", int: "number", float: "number", str: "string",
            type(None): "null"}[type(value)]


@pytest.mark.integration
@pytest.mark.postgresql
def test_the_audit_gives_booleans_one_json_type_on_both_backends(request, monkeypatch, tmp_path):
    """Python's 0 == False hides what a JSON reader sees: compare types."""
    from .conftest import DBA, dsn_for, in_process_cli, make_env
    seen = {}
    for backend in ("postgresql", "sqlite"):
        dsn = dsn_for(request, backend)
        home = tmp_path / backend
        home.mkdir()
        cli = in_process_cli(make_env(home, dsn), monkeypatch, request.getfixturevalue("capsys"))
        dba = DBA(dsn)
        assert cli("deploy", "begin", "--reason", "r")[0] == exitcodes.OK
        assert cli("disable", "publish-distro")[0] == exitcodes.OK
        dba.execute("UPDATE cronpolicy.script_policy SET rollout_exempt = true,"
                    " interruptible = true, fleet_single_instance = false")
        assert cli("enable", "publish-distro")[0] == exitcodes.OK
        assert cli("deploy", "end")[0] == exitcodes.OK
        code, out, _ = cli("audit", "--json")
        entries = json.loads(out)["changes"]
        # (Who changed a row differs by nature: the changes to it are left out.)
        seen[backend] = [(entry["table_name"], entry["operation"],
                          _json_types({"old_row": entry["old_row"], "new_row": entry["new_row"],
                                       "changes": {key: value for key, value
                                                   in entry["changes"].items()
                                                   if key not in ("changed_by", "changed_at")}}))
                         for entry in entries]
        booleans = [value for entry in entries for row in (entry["old_row"], entry["new_row"])
                    for key, value in (row or {}).items()
                    if key in ("enabled", "rollout_exempt", "interruptible",
                               "fleet_single_instance", "deploy_pending")]
        assert booleans and all(value is None or isinstance(value, bool) for value in booleans)
    for postgresql, sqlite in zip(seen["postgresql"], seen["sqlite"]):
        assert postgresql == sqlite
    assert len(seen["postgresql"]) == len(seen["sqlite"])


def test_a_new_rule_is_known_to_the_gate_its_log_and_why(cli, dba, tmp_path, monkeypatch):
    """Issue 29.2: a rule that reads no new data is one function and one
    registry entry: the gate records its skip, the log says what the start
    waits for in its words, and `why` finds the change behind it where its
    entry says, with no other edit."""
    import logging
    from cronpolicy import CronScript, policy
    from .test_policy import HELD
    monkeypatch.setattr(policy, "RULES", policy.RULES + (HELD,))
    dba.execute("INSERT INTO cronpolicy.script_policy (name, host, enabled, reason, catch_up)"
                " VALUES ('job', '*', true, 'hold for the mirror', 'once')")
    calls = []

    class Job(CronScript):
        name = "job"

        def main(self):
            calls.append(1)

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        assert Job().run(["--log-file", str(tmp_path / "job.log")], exit=False) == exitcodes.OK
    finally:
        for handler in [handler for handler in root.handlers if handler not in handlers]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)
    assert calls == []
    assert ("it will be caught up once the hold of policy #1 ends"
            in (tmp_path / "job.log").read_text())
    code, out, _ = cli("why", "job", "--json")
    [found] = json.loads(out)["runs"]
    assert (found["status"], found["decision"], found["block"]) == ("skipped", "held", "held:1")
    assert (found["cause"]["table_name"], found["cause"]["row_id"]) == ("script_policy", 1)
    assert found["cause"]["new_row"]["reason"] == "hold for the mirror"
    code, out, _ = cli("why", "job")
    assert code == exitcodes.OK and "caused by INSERT of script_policy #1" in out, out


def test_why_reads_any_block_a_run_holds_without_a_traceback(cli, dba):
    """`why` crashed on a run whose block named no rollout it could look up:
    "rollout:²" (a digit to str.isdigit, not to int) raised ValueError, and
    an id past bigint OverflowError on SQLite.  Such a block (written by
    hand, or by another tool) names no rollout: no cause, exit 0."""
    for number, block in enumerate(["rollout:\u00b2", "rollout:99999999999999999999",
                                    "rollout:-1", "rollout:"]):
        dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, status, decision,"
                    " spool_id, finished_at, block) VALUES ('job', 'h', 1, 'skipped',"
                    " 'deploy-pending', 'k%d', %s, '%s')" % (number, dba.now_plus(0), block))
    code, out, err = cli("why", "job", "--json")
    assert code == exitcodes.OK, err
    assert [run["cause"] for run in json.loads(out)["runs"]] == [None] * 4
