"""Catching up what a rollout skipped (issue 15.4), with real scripts and
real `cronpolicy catch-up` processes on both backends: one run per block
however many starts were missed, on the host where they were skipped,
started from the host's own ticket and never from the database."""

import json
import os
import stat
import subprocess
import sys

import pytest

from cronpolicy import catchup

from .conftest import DBA, wait_for

#: Every test here is integration (they reach a database or start processes):
#: under -m unit alone the module is not even imported (tests/layers.py).
pytestmark = pytest.mark.integration

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
    [row] = json.loads(done.stdout)["tickets"]
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
    assert "nightly: would start (skipped at " in result.stdout, result.stdout
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


# At most catch_up_at_once at a time, and no ticket lost to a runner's death (issue 26.10) --

#: A job that says how many catch-ups run at once when it starts (its own
#: file among them), then holds on until the test lets it go (bounded).
COUNTING_JOB = """\
import os, sys, time
from cronpolicy import CronScript

HERE = os.path.dirname(os.path.abspath(__file__))

class Job(CronScript):
    def main(self):
        running = os.path.join(HERE, "running")
        mine = os.path.join(running, "%s-%d" % (self.name, os.getpid()))
        open(mine, "w").close()
        with open(os.path.join(HERE, "seen"), "a") as seen:
            seen.write("%s %d\\n" % (self.name, len(os.listdir(running))))
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(HERE, "go")) and time.monotonic() < deadline:
            time.sleep(0.02)
        os.unlink(mine)

if __name__ == "__main__":
    Job().run()
"""


def _counting_tickets(scripts, dba, script_env, count, at_once):
    """``count`` scripts job0... skipped by a deploy, so each left a ticket;
    catch_up_at_once set to ``at_once``; the deploy over."""
    with open(script_env["CRONPOLICY_CONFIG"], "a") as config:
        config.write("catch_up_at_once = %d\n" % at_once)
    (scripts.tmp_path / "running").mkdir()
    dba.execute("INSERT INTO cronpolicy.script_policy (name, catch_up) VALUES ('job*', 'once')")
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    names = ["job%d" % number for number in range(count)]
    for name in names:
        (scripts.tmp_path / ("%s.py" % name)).write_text(COUNTING_JOB)
        assert scripts.run(name).returncode == 0
    assert len(tickets(script_env)) == count
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = false")
    return names


def _seen(scripts):
    path = scripts.tmp_path / "seen"
    lines = path.read_text().split("\n")[:-1] if path.exists() else []
    return [(line.split()[0], int(line.split()[1])) for line in lines]


def _running(scripts):
    return len(os.listdir(str(scripts.tmp_path / "running")))


def _waiting_on_children(pid):
    """The children of process ``pid`` once it is blocked waiting for one of
    them to end (its kernel wait channel says so), else None."""
    try:
        with open("/proc/%d/wchan" % pid) as wchan:
            if wchan.read().strip() != "do_wait":
                return None
        with open("/proc/%d/task/%d/children" % (pid, pid)) as children:
            return children.read().split() or None
    except OSError:
        return None


