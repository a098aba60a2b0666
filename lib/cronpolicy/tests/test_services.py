"""Service-scoped rollouts and release pinning (issue 16), with real
processes on both backends: a symlink switched while a run is in the
middle of its work, two services deployed at once, scripts with no needs
left alone, and deploy wait told which runs to wait for."""

import json
import os
import signal
import subprocess
import sys

from cronpolicy import exitcodes

from .conftest import wait_for_file

LATE_IMPORT_SCRIPT = '''\
import os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from cronpolicy import CronScript

class Job(CronScript):
    name = "release-job"

    def main(self):
        out = os.environ["JOB_OUT"]
        with open(out + ".ready", "w") as ready:
            ready.write("ready\\n")
        deadline = time.monotonic() + 30
        while not os.path.exists(out + ".go") and time.monotonic() < deadline:
            time.sleep(0.02)
        import late_module          # after the switch: must be the release it started in
        with open(out, "a") as handle:
            handle.write("%s %s\\n" % (late_module.VERSION, self.release))

Job().run()
'''


def release(root, number):
    """releases/NUMBER with the job and a late_module saying NUMBER."""
    directory = root / "releases" / str(number)
    (directory / "cron").mkdir(parents=True)
    (directory / "lib").mkdir()
    (directory / "cron" / "job.py").write_text(LATE_IMPORT_SCRIPT)
    (directory / "lib" / "late_module.py").write_text("VERSION = %d\n" % number)
    return directory


def switch(root, number):
    """Point root/current at releases/NUMBER atomically, as deploy tools do."""
    link = root / "current.new"
    if link.is_symlink():
        link.unlink()
    os.symlink(os.path.join("releases", str(number)), link)
    os.replace(link, root / "current")


