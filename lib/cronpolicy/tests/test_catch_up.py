"""Catching up what a rollout skipped (issue 15.4), with real scripts and
real `cronpolicy catch-up` processes on both backends: one run per block
however many starts were missed, on the host where they were skipped,
started from the host's own ticket and never from the database."""

import json
import os
import stat
import subprocess
import sys


from cronpolicy import catchup

CATCH_UP_POLICY = ("INSERT INTO cronpolicy.script_policy (name, catch_up)"
                   " VALUES ('nightly', 'once')")


def catch_up(script_env, *args):
    result = subprocess.run([sys.executable, "-m", "cronpolicy.tooling.cli", "catch-up"]
                            + list(args), env=script_env, capture_output=True, text=True,
                            timeout=120)
    return result


def state_dir(script_env):
    return os.path.join(script_env["XDG_STATE_HOME"], "cronpolicy")


def tickets(script_env):
    directory = catchup.ticket_dir(state_dir(script_env))
    return sorted(entry for entry in os.listdir(directory) if entry.endswith(".ticket")) \
        if os.path.isdir(directory) else []


def runs(dba, name="nightly"):
    return dba.execute("SELECT status, decision, block FROM cronpolicy.script_run"
                       " WHERE name = {} ORDER BY id", (name,))


def test_starts_missed_during_a_deploy_run_once_when_it_ends(scripts, dba, script_env):
    scripts.write("nightly")
    dba.execute(CATCH_UP_POLICY)
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true, reason = 'r42'")
    for _ in range(3):                      # three scheduled starts missed
        assert scripts.run("nightly").returncode == 0
    assert scripts.main_calls("nightly") == 0
    skips = runs(dba)
    assert [row[1] for row in skips] == ["deploy-pending"] * 3
    block = skips[0][2]
    # (The plain-SQL switch opened rollout #1: every skip names it.)
    assert block == "rollout:1" and {row[2] for row in skips} == {block}
    assert tickets(script_env) == ["cronpolicy-nightly.ticket"]

    waiting = catch_up(script_env)
    assert waiting.returncode == 0, waiting.stderr
    assert waiting.stdout == "" and scripts.main_calls("nightly") == 0   # cron mails nobody
    told = catch_up(script_env, "-v")
    assert "nightly: waiting" in told.stdout and scripts.main_calls("nightly") == 0

    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = false")
    done = catch_up(script_env, "--json")
    assert done.returncode == 0, done.stderr
    [row] = json.loads(done.stdout)
    assert (row["action"], row["block"], row["exit_code"]) == ("started", block, 0)
    assert scripts.main_calls("nightly") == 1
    assert runs(dba)[-1] == ("succeeded", "catch-up", block)
    assert tickets(script_env) == []
    again = catch_up(script_env)
    assert again.returncode == 0 and again.stdout == "" and scripts.main_calls("nightly") == 1


def test_a_window_block_is_caught_up_once_the_window_is_cancelled(scripts, dba, script_env):
    scripts.write("nightly")
    dba.execute(CATCH_UP_POLICY)
    dba.execute("INSERT INTO cronpolicy.rollout_window (id, starts_at, ends_at)"
                " VALUES (41, {}, {})".format(dba.now_plus(-60), dba.now_plus(3600)))
    scripts.run("nightly")
    assert runs(dba) == [("skipped", "in-window", "window:41")]
    assert "waiting" in catch_up(script_env, "--verbose").stdout
    dba.execute("UPDATE cronpolicy.rollout_window SET cancelled_at = {} WHERE id = 41"
                .format(dba.now_plus(0)))
    assert catch_up(script_env).returncode == 0
    assert runs(dba)[-1] == ("succeeded", "catch-up", "window:41")


def test_nothing_is_caught_up_without_the_policy_or_after_a_disabled_skip(scripts, dba,
                                                                           script_env):
    scripts.write("nightly")
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    scripts.run("nightly")                  # no catch_up policy: no ticket
    assert tickets(script_env) == []
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = false")
    dba.execute("INSERT INTO cronpolicy.script_policy (name, enabled, catch_up)"
                " VALUES ('nightly', false, 'once')")
    scripts.run("nightly")                  # skipped by a disabled policy: never caught up
    assert runs(dba)[-1] == ("skipped", "disabled", None) and tickets(script_env) == []


def test_a_ticket_goes_when_the_script_ran_since_or_was_disabled(scripts, dba, script_env):
    scripts.write("nightly")
    dba.execute(CATCH_UP_POLICY)
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    scripts.run("nightly")
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = false")
    scripts.run("nightly")                  # its next scheduled start came first
    assert scripts.main_calls("nightly") == 1
    result = catch_up(script_env)
    assert "dropped" in result.stdout and "started since" in result.stdout
    assert tickets(script_env) == [] and scripts.main_calls("nightly") == 1

    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    scripts.run("nightly")
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = false")
    dba.execute("UPDATE cronpolicy.script_policy SET enabled = false WHERE name = 'nightly'")
    assert "disabled since" in catch_up(script_env).stdout
    assert tickets(script_env) == [] and scripts.main_calls("nightly") == 1