@pytest.mark.parametrize("dsn", ["sqlite"], indirect=True)
def test_catch_up_starts_at_most_catch_up_at_once_runs(scripts, dba, script_env):
    """60 tickets made 60 processes and connections within 1.4 s.  Once the
    runner waits for its starts to end, it has started as many as it may."""
    names = _counting_tickets(scripts, dba, script_env, 8, at_once=3)
    runner = subprocess.Popen([sys.executable, "-m", "cronpolicy.tooling.cli", "catch-up"],
                              env=script_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        wait_for(lambda: _waiting_on_children(runner.pid), 60, "the runner to wait")
        assert len(_waiting_on_children(runner.pid)) == 3
    finally:
        (scripts.tmp_path / "go").write_text("go")
        out, err = runner.communicate(timeout=120)
    assert runner.returncode == 0, err
    seen = _seen(scripts)
    assert sorted(name for name, _ in seen) == names            # each once
    assert max(count for _, count in seen) <= 3, seen
    assert [row[0] for row in dba.execute(
        "SELECT count(*) FROM cronpolicy.script_run WHERE decision = 'catch-up'")] == [8]
    assert tickets(script_env) == []


@pytest.mark.parametrize("dsn", ["sqlite"], indirect=True)
def test_a_runner_killed_leaves_its_starts_their_slots_and_its_tickets_to_the_next(
        scripts, dba, script_env):
    """kill -9 of the runner: the runs it started go on holding their slots,
    so the next runner starts nothing more until they end; then every
    ticket runs, each once."""
    names = _counting_tickets(scripts, dba, script_env, 5, at_once=2)
    # (No pipes: the runs it starts would hold them open past its death.)
    first = subprocess.Popen([sys.executable, "-m", "cronpolicy.tooling.cli", "catch-up"],
                             env=script_env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _running(scripts) == 2, 60, "two catch-ups running")
    finally:
        first.kill()
        first.wait(timeout=60)
    second = catch_up(script_env)
    assert second.returncode == 0 and second.stdout == "", second.stderr
    assert _running(scripts) == 2 and len(tickets(script_env)) == 3
    (scripts.tmp_path / "go").write_text("go")
    wait_for(lambda: _running(scripts) == 0, 60, "the orphaned catch-ups to end")
    wait_for(lambda: dba.execute("SELECT count(*) FROM cronpolicy.script_run WHERE"
                                 " decision = 'catch-up' AND status = 'succeeded'")[0][0] == 2,
             60, "their ends to be recorded")
    third = catch_up(script_env)
    assert third.returncode == 0, third.stderr
    seen = _seen(scripts)
    assert sorted(name for name, _ in seen) == names and max(n for _, n in seen) <= 2, seen
    assert tickets(script_env) == []


def _skipped_behind_job0(scripts, dba, script_env, *names):
    """job0's ticket (a job that holds on until "go"), catch_up_at_once = 1,
    then a ticket of each of ``names``, skipped by a deploy (so they come
    after job0's and wait for its slot)."""
    _counting_tickets(scripts, dba, script_env, 1, at_once=1)
    for name in names:
        scripts.write(name)
        dba.execute("INSERT INTO cronpolicy.script_policy (name, catch_up) VALUES ({}, 'once')",
                    (name,))
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    for name in names:
        assert scripts.run(name).returncode == 0 and scripts.main_calls(name) == 0
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = false")


def _runner(script_env, *args):
    """A `cronpolicy catch-up` process, its output piped."""
    return subprocess.Popen([sys.executable, "-m", "cronpolicy.tooling.cli", "catch-up"]
                            + list(args), env=script_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("dsn", ["sqlite"], indirect=True)
def test_a_ticket_that_waited_for_a_slot_is_judged_again_before_its_start(
        scripts, dba, script_env):
    """catch_up_at_once = 1: the second ticket waits for the first's run to
    end.  Its script's next scheduled start came meanwhile; the ticket was
    judged (nothing ran since the skip) before the wait, so it was started
    all the same: the job ran twice.  A ticket that waited is judged again."""
    _skipped_behind_job0(scripts, dba, script_env, "later")
    assert tickets(script_env) == ["cronpolicy-job0.ticket", "cronpolicy-later.ticket"]
    runner = _runner(script_env)
    try:
        wait_for(lambda: _waiting_on_children(runner.pid), 60, "the runner to wait for job0")
        assert scripts.run("later").returncode == 0         # its next scheduled start
        assert scripts.main_calls("later") == 1
    finally:
        (scripts.tmp_path / "go").write_text("go")
        out, err = runner.communicate(timeout=120)
    assert runner.returncode == 0, err
    assert scripts.main_calls("later") == 1, out
    assert "later: dropped" in out and "started since" in out, out
    assert tickets(script_env) == []


@pytest.mark.parametrize("dsn", ["sqlite"], indirect=True)
def test_a_ticket_rewritten_while_it_waited_for_a_slot_is_not_dropped_for_the_old_one(
        scripts, dba, script_env):
    """While the runner waited for a slot, 'later' ran on schedule (so the
    ticket it had read, of rollout 1, had nothing left to catch up), then a
    second rollout skipped it again and wrote a new ticket in its place.
    Judged again from the ticket read before the wait, it was dropped as
    'started since', and the path unlinked: the new rollout's ticket was
    lost, its skip never caught up."""
    _skipped_behind_job0(scripts, dba, script_env, "later")
    runner = _runner(script_env)
    try:
        # (job0 past its gate: a deploy pending at its start would skip it)
        wait_for(lambda: _waiting_on_children(runner.pid) and _running(scripts) == 1, 60,
                 "the runner to wait for job0, running")
        assert scripts.run("later").returncode == 0         # its next scheduled start
        assert scripts.main_calls("later") == 1
        dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
        assert scripts.run("later").returncode == 0         # skipped by a second rollout
        dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = false")
        assert scripts.main_calls("later") == 1
        assert tickets(script_env) == ["cronpolicy-later.ticket"]
    finally:
        (scripts.tmp_path / "go").write_text("go")
        out, err = runner.communicate(timeout=120)
    assert runner.returncode == 0, err
    again = catch_up(script_env)
    assert again.returncode == 0, again.stderr
    assert scripts.main_calls("later") == 2, (out, again.stdout)
    assert runs(dba, "later")[-1][:2] == ("succeeded", "catch-up")
    assert tickets(script_env) == []


@pytest.mark.parametrize("dsn", ["sqlite"], indirect=True)
def test_a_ticket_after_one_dropped_once_its_wait_ended_is_judged_again_too(
        scripts, dba, script_env):
    """'x-first' and 'x-second' (after job0 in the tickets' order) waited
    behind job0 (catch_up_at_once = 1) and both ran on schedule meanwhile.  'x-first', which waited for the slot, was
    judged again and dropped, freeing the slot; 'x-second' then found it free
    without waiting itself, so it was started on its judgement from before
    the wait: the job ran twice.  Every ticket judged before a wait is."""
    _skipped_behind_job0(scripts, dba, script_env, "x-first", "x-second")
    runner = _runner(script_env)
    try:
        wait_for(lambda: _waiting_on_children(runner.pid), 60, "the runner to wait for job0")
        for name in ("x-first", "x-second"):              # their next scheduled starts
            assert scripts.run(name).returncode == 0 and scripts.main_calls(name) == 1
    finally:
        (scripts.tmp_path / "go").write_text("go")
        out, err = runner.communicate(timeout=120)
    assert runner.returncode == 0, err
    assert (scripts.main_calls("x-first"), scripts.main_calls("x-second")) == (1, 1), out
    assert "x-first: dropped" in out and "x-second: dropped" in out, out
    assert tickets(script_env) == []


@pytest.mark.parametrize("dsn", ["postgresql"], indirect=True)
def test_a_ticket_that_cannot_be_judged_again_waits_for_the_next_runner(
        scripts, dba, script_env):
    """The database refuses connections while the runner waits for a slot:
    the ticket cannot be judged again, so it waits (kept) and the slot is
    let go; the runner still ends well, and the next one starts it."""
    from psycopg2.extensions import parse_dsn
    database = parse_dsn(dba.dsn)["dbname"]
    _skipped_behind_job0(scripts, dba, script_env, "x-later")
    runner = _runner(script_env, "-v")
    admin = DBA(dba.dsn.rpartition("/")[0] + "/postgres")
    try:
        wait_for(lambda: _waiting_on_children(runner.pid) and _running(scripts) == 1, 60,
                 "the runner to wait for job0, running")
        admin.execute('ALTER DATABASE "%s" ALLOW_CONNECTIONS false' % database)
    finally:
        (scripts.tmp_path / "go").write_text("go")
        try:
            out, err = runner.communicate(timeout=120)
        finally:
            admin.execute('ALTER DATABASE "%s" ALLOW_CONNECTIONS true' % database)
    assert runner.returncode == 0, err
    assert "x-later: waiting" in out and "cannot judge it again" in out, out
    assert scripts.main_calls("x-later") == 0
    assert tickets(script_env) == ["cronpolicy-x-later.ticket"]
    again = catch_up(script_env)
    assert again.returncode == 0, again.stderr
    assert scripts.main_calls("x-later") == 1 and tickets(script_env) == []


def test_a_ticket_left_taken_by_a_dead_runner_is_started_by_the_next(
        scripts, dba, script_env):
    """A runner killed between taking a ticket and starting it left the
    ticket taken for ever: the start was lost.  One whose taker lives is
    left to it."""
    import fcntl
    for name in ("nightly", "other"):
        scripts.write(name)
    dba.execute("INSERT INTO cronpolicy.script_policy (name, catch_up) VALUES ('*', 'once')")
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = true")
    scripts.run("nightly")
    scripts.run("other")
    dba.execute("UPDATE cronpolicy.deploy_state SET deploy_pending = false")
    directory = catchup.ticket_dir(state_dir(script_env))
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = os.path.join(directory, "cronpolicy-nightly.ticket.%d-1.taken" % gone.pid)
    os.rename(os.path.join(directory, "cronpolicy-nightly.ticket"), dead)
    alive = os.path.join(directory, "cronpolicy-other.ticket.%d-1.taken" % os.getpid())
    os.rename(os.path.join(directory, "cronpolicy-other.ticket"), alive)
    holder = os.open(alive, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)          # as a living runner holds it
    try:
        result = catch_up(script_env)
        assert result.returncode == 0, result.stderr
        assert scripts.main_calls("nightly") == 1 and scripts.main_calls("other") == 0
        assert os.path.exists(alive) and not os.path.exists(dead)
    finally:
        os.close(holder)
    again = catch_up(script_env)                # its taker gone too: started now
    assert again.returncode == 0, again.stderr
    assert scripts.main_calls("nightly") == 1 and scripts.main_calls("other") == 1
    assert os.listdir(directory) == [] or all(entry.startswith(".slot-")
                                              for entry in os.listdir(directory))


@pytest.mark.parametrize("dsn", ["sqlite"], indirect=True)
def test_a_ticket_rewritten_between_its_judgement_and_its_start_is_left_for_the_next(
        scripts, dba, script_env, monkeypatch):
    """A new skip rewrites the ticket just after catch-up judged the old one
    (no wait between them): the start took the file there now but ran the
    old ticket's command as the old block's catch-up, and the new skip's
    ticket went with it.  The ticket taken must be the one judged; the new
    one stays for the next runner."""
    from cronpolicy.config import Settings
    from cronpolicy.tooling import catch_up as runner
    _skipped_behind_job0(scripts, dba, script_env, "later")
    os.unlink(os.path.join(catchup.ticket_dir(state_dir(script_env)), "cronpolicy-job0.ticket"))
    judged = runner.review

    def review_then_a_new_skip(settings, found):
        verdicts = judged(settings, found)
        for ticket in found:            # a second rollout's skip, written anew
            with open(ticket["path"]) as handle:
                content = json.load(handle)
            content["block"], content["skipped_at"] = "rollout:99", content["skipped_at"] + 60
            with open(ticket["path"] + ".new", "w") as handle:
                json.dump(content, handle)
            os.chmod(ticket["path"] + ".new", 0o600)
            os.replace(ticket["path"] + ".new", ticket["path"])
        return verdicts
    monkeypatch.setattr(runner, "review", review_then_a_new_skip)
    for key, value in script_env.items():         # (this process's settings: the test's)
        if key.startswith(("CRONPOLICY_", "XDG_")):
            monkeypatch.setenv(key, value)
    settings = Settings.load()
    assert settings.state_dir == state_dir(script_env)
    rows, refused, started_all = runner.run(settings)
    assert started_all and refused == [] and rows == [], rows
    assert scripts.main_calls("later") == 0
    assert tickets(script_env) == ["cronpolicy-later.ticket"]
    [left] = catchup.tickets(state_dir(script_env), recover=False)[0]
    assert left["block"] == "rollout:99"