def test_a_run_keeps_importing_from_the_release_it_started_in(script_env, dba, tmp_path):
    root = tmp_path / "app"
    first, second = release(root, 1), release(root, 2)
    switch(root, 1)
    out = tmp_path / "out"
    env = dict(script_env, JOB_OUT=str(out))
    job = [sys.executable, str(root / "current" / "cron" / "job.py")]
    running = subprocess.Popen(job, env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_file(str(out) + ".ready", process=running)
        switch(root, 2)                     # the deploy, in the middle of the run
        (tmp_path / "out.go").write_text("go\n")
        assert running.wait(timeout=60) == 0, running.stderr.read()
    finally:
        if running.poll() is None:
            running.kill()
        running.stderr.close()
    assert out.read_text() == "1 %s\n" % first
    os.unlink(str(out) + ".ready")
    again = subprocess.run(job, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert out.read_text().splitlines()[-1] == "2 %s" % second
    releases = [row[0] for row in dba.execute(
        "SELECT release FROM cronpolicy.script_run ORDER BY id")]
    assert releases == [str(first), str(second)]


def cronpolicy(script_env, *argv, timeout=60):
    return subprocess.run([sys.executable, "-m", "cronpolicy.tooling.cli"] + list(argv),
                          env=script_env, capture_output=True, text=True, timeout=timeout)


def test_two_services_at_once_and_a_script_with_no_needs_unaffected(scripts, dba, script_env):
    scripts.write("uses-xmlrpc", extra="needs = ('xmlrpc',)")
    scripts.write("uses-librarian", extra="needs = ('librarian', 'mail')")
    scripts.write("uses-nothing")
    for service in ("xmlrpc", "librarian"):
        result = cronpolicy(script_env, "deploy", "begin", "--service", service,
                            "--reason", "r4522")
        assert result.returncode == 0, result.stderr
    for name in ("uses-xmlrpc", "uses-librarian", "uses-nothing"):
        assert scripts.run(name).returncode == 0
    assert (scripts.main_calls("uses-xmlrpc"), scripts.main_calls("uses-librarian"),
            scripts.main_calls("uses-nothing")) == (0, 0, 1)
    skips = dict(dba.execute("SELECT name, skip_reason FROM cronpolicy.script_run"
                             " WHERE status = 'skipped'"))
    assert "deploy of service xmlrpc pending" in skips["uses-xmlrpc"]
    assert "deploy of service librarian pending" in skips["uses-librarian"]
    assert dict(dba.execute("SELECT name, needs FROM cronpolicy.script_run")) == {
        "uses-xmlrpc": "xmlrpc", "uses-librarian": "librarian,mail", "uses-nothing": None}
    cronpolicy(script_env, "deploy", "end", "--service", "xmlrpc")
    scripts.run("uses-xmlrpc")
    scripts.run("uses-librarian")
    assert (scripts.main_calls("uses-xmlrpc"), scripts.main_calls("uses-librarian")) == (1, 0)
    status = json.loads(cronpolicy(script_env, "status", "--json").stdout)
    assert [row["service"] for row in status["services"]] == ["librarian"]
    why = cronpolicy(script_env, "why", "uses-librarian").stdout
    assert "caused by INSERT of rollout #2" in why and "services=librarian" in why


def test_a_service_deploy_stops_a_running_script_that_needs_it_and_no_other(scripts, dba,
                                                                            script_env,
                                                                            tmp_path):
    safe = tmp_path / "safe"
    safe.write_text("")
    scripts.write("needs-it", extra="needs = ('xmlrpc',)", safe_file=safe)
    scripts.write("needs-other", extra="needs = ('mail',)", safe_file=safe)
    ready = {name: tmp_path / (name + ".ready") for name in ("needs-it", "needs-other")}
    # (Both open a fresh SQLite file at once: one used to exit 4, "database
    # is locked", switching it to WAL; test_store covers that race.)
    # Both sleep far longer than the test takes, however loaded the machine:
    # only a stop request ends them before the finally below kills them.
    # -v: their stop requests are logged (INFO) to standard error.
    running = {name: scripts.start(name, "-v", "--sleep", "600", "--ready-file",
                                   str(ready[name]))
               for name in ready}
    try:
        for name in ready:
            wait_for_file(str(ready[name]), process=running[name])
        begun = cronpolicy(script_env, "deploy", "begin", "--service", "xmlrpc")
        assert begun.returncode == 0, begun.stderr
        # Bounded, but by far more than a loaded machine needs to see it stop.
        _, err = running["needs-it"].communicate(timeout=120)
        assert running["needs-it"].returncode == exitcodes.INTERRUPTED, err
        assert "stop requested: deploy of service xmlrpc pending" in err, err
        assert running["needs-other"].poll() is None, running["needs-other"].communicate()
        waited = cronpolicy(script_env, "deploy", "wait", "--service", "xmlrpc", "--timeout",
                            "5s", "--json")
        assert waited.returncode == 0 and json.loads(waited.stdout)["quiet"] is True
        # A rollout of xmlrpc is not in needs-other's way: quiet for it too.
        everything = cronpolicy(script_env, "deploy", "wait", "--timeout", "1s", "--json")
        assert everything.returncode == 0, everything.stdout
        assert json.loads(everything.stdout)["blockers"] == []
        # ...while a wait for every run still finds it running.
        assert running["needs-other"].poll() is None
        # That needs-other still runs proves nothing unless it has read the
        # policy since xmlrpc's deploy began: a deploy of a service it does
        # need, begun after, stops it, and the first stop it was ever asked
        # for is that one, not xmlrpc's (its reads see both from then on).
        begun = cronpolicy(script_env, "deploy", "begin", "--service", "mail")
        assert begun.returncode == 0, begun.stderr
        _, err = running["needs-other"].communicate(timeout=120)
        assert running["needs-other"].returncode == exitcodes.INTERRUPTED, err
        stops = [line for line in err.splitlines() if "stop requested" in line]
        assert stops and "deploy of service mail pending" in stops[0], err
        assert not [line for line in stops if "xmlrpc" in line], err
    finally:
        for process in running.values():
            process.kill()
            process.communicate()


def test_a_window_of_a_service_covers_only_the_scripts_that_need_it(scripts, dba, script_env):
    scripts.write("uses-xmlrpc", extra="needs = ('xmlrpc',)")
    scripts.write("uses-nothing")
    added = cronpolicy(script_env, "window", "add", "--start", "now", "--duration", "1h",
                       "--service", "xmlrpc", "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["service"] == "xmlrpc"
    scripts.run("uses-xmlrpc")
    scripts.run("uses-nothing")
    assert (scripts.main_calls("uses-xmlrpc"), scripts.main_calls("uses-nothing")) == (0, 1)
    [(reason,)] = dba.execute("SELECT skip_reason FROM cronpolicy.script_run"
                              " WHERE status = 'skipped'")
    assert "rollout window #" in reason and "of service xmlrpc" in reason


def test_a_dba_says_what_a_script_needs_with_plain_sql(scripts, dba, script_env):
    scripts.write("report")                 # declares nothing
    dba.execute("INSERT INTO cronpolicy.script_policy (name, needs) VALUES ('report', 'xmlrpc')")
    dba.execute("INSERT INTO cronpolicy.service_deploy (service, reason) VALUES ('xmlrpc', 'r')")
    scripts.run("report")
    assert scripts.main_calls("report") == 0
    assert dba.execute("SELECT needs, decision FROM cronpolicy.script_run") == [
        ("xmlrpc", "service-pending")]


def test_deploy_wait_for_old_releases_only(scripts, dba, script_env, tmp_path):
    """After current was switched: wait for the runs of the release before,
    not for new runs, which start on the new one."""
    root = tmp_path / "app"
    (root / "releases" / "1").mkdir(parents=True)
    (root / "releases" / "2").mkdir()
    switch(root, 1)
    old_out, new_out = tmp_path / "old.ready", tmp_path / "new.ready"
    command = [sys.executable, "-m", "cronpolicy.tooling.cli", "run", "{name}", "--pin",
               str(root / "current"), "--", sys.executable, "-c",
               "import os, time; open(os.environ['READY'], 'w').write(str(os.getpid()));"
               " print(os.getcwd()); time.sleep(30)"]

    def start(name, ready):
        argv = [word.replace("{name}", name) for word in command]
        return subprocess.Popen(argv, env=dict(script_env, READY=str(ready)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def kill(process, ready):
        """kill -9 of the wrapper, then of its command (which holds the
        pipes: reading them to the end waited out its 30 s)."""
        process.kill()
        if ready.exists():
            try:
                os.kill(int(ready.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        process.communicate(timeout=60)
    old = start("publisher-a", old_out)
    new = None
    try:
        wait_for_file(str(old_out), process=old)
        switch(root, 2)
        new = start("publisher-b", new_out)
        wait_for_file(str(new_out), process=new)
        releases = dict(dba.execute("SELECT name, release FROM cronpolicy.script_run"))
        assert releases == {"publisher-a": str(root / "releases" / "1"),
                            "publisher-b": str(root / "releases" / "2")}
        # (A wait looks once before it may time out: 0.1s finds what 1s did.)
        waited = cronpolicy(script_env, "deploy", "wait", "--old-releases",
                            str(root / "current"), "--timeout", "0.1s", "--json")
        assert waited.returncode == exitcodes.WAIT_TIMEOUT
        result = json.loads(waited.stdout)
        assert [run["name"] for run in result["blockers"]] == ["publisher-a"]
        assert result["release_not"] == str(root / "releases" / "2")
        kill(old, old_out)
        dba.execute("UPDATE cronpolicy.script_run SET status = 'abandoned', finished_at = {}"
                    " WHERE name = 'publisher-a'".format(dba.now_plus(0)))
        quiet = cronpolicy(script_env, "deploy", "wait", "--release-not",
                           str(root / "releases" / "2"), "--timeout", "5s")
        assert quiet.returncode == 0 and "of a release other than" in quiet.stdout
    finally:
        for process, ready in ((old, old_out), (new, new_out)):
            if process is not None and process.returncode is None:
                kill(process, ready)


def test_pin_runs_the_command_from_the_release_resolved_at_start(script_env, dba, tmp_path):
    root = tmp_path / "app"
    (root / "releases" / "7" / "bin").mkdir(parents=True)
    script = root / "releases" / "7" / "bin" / "where"
    script.write_text("#!/bin/sh\necho \"$0\"\n")
    script.chmod(0o755)
    switch(root, 7)
    result = cronpolicy(script_env, "run", "where", "--pin", str(root / "current"), "--",
                        str(root / "current" / "bin" / "where"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(script)
    assert dba.execute("SELECT release FROM cronpolicy.script_run") == [
        (str(root / "releases" / "7"),)]
    missing = cronpolicy(script_env, "run", "where", "--pin", str(root / "nowhere"), "--",
                         "true")
    assert missing.returncode == 2 and "--pin" in missing.stderr


#: A script whose module-level code takes its time (until the test has
#: switched current), and which imports a module late, in main().
SLOW_IMPORTS_SCRIPT = '''\
import os, sys, time
HERE = os.path.dirname(os.path.abspath(__file__))
%s
OUT = os.environ["JOB_OUT"]
open(OUT + ".importing", "w").write("x")
deadline = time.monotonic() + 60
while not os.path.exists(OUT + ".switched") and time.monotonic() < deadline:
    time.sleep(0.02)
from cronpolicy import CronScript

class Job(CronScript):
    name = "slow-imports"

    def main(self):
        with open(OUT + ".ready", "w") as ready:
            ready.write("ready\\n")
        deadline = time.monotonic() + 60
        while not os.path.exists(OUT + ".go") and time.monotonic() < deadline:
            time.sleep(0.02)
        import late_module
        with open(OUT, "a") as handle:
            handle.write("%%s %%s\\n" %% (late_module.VERSION, self.release))

Job().run()
'''


def _slow_start(script_env, dba, tmp_path, path_setup, switched):
    """Start root/current/cron/job.py (SLOW_IMPORTS_SCRIPT with ``path_setup``
    first), switch current to release 2 while its module-level code runs if
    ``switched``, and wait for its run to be recorded: (process, out, root)."""
    root = tmp_path / "app"
    for number in (1, 2):
        release(root, number)
        (root / "releases" / str(number) / "cron" / "job.py").write_text(
            SLOW_IMPORTS_SCRIPT % path_setup)
    switch(root, 1)
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, str(root / "current" / "cron" / "job.py")],
                               env=dict(script_env, JOB_OUT=str(out)),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_file(str(out) + ".importing", process=process)
    if switched:
        switch(root, 2)
    (tmp_path / "out.switched").write_text("x")
    wait_for_file(str(out) + ".ready", process=process)
    return process, out, root


def test_a_switch_while_the_script_imports_keeps_deploy_wait_waiting(
        script_env, dba, tmp_path):
    """Issue 26.3: its module-level imports took their time while current
    was switched: it ran the old release's code, recorded the new release,
    and `deploy wait --old-releases` said quiet.  It records the release it
    started in, and imports from it to the end."""
    process, out, root = _slow_start(
        script_env, dba, tmp_path,
        'sys.path.append(os.path.join(HERE, "..", "lib"))', switched=True)
    try:
        assert dba.execute("SELECT status, release FROM cronpolicy.script_run") == [
            ("running", str(root / "releases" / "1"))]
        waited = cronpolicy(script_env, "deploy", "wait", "--old-releases",
                            str(root / "current"), "--timeout", "0.1s", "--json")
        assert waited.returncode == exitcodes.WAIT_TIMEOUT, waited.stdout + waited.stderr
        assert [run["name"] for run in json.loads(waited.stdout)["blockers"]] == [
            "slow-imports"]
    finally:
        (tmp_path / "out.go").write_text("x")
        _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert out.read_text() == "1 %s\n" % (root / "releases" / "1")


def test_a_run_whose_release_at_start_cannot_be_known_is_waited_for(
        script_env, dba, tmp_path):
    """It replaced the directory CPython put first in sys.path: nothing
    says what it started in, so it records no release, and deploy wait
    --old-releases waits for it (it may be old)."""
    process, out, root = _slow_start(
        script_env, dba, tmp_path, 'sys.path[0] = os.path.join(HERE, "..", "lib")',
        switched=False)
    try:
        assert dba.execute("SELECT status, release FROM cronpolicy.script_run") == [
            ("running", None)]
        waited = cronpolicy(script_env, "deploy", "wait", "--old-releases",
                            str(root / "current"), "--timeout", "0.1s")
        assert waited.returncode == exitcodes.WAIT_TIMEOUT, waited.stdout + waited.stderr
    finally:
        (tmp_path / "out.go").write_text("x")
        _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err


def test_pin_given_a_relative_path_runs_the_command_from_the_release_too(
        script_env, dba, tmp_path):
    """Issue 26.3: --pin current ran current/bin/where as it stood."""
    root = tmp_path / "app"
    (root / "releases" / "7" / "bin").mkdir(parents=True)
    script = root / "releases" / "7" / "bin" / "where"
    script.write_text("#!/bin/sh\necho \"$0\"\n")
    script.chmod(0o755)
    switch(root, 7)
    result = subprocess.run(
        [sys.executable, "-m", "cronpolicy.tooling.cli", "run", "where", "--pin", "current",
         "--", "current/bin/where"], cwd=str(root), env=script_env, capture_output=True,
        text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(script)
    assert dba.execute("SELECT release FROM cronpolicy.script_run") == [
        (str(root / "releases" / "7"),)]


def test_pin_given_a_relative_path_rewrites_every_relative_spelling(tmp_path, monkeypatch):
    """--pin current left ./current/bin/where as it stood (the '/' before
    'current' hid it), so the command ran from whatever current named when
    it was executed while the run recorded the release pinned; --pin
    ./current and a path under a parent spelled with ./ alike."""
    from cronpolicy.release import pinned_command
    (tmp_path / "releases" / "7").mkdir(parents=True)
    os.symlink("releases/7", str(tmp_path / "current"))
    monkeypatch.chdir(tmp_path)
    release = str(tmp_path / "releases" / "7")
    for link in ("current", "./current", "current/"):
        for word in ("./current/bin/where", "current/bin/where", "./current",
                     "cd ./current && ./bin/where", "--dir=./current/bin"):
            expected = word.replace("./current", release).replace("current", release, 1) \
                if "./current" not in word else word.replace("./current", release)
            assert pinned_command(link, [word]) == (release, [expected]), (link, word)
    assert pinned_command("current", ["./currently", "x/current/y", "../current"]) == (
        release, ["./currently", "x/current/y", "../current"])


def test_needs_that_are_not_service_names_are_refused(scripts, dba, script_env):
    scripts.write("bad", extra="needs = 'xmlrpc'")
    result = scripts.run("bad")
    assert result.returncode == 2 and "tuple of service names" in result.stderr
    bad = cronpolicy(script_env, "run", "job", "--needs", "xml rpc", "--", "true")
    assert bad.returncode == 2 and "not a service name" in bad.stderr
    bad = cronpolicy(script_env, "deploy", "begin", "--service", "x;y")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert dba.execute("SELECT count(*) FROM cronpolicy.script_run") == [(0,)]


def test_deploy_wait_for_a_service_goes_by_the_needs_in_force_now(scripts, dba, script_env,
                                                                   tmp_path):
    """Issue 26.4: a run that declared no needs, of a script a policy row
    now says needs xmlrpc, is waited for by `deploy wait --service xmlrpc`;
    one that declared xmlrpc, of a script a row now says needs nothing, is
    not (the policy row wins, as everywhere else)."""
    scripts.write("declared-none")
    scripts.write("declared-xmlrpc", extra="needs = ('xmlrpc',)")
    ready = {name: tmp_path / (name + ".ready") for name in ("declared-none", "declared-xmlrpc")}
    running = {name: scripts.start(name, "--sleep", "600", "--ready-file", str(ready[name]))
               for name in ready}
    try:
        for name in ready:
            wait_for_file(str(ready[name]), process=running[name])
        assert dict(dba.execute("SELECT name, needs FROM cronpolicy.script_run")) == {
            "declared-none": None, "declared-xmlrpc": "xmlrpc"}
        dba.execute("INSERT INTO cronpolicy.script_policy (name, needs) VALUES"
                    " ('declared-none', 'xmlrpc'), ('declared-xmlrpc', '')")
        waited = cronpolicy(script_env, "deploy", "wait", "--service", "xmlrpc", "--timeout",
                            "1s", "--json")
        assert waited.returncode == exitcodes.WAIT_TIMEOUT, waited.stdout + waited.stderr
        assert [run["name"] for run in json.loads(waited.stdout)["blockers"]] == [
            "declared-none"]
    finally:
        for process in running.values():
            process.kill()
            process.communicate(timeout=30)