def test_the_command_comes_from_the_host_and_is_refused_when_others_could_change_it(
        scripts, dba, script_env):
    scripts.write("nightly")
    dba.execute(CATCH_UP_POLICY)
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    scripts.run("nightly", "--exit", "3")
    [name] = tickets(script_env)
    path = os.path.join(catchup.ticket_dir(state_dir(script_env)), name)
    ticket = json.loads(open(path).read())
    # The start exactly as cron made it: interpreter, script, its arguments.
    assert ticket["argv"][1:] == [str(scripts.tmp_path / "nightly.py"), "--exit", "3"]
    assert "CRONPOLICY_DSN" in ticket["env"] and ticket["cwd"] == os.getcwd()
    os.chmod(path, 0o666)                   # anyone could now change the command
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = false")
    result = catch_up(script_env)
    assert "refusing" in result.stderr and scripts.main_calls("nightly") == 0
    assert os.path.exists(path + ".rejected") and tickets(script_env) == []
    assert stat.S_IMODE(os.stat(catchup.ticket_dir(state_dir(script_env))).st_mode) == 0o700


def test_a_wrapped_crontab_line_is_caught_up_and_its_command_sees_no_mark(dba, script_env,
                                                                           tmp_path):
    dba.execute("INSERT INTO cronpolicy.script_policy (name, catch_up) VALUES ('sync', 'once')")
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    out = tmp_path / "sync.out"
    command = [sys.executable, "-m", "cronpolicy.tooling.cli", "run", "sync", "--from-crontab",
               "--", "sh", "-c", 'echo "mark=${CRONPOLICY_CATCH_UP_BLOCK:-none}" >> %s' % out]
    assert subprocess.run(command, env=script_env, timeout=60).returncode == 0
    assert not out.exists()
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = false")
    result = catch_up(script_env)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == "mark=none\n"
    assert runs(dba, "sync")[-1][:2] == ("succeeded", "catch-up")


def test_dry_run_starts_nothing_and_keeps_the_ticket(scripts, dba, script_env):
    scripts.write("nightly")
    dba.execute(CATCH_UP_POLICY)
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    scripts.run("nightly")
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = false")
    result = catch_up(script_env, "--dry-run")
    assert "would start" in result.stdout and scripts.main_calls("nightly") == 0
    assert tickets(script_env) == ["cronpolicy-nightly.ticket"]


def test_two_runners_at_once_start_it_once(scripts, dba, script_env):
    scripts.write("nightly")
    dba.execute(CATCH_UP_POLICY)
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    scripts.run("nightly")
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = false")
    runners = [subprocess.Popen([sys.executable, "-m", "cronpolicy.tooling.cli", "catch-up"],
                                env=script_env, stdout=subprocess.PIPE, text=True)
               for _ in range(3)]
    for runner in runners:
        runner.communicate(timeout=120)
    assert scripts.main_calls("nightly") == 1


# What a review found (each failed before its fix) -------------------------------------------

def test_a_bad_file_in_the_tickets_place_does_not_break_the_skip(scripts, dba, script_env,
                                                                  tmp_path):
    """It raised out of the gate: a traceback at every later skip."""
    scripts.write("nightly")
    dba.execute(CATCH_UP_POLICY)
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    directory = catchup.ticket_dir(state_dir(script_env))
    os.makedirs(directory, mode=0o700)
    path = os.path.join(directory, "cronpolicy-nightly.ticket")
    for planted in ("garbage", "symlink"):
        if planted == "garbage":
            with open(path, "w") as handle:
                handle.write("not json")
            os.chmod(path, 0o600)
        else:
            os.symlink(str(tmp_path / "elsewhere"), path)
        result = scripts.run("nightly", "-v")
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        assert "moved aside" in result.stderr
        assert json.loads(open(path).read())["block"].startswith("rollout:")
        os.unlink(path)
        os.unlink(path + ".rejected")


def test_catch_up_decides_with_what_the_start_declared(scripts, dba, script_env):
    """It decided without the script's expected_runtime: a 2-hour job was
    started under a window an hour away, skipped again, every minute."""
    scripts.write("nightly", expected_runtime=7200)
    dba.execute(CATCH_UP_POLICY)
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    scripts.run("nightly")
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = false")
    dba.execute("INSERT INTO cronpolicy.rollout_window (starts_at, ends_at)"
                " VALUES ({}, {})".format(dba.now_plus(3600), dba.now_plus(7200)))
    result = catch_up(script_env, "-v")
    assert "nightly: waiting" in result.stdout and "would reach it" in result.stdout
    assert scripts.main_calls("nightly") == 0
    assert [row[1] for row in runs(dba)] == ["deploy-pending"]


def test_a_start_that_cannot_be_made_is_said_and_its_ticket_kept(scripts, dba, script_env,
                                                                  tmp_path):
    """Its working directory gone: the ticket was lost, and the message
    blamed the interpreter."""
    scripts.write("nightly")
    dba.execute(CATCH_UP_POLICY)
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    where = tmp_path / "wd"
    where.mkdir()
    subprocess.run([sys.executable, str(scripts.tmp_path / "nightly.py")], cwd=str(where),
                   env=scripts._env("nightly", None), timeout=60)
    where.rmdir()
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = false")
    result = catch_up(script_env)
    assert result.returncode == 1 and "directory %s is gone" % where in result.stderr
    directory = catchup.ticket_dir(state_dir(script_env))
    assert [entry for entry in os.listdir(directory) if entry.endswith(".failed")]
    assert tickets(script_env) == [] and catch_up(script_env).returncode == 0


def test_with_no_ticket_it_needs_no_database(script_env):
    """Run every minute on every host: it connected, and mailed exit 4
    every minute while the database was away."""
    away = dict(script_env, CRONPOLICY_DSN="postgresql://nobody@127.0.0.1:1/none")
    result = catch_up(away)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
