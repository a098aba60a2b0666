"""The manual's examples (README.txt and docs/*.txt), run verbatim; and the
manual's shape: README short, naming every docs/ file, every example of
every file accounted for (run by a test, or said why not)."""

import ast
import contextlib
import glob
import os
import re
import subprocess
import sys
import textwrap

import pytest

from cronpolicy import exitcodes

# The top of a checkout: beside the source tree, or the current directory
# when the suite runs from an installed copy (README's test command, from
# the checkout).
TOPS = (os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, os.pardir), os.curdir)
TOP = next((os.path.abspath(top) for top in TOPS
            if os.path.exists(os.path.join(top, "README.txt"))
            and os.path.isdir(os.path.join(top, "docs"))), None)
if TOP is None:
    # An installed copy run elsewhere (the wheel ships neither README.txt nor docs/).
    pytest.skip("README.txt and docs/ not found: run the tests from the top of a checkout",
                allow_module_level=True)


def manual_files():
    """README.txt, then docs/*.txt: the paths, relative to the top."""
    return ["README.txt"] + sorted(os.path.relpath(path, TOP) for path in
                                   glob.glob(os.path.join(TOP, "docs", "*.txt")))


def manual_lines(name):
    with open(os.path.join(TOP, name), encoding="utf-8") as handle:
        return handle.read().splitlines()


def _the_one(what, matches):
    """The one (file, index) of ``matches``: a marker found twice could
    send a test to the wrong example."""
    if len(matches) != 1:
        pytest.fail("%s: found %d times in README.txt and docs/*.txt, not once: %s"
                    % (what, len(matches), matches), pytrace=False)
    return matches[0]


def example_after(marker):
    """The indented block that follows the paragraph containing ``marker``
    (in whichever of the manual's files holds it)."""
    name, start = _the_one(repr(marker), [
        (name, index) for name in manual_files()
        for index, line in enumerate(manual_lines(name)) if marker in line])
    lines = manual_lines(name)
    while lines[start].strip():                     # to the end of the paragraph
        start += 1
    block = []
    for line in lines[start + 1:]:
        if line.strip() and not line.startswith("    "):
            break
        block.append(line)
    return textwrap.dedent("\n".join(block)).strip() + "\n"


def manual_text():
    """Every file of the manual, its lines joined by single spaces."""
    return " ".join(" ".join("\n".join(manual_lines(name)).split())
                    for name in manual_files())


@pytest.mark.integration
def test_the_quick_start_script_runs_against_the_in_memory_store(tmp_path):
    quick_start = example_after("Quick start for script authors")
    assert "class PublishDistro(CronScript)" in quick_start
    (tmp_path / "publish_distro.py").write_text(quick_start)
    testing = example_after("Testing a script without a database")
    assert "MemoryDatabase" in testing
    (tmp_path / "check_it.py").write_text("from publish_distro import PublishDistro\n" + testing)
    env = dict(os.environ, CRONPOLICY_CONFIG=str(tmp_path / "none.conf"),
               CRONPOLICY_LOCK_DIR=str(tmp_path / "locks"),
               CRONPOLICY_STATE_DIR=str(tmp_path / "state"), CRONPOLICY_HOST="web1")
    (tmp_path / "none.conf").write_text("[cronpolicy]\n")
    env.pop("CRONPOLICY_DSN", None)
    result = subprocess.run([sys.executable, "check_it.py"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_config_file_example_loads_as_written(tmp_path):
    from cronpolicy.config import Settings
    example = example_after("Passwords are masked (***) in every log")
    assert example.startswith("[cronpolicy]") and "[script:heartbeat]" in example
    path = tmp_path / "cronpolicy.conf"
    path.write_text(example)
    settings = Settings.load(environ={"CRONPOLICY_CONFIG": str(path)})
    assert (settings.dsn, settings.host, settings.connect_timeout, settings.lease_ttl,
            settings.watch, settings.tcp_user_timeout) == (
        "postgresql://cron@db.example.com/cronpolicy", "web3", 5.0, 30.0, "listen", 10.0)
    assert settings.on_database_error_for("heartbeat") == "run"


def _is_heading(lines, index):
    return bool(lines[index].strip()) and index + 1 < len(lines) and bool(
        re.match(r"^(-{3,}|={3,})$", lines[index + 1]))


def section(title):
    """The lines of the section ``title`` (to the next underlined heading
    or the end of its file), in whichever of the manual's files holds it."""
    name, start = _the_one("section %r" % title, [
        (name, index) for name in manual_files()
        for index, line in enumerate(manual_lines(name))
        if line == title and _is_heading(manual_lines(name), index)])
    lines = manual_lines(name)
    end = next((index for index in range(start + 2, len(lines)) if _is_heading(lines, index)),
               len(lines))
    return lines[start + 2:end]


def indented_blocks(lines):
    """Each run of indented lines (blank lines inside a run included)."""
    blocks, current = [], []
    for line in lines + [""]:
        if line.startswith("    "):
            current.append(line)
        elif line.strip() and current:
            blocks.append(textwrap.dedent("\n".join(current)).strip())
            current = []
    if current:
        blocks.append(textwrap.dedent("\n".join(current)).strip())
    return blocks


@pytest.mark.parametrize("before", ["nothing", "every row already there"])
def test_every_sql_recipe_runs_as_written(pg_dsn, pg_roles, before):
    """Each recipe of "SQL recipes for DBAs", verbatim, on an emptied
    database (recipes are independent: a DBA types one at a time), and on
    one where the rows it names exist already (after `cronpolicy enable`,
    say): the recipes' INSERTs once failed there with a duplicate key.
    The recipes name roles.sql's group roles (pg_roles puts them there: run
    before any other test that did, the test failed)."""
    import psycopg2
    recipes = indented_blocks(section("SQL recipes for DBAs (PostgreSQL)"))
    assert len(recipes) > 12 and any("script_owner" in recipe for recipe in recipes)
    assert any("host_login" in recipe for recipe in recipes)
    connection = psycopg2.connect(pg_dsn)
    connection.autocommit = True
    try:
        with readme_roles(create=True):     # the roles the recipes name must exist
            _run_recipes(connection, recipes, before)
    finally:
        connection.close()


def _run_recipes(connection, recipes, before):
    import psycopg2
    for recipe in recipes:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM cronpolicy.script_policy;"
                           " DELETE FROM cronpolicy.rollout_window;"
                           " DELETE FROM cronpolicy.script_owner;"
                           " DELETE FROM cronpolicy.host_login;"
                           " DELETE FROM cronpolicy.script_run")
            if before != "nothing":
                cursor.execute("INSERT INTO cronpolicy.script_policy (name, host)"
                               " SELECT DISTINCT name, host FROM (VALUES"
                               " ('publish-distro', '*'), ('publish-distro', 'ppa3'),"
                               " ('publish-*', '*'), ('sync-mirror', '*'), ('build-*', '*'),"
                               " ('heartbeat', '*')) AS t (name, host)")
                cursor.execute("INSERT INTO cronpolicy.host_login (host, db_role)"
                               " VALUES ('web1', 'cron_web1'), ('ppa*', 'cron_publishers')")
            try:
                cursor.execute(recipe)
            except psycopg2.Error as error:
                pytest.fail("README recipe failed: %s\n%s" % (error, recipe))


def test_the_command_list_names_every_option_each_command_has():
    """README's list under "The cronpolicy command" against the real parser
    (--dsn, --json and --help are said once, above the list)."""
    import argparse
    import re
    from cronpolicy.tooling.cli import build_parser

    def subcommand(parser, words):
        for word in words:
            action = next((action for action in parser._actions
                           if isinstance(action, argparse._SubParsersAction)), None)
            if action is None or word not in action.choices:
                break
            parser = action.choices[word]
        return parser

    lines = [line.strip() for line in section("The cronpolicy command")
             if line.startswith("    cronpolicy ") and "--dsn postgresql" not in line]
    assert len(lines) > 20
    parser, checked = build_parser(), 0
    for line in lines:
        words = [word for word in line.split()[1:] if re.match(r"^[a-z][a-z-]*$", word)]
        if words[0] == "run":
            continue            # its own parser: `cronpolicy run --help`
        command = subcommand(parser, words[:2])
        described = set(re.findall(r"(--[a-z-]+)", line.split("   ")[0]))
        actual = {option for action in command._actions for option in action.option_strings
                  if option.startswith("--")} - {"--dsn", "--json", "--help"}
        assert described == actual, (line, sorted(actual))
        checked += 1
    assert checked > 20


def _run_recipe(recipe, script_env, tmp_path, rewrite=()):
    """A README recipe, verbatim as a bash script, but for the database it
    exports (this test's) and the top folders in ``rewrite`` (moved under
    this test's directory); returns the finished process."""
    for folder in rewrite:
        recipe = re.sub(r"(?<![\w/])/%s/" % folder, "%s/%s/" % (tmp_path, folder), recipe)
    lines = recipe.splitlines()
    assert lines[0].startswith("export CRONPOLICY_DSN=")
    script = "set -e\nexport CRONPOLICY_DSN=%s\n%s\n" % (
        script_env["CRONPOLICY_DSN"], "\n".join(lines[1:]))
    env = dict(script_env, PATH=os.path.dirname(sys.executable) + os.pathsep
               + os.environ.get("PATH", ""))
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result


def _executable(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o755)


def test_the_step_by_step_rollout_recipe_runs_as_written(script_env, tmp_path, dba):
    """README's step-by-step recipe: begin, wait, end, by the id begin printed."""
    recipe = indented_blocks(section(
        "Releases with database patches: the whole fleet, at the best slot"))[1]
    assert "deploy begin" in recipe and "deploy end" in recipe
    _run_recipe(recipe, script_env, tmp_path)
    assert dba.execute("SELECT id, kind, reason, ended_at IS NOT NULL"
                       " FROM cronpolicy.rollout") == [(1, "full", "release 4521", True)]


def test_the_rollouts_examples_run_as_written(script_env, tmp_path, dba):
    """README's first example and the block of "Rollouts", verbatim, where
    eleven rollouts came before (so the one begun is #12, as the block says),
    with /srv moved under this test's directory."""
    first = example_after("recorded reason.  Rollouts stop being a mass crontab")
    [block] = [block for block in indented_blocks(section("Rollouts"))
               if block.startswith("cronpolicy ")]
    assert first.startswith("cronpolicy deploy run") and "deploy end 12" in block
    for index in range(11):
        dba.execute("INSERT INTO cronpolicy.rollout (reason, began_at, ended_at)"
                    " VALUES ('before', {0}, {0})".format(dba.now_plus(-100 + index)))
    upgraded = tmp_path / "upgraded"
    _executable(str(tmp_path / "srv" / "deploy" / "upgrade.sh"),
                "#!/bin/sh\necho upgraded >> %s\n" % upgraded)
    export = "export CRONPOLICY_DSN=%s\n" % script_env["CRONPOLICY_DSN"]
    result = _run_recipe(export + block + "\n" + first, script_env, tmp_path, rewrite=("srv",))
    assert upgraded.read_text() == "upgraded\n" * 2
    assert "rollout #12 began" in result.stdout
    assert dba.execute("SELECT id, ended_at IS NOT NULL FROM cronpolicy.rollout WHERE id > 11"
                       " ORDER BY id") == [(12, True), (13, True), (14, True)]


@pytest.mark.integration
def test_the_crontab_recipes_run(tmp_path):
    """The one-edit wrap and unwrap, the crontab name comment and the
    whole-host recipe, with /etc and /tmp moved under this test's directory
    and a stand-in `crontab`."""
    one_edit = example_after("Moving a whole crontab behind cronpolicy is one edit")
    assert "crontab wrap" in one_edit and "crontab unwrap" in one_edit
    comment_example = example_after("To choose a name yourself")
    from cronpolicy.tooling.crontab import wrap
    assert "cronpolicy run publish-distro --from-crontab" in wrap(comment_example)
    recipe = example_after("Unique on a host.")
    assert "crontab names" in recipe and "--in-place" in recipe
    root = tmp_path / "root"
    (root / "etc" / "cron.d").mkdir(parents=True)
    (root / "tmp").mkdir()
    (root / "etc" / "crontab").write_text(
        "17 * * * * root cd / && run-parts --report /etc/cron.hourly\n")
    (root / "etc" / "cron.d" / "php").write_text(
        "09,39 * * * * root [ -x /usr/lib/php/sessionclean ] && /usr/lib/php/sessionclean\n")
    installed = tmp_path / "installed"
    installed.write_text("0 * * * * /srv/bin/sessionclean --user\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "crontab").write_text(
        '#!/bin/sh\nif [ "$1" = -l ]; then cat "%s"; else cp "$1" "%s"; fi\n'
        % (installed, installed))
    os.chmod(bin_dir / "crontab", 0o755)
    (bin_dir / "cronpolicy").write_text('#!/bin/sh\nexec "%s" -m cronpolicy "$@"\n'
                                        % sys.executable)
    os.chmod(bin_dir / "cronpolicy", 0o755)
    (tmp_path / "none.conf").write_text("[cronpolicy]\n")
    env = dict(os.environ, PATH="%s:%s" % (bin_dir, os.environ["PATH"]),
               CRONPOLICY_CONFIG=str(tmp_path / "none.conf"))
    original = installed.read_text()
    result = subprocess.run(["/bin/sh", "-ec", re.sub(r"(?<![\w/])/tmp/", str(root) + "/tmp/",
                                                      one_edit)],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "run sessionclean --from-crontab" in installed.read_text()     # wrapped, installed
    assert result.stdout == original                                      # unwrap gives it back
    installed.write_text(original)
    script = re.sub(r"(?<![\w/])/(etc|tmp)/", str(root) + r"/\1/", recipe)
    result = subprocess.run(["/bin/sh", "-ec", script], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "sessionclean-user" in result.stdout          # names, before wrapping
    assert "run sessionclean-user --from-crontab" in installed.read_text()
    assert "run sessionclean --from-crontab" in (root / "etc" / "cron.d" / "php").read_text()
    assert "run run-parts --from-crontab" in (root / "etc" / "crontab").read_text()


def test_the_database_patch_recipe_runs_as_written(script_env, tmp_path, dba):
    """README's recipe for a release with database patches: the slot from
    the schedules, a window, the plan, and a full rollout around the
    upgrade, verbatim, with /etc and /srv moved under this test's directory."""
    recipe = indented_blocks(section(
        "Releases with database patches: the whole fleet, at the best slot"))[0]
    assert "deploy slot" in recipe and "schedule import" in recipe and "deploy run" in recipe
    (tmp_path / "etc" / "cron.d").mkdir(parents=True)
    (tmp_path / "etc" / "crontab").write_text(
        "17 * * * * root cd / && run-parts /etc/cron.hourly\n")
    (tmp_path / "etc" / "cron.d" / "publisher").write_text(
        "0 * * * * archive /srv/bin/publish-distro\n")
    upgraded = tmp_path / "upgraded"
    _executable(str(tmp_path / "srv" / "deploy" / "upgrade-database.sh"),
                "#!/bin/sh\necho upgrading > %s\n" % upgraded)
    result = _run_recipe(recipe, script_env, tmp_path, rewrite=("etc", "srv"))
    assert "publish-distro@testhost" in result.stdout and "release 4522" in result.stdout
    assert "a rollout at" in result.stdout and upgraded.read_text() == "upgrading\n"
    assert dba.execute("SELECT kind, reason, expected_duration IS NOT NULL,"
                       " quiet_at IS NOT NULL, ended_at IS NOT NULL FROM cronpolicy.rollout"
                       ) == [("full", "release 4522", True, True, True)]


def test_the_code_only_release_recipe_runs_as_written(script_env, tmp_path, dba):
    """README's code-only release: the link switched, the service restarted
    under a rollout of it, then a wait for the old release; /srv moved
    under this test's directory."""
    recipe = indented_blocks(section(
        "Code-only releases: one service stops, the rest runs on"))[-1]
    app = tmp_path / "srv" / "app"
    (app / "releases" / "4521").mkdir(parents=True)
    restarted = tmp_path / "restarted"
    _executable(str(app / "releases" / "4522" / "bin" / "restart-xmlrpc"),
                "#!/bin/sh\necho restarted > %s\n" % restarted)
    os.symlink(str(app / "releases" / "4521"), str(app / "current"))
    result = _run_recipe(recipe, script_env, tmp_path, rewrite=("srv",))
    assert restarted.read_text() == "restarted\n"
    assert "rollout #1 began: the scripts that need xmlrpc stop starting" in result.stdout
    assert os.path.realpath(str(app / "current")) == str(app / "releases" / "4522")
    assert dba.execute("SELECT kind, services, ended_at IS NOT NULL FROM cronpolicy.rollout"
                       ) == [("services", "xmlrpc", True)]


def test_the_pin_example_runs_as_written(script_env, tmp_path):
    """The manual's `cronpolicy run --pin LINK NAME -- ...` (docs/releases.txt),
    verbatim but for /srv moved under this test's directory and NAME given
    one (issue 27.6: it was refused, options before NAME being taken for a
    missing NAME)."""
    [example] = re.findall(r"`(cronpolicy run --pin [^`]*)`", manual_text())
    srv = tmp_path / "srv"
    (srv / "app" / "releases" / "4521" / "bin").mkdir(parents=True)
    job = srv / "app" / "releases" / "4521" / "bin" / "job"
    job.write_text("#!/bin/sh\necho \"$0\"\n")
    job.chmod(0o755)
    os.symlink(str(srv / "app" / "releases" / "4521"), str(srv / "app" / "current"))
    command = re.sub(r"(?<![\w/])/srv/", str(srv) + "/", example).replace(" NAME ", " job ")
    env = dict(script_env, PATH=os.path.dirname(sys.executable) + os.pathsep
               + os.environ.get("PATH", ""))
    result = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(job)


def crontab_command(line):
    """The command of a crontab line: what cron hands to /bin/sh, past the
    five time fields (or an @keyword) and the blanks after them."""
    match = re.match(r"^(?:@\w+|(?:\S+[ \t]+){4}\S+)[ \t]+(.*)$", line)
    assert match, "not a crontab line: %r" % line
    return match.group(1)


def _shell(command, env, tmp_path, rewrite=()):
    """``command`` through /bin/sh as cron runs it, but for the top folders
    in ``rewrite`` (moved under this test's directory), with this Python's
    bin first on PATH (`cronpolicy`)."""
    for folder in rewrite:
        command = re.sub(r"(?<![\w/])/%s/" % folder, "%s/%s/" % (tmp_path, folder), command)
    env = dict(env, PATH=os.path.dirname(sys.executable) + os.pathsep
               + os.environ.get("PATH", ""))
    return subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True,
                          text=True, timeout=120)


def _quick_start_line(tmp_path, script_env):
    """README's crontab line for the quick start's script: the script at
    /srv/app/cron/publish-distro.py, run by a venv's python; its log file."""
    app = tmp_path / "srv" / "app"
    (app / "cron").mkdir(parents=True)
    _executable(str(app / ".venv" / "bin" / "python"), '#!/bin/sh\nexec "%s" "$@"\n'
                % sys.executable)           # this test's Python, as the venv's
    (app / "cron" / "publish-distro.py").write_text(example_after("Quick start for script authors"))
    (tmp_path / "var" / "log" / "app").mkdir(parents=True)

    def check(run, dba):
        [result] = run()
        assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), result
        log = (tmp_path / "var" / "log" / "app" / "publish-distro.log").read_text()
        assert "publishing ubuntu" in log, log
        assert [run["status"] for run in dba.runs("publish-distro")] == ["succeeded"]
    return ("srv", "var"), check


def _catch_up_line(tmp_path, script_env):
    def check(run, dba):                    # nothing to catch up: says nothing (cron mails it)
        [result] = run()
        assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), result
    return (), check


def _metrics_lines(tmp_path, script_env):
    """Each host's own series, and one host's fleet-wide ones, through the
    textfile collector's directory."""
    collector = tmp_path / "var" / "lib" / "prometheus" / "node-exporter"
    collector.mkdir(parents=True)

    def check(run, dba):
        results = run()
        assert [(result.returncode, result.stdout, result.stderr) for result in results] == [
            (0, "", "")] * 2, results
        assert "cronpolicy_" in (collector / "cronpolicy.prom").read_text()
        assert "cronpolicy_deploy_pending" in (collector / "cronpolicy-fleet.prom").read_text()
    return ("var",), check


def _check_line(tmp_path, script_env):
    """The gated shell line: the command runs when the policy says run, and
    not while a rollout is open."""
    synced = tmp_path / "synced"
    _executable(str(tmp_path / "srv" / "bin" / "sync-mirror"),
                "#!/bin/sh\necho synced >> %s\n" % synced)

    def check(run, dba):
        [result] = run()
        assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), result
        assert synced.read_text() == "synced\n"
        dba.execute("INSERT INTO cronpolicy.rollout (reason) VALUES ('release 4521')")
        [result] = run()
        assert (result.returncode, result.stdout) == (exitcodes.WOULD_SKIP, ""), result
        assert synced.read_text() == "synced\n"
    return ("srv",), check


#: The manual's crontab lines, each run as cron would run it (its command
#: through /bin/sh), in an environment each sets up: (the marker before
#: it, what it needs).
CRONTAB_LINES = {
    "Put it in crontab unchanged": _quick_start_line,
    "Add the line to the crontab of each user whose scripts catch up": _catch_up_line,
    "node_exporter's textfile collector": _metrics_lines,
    "now+2h, now-1h.  `check` can gate a plain shell crontab line": _check_line,
}


@pytest.mark.parametrize("marker", sorted(CRONTAB_LINES))
def test_the_crontab_lines_run_as_written(marker, script_env, tmp_path, dba):
    """Each crontab line of the manual (CRONTAB_LINES), verbatim: its
    command through /bin/sh, as cron runs it, with /srv and /var moved under
    this test's directory where the line names them."""
    lines = example_after(marker).splitlines()
    rewrite, check = CRONTAB_LINES[marker](tmp_path, script_env)
    commands = [crontab_command(line) for line in lines]
    check(lambda: [_shell(command, script_env, tmp_path, rewrite) for command in commands], dba)


#: README's section with the simulator's headline figures.
HEADLINE = "What it buys you: a fleet simulated, strategy against strategy"


@pytest.mark.integration
def test_the_simulate_examples_run_and_the_quoted_figures_are_what_they_print(tmp_path):
    """The `cronpolicy simulate` examples of docs/simulation.txt, verbatim,
    from a directory where benchmarks/ is the checkout's; the headline
    README quotes (the conditions line and each kind's figures) is what the
    first prints (the seeds fix it)."""
    [commands] = [block.splitlines() for block in
                  indented_blocks(section("The fleet simulator: cronpolicy simulate"))
                  if block.startswith("cronpolicy simulate ")]
    [quoted] = [block for block in indented_blocks(section(HEADLINE))
                if block.startswith("154 job instances")]
    assert HEADLINE in manual_lines("README.txt")             # README quotes the headline
    assert len(commands) == 2 and all(line.startswith("cronpolicy simulate ")
                                      for line in commands)
    os.symlink(os.path.join(TOP, "benchmarks"), tmp_path / "benchmarks")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep
               + os.environ.get("PATH", ""))
    printed = []
    for command in commands:
        result = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr
        printed.append(result.stdout.splitlines())
    assert (tmp_path / "stalls.svg").stat().st_size > 10000
    headline = [line for line in printed[0] if line.startswith(("full rollouts, ",
                                                                "code-only rollouts, "))]
    assert len(headline) == 10
    assert quoted.splitlines() == [printed[0][0]] + headline
    assert printed[1][-5] == "full rollouts, stall p95:                     " \
                             "a 0s, a0 0s, b 10m16s, b0 10m16s, c 0s, d 20m"


#: The cluster-wide roles README's set-up and recipes name.
README_ROLES = ("cron_web1", "cron_web2", "cron_web1b", "cron_publishers", "release_bot", "alice",
                "dashboard", "cron_relay")
#: An advisory lock (in the server's own database) held while they exist:
#: roles belong to the whole server, so test runs alongside take turns.
README_ROLES_LOCK = 0x52454144      # 'READ'


@contextlib.contextmanager
def readme_roles(create=False):
    """README's roles, absent (or with ``create``, present) for one test at
    a time, and dropped after it."""
    from .conftest import admin_connection, wait_for
    with admin_connection() as connection, connection.cursor() as cursor:
        def locked():
            cursor.execute("SELECT pg_try_advisory_lock(%s)", (README_ROLES_LOCK,))
            return cursor.fetchone()[0]
        wait_for(locked, timeout=300, what="README's roles free of another test run")

        def drop():
            for role in reversed(README_ROLES):
                cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                               " WHERE usename = %s", (role,))
                cursor.execute('DROP ROLE IF EXISTS "%s"' % role)
        try:
            drop()
            for role in README_ROLES if create else ():
                cursor.execute('CREATE ROLE "%s" NOLOGIN' % role)
            yield
        finally:
            drop()
            cursor.execute("SELECT pg_advisory_unlock(%s)", (README_ROLES_LOCK,))


def test_the_postgresql_set_up_runs_as_written(pg_dsn, tmp_path):
    """README's "Setting up PostgreSQL", verbatim: its shell lines through
    bash (createdb a stand-in that creates this test's database, the DSN
    this test's), its SQL as a superuser.  Then what it promises: a script
    on two hosts under two logins, each on its own host only, the release
    bot's switch and the administrator's policies."""
    import psycopg2
    from . import footprint
    from .conftest import (GROUP_ROLES, admin_connection, create_database, drop_database,
                           server_dsn)
    blocks = indented_blocks(section("Setting up PostgreSQL"))
    lines = "\n".join(blocks[:2]).splitlines()
    assert lines[0] == "createdb cronpolicy" and any("CREATE ROLE" in line for line in lines)
    readme_dsn = "postgresql://admin@db.example.com/cronpolicy"
    name, dsn = create_database("readme")
    drop_database(name)                 # the stand-in createdb makes it again
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "createdb").write_text(
        '#!/bin/sh\n[ "$1" = cronpolicy ] || exit 9\nexec "%s" -c "import psycopg2; c = '
        'psycopg2.connect(\'%s\'); c.autocommit = True; c.cursor().execute(\'CREATE DATABASE'
        ' \\"%s\\"\')"\n' % (sys.executable, server_dsn(), name))
    (bin_dir / "cronpolicy").write_text('#!/bin/sh\nexec "%s" -m cronpolicy "$@"\n'
                                        % sys.executable)
    for program in ("createdb", "cronpolicy"):
        os.chmod(bin_dir / program, 0o755)
    with admin_connection() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT rolname FROM pg_roles")
        existing = {row[0] for row in cursor.fetchall()}
    made = [role for role in GROUP_ROLES if role not in existing]
    env = dict(os.environ, PATH="%s:%s" % (bin_dir, os.environ["PATH"]),
               CRONPOLICY_CONFIG=str(tmp_path / "none.conf"))
    (tmp_path / "none.conf").write_text("[cronpolicy]\n")
    with readme_roles():
        try:
            shell = [line.replace(readme_dsn, dsn) for line in lines
                     if line.startswith(("createdb ", "cronpolicy "))]
            result = subprocess.run(["bash", "-ec", "\n".join(shell)], env=env,
                                    capture_output=True, text=True, timeout=300)
            with admin_connection() as connection, connection.cursor() as cursor:
                cursor.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (made,))
                footprint.mark_roles(cursor, [row[0] for row in cursor.fetchall()])
            assert result.returncode == 0, result.stdout + result.stderr
            sql = "\n".join(line for line in lines
                            if not line.startswith(("createdb ", "cronpolicy ")))
            connection = psycopg2.connect(dsn)
            connection.autocommit = True
            try:
                connection.cursor().execute(sql)
            finally:
                connection.close()
            _the_set_up_works(tmp_path, dsn)
        finally:
            drop_database(name)


def _the_set_up_works(tmp_path, dsn):
    from psycopg2.extensions import make_dsn, parse_dsn
    from .conftest import DBA, ScriptRunner, make_env

    def as_login(login, host=None):
        params = parse_dsn(dsn)
        params["user"] = login
        home = tmp_path / ("%s-%s" % (login, host))
        home.mkdir()
        env = make_env(home, make_dsn(**params))
        if host:
            env["CRONPOLICY_HOST"] = host
        return env
    for login, host in (("cron_web1", "web1"), ("cron_web2", "web2")):
        runner = ScriptRunner(tmp_path, as_login(login, host))
        runner.write("publish-distro")
        result = runner.run("publish-distro")
        assert result.returncode == 0, (login, result.stderr)
    posing = ScriptRunner(tmp_path, as_login("cron_web2", "web1"))
    result = posing.run("publish-distro")
    assert result.returncode == 4 and "host web1 belongs to database role cron_web1" in \
        result.stderr, result.stderr
    assert sorted(DBA(dsn).execute("SELECT host, db_user, status FROM cronpolicy.script_run")) == [
        ("web1", "cron_web1", "succeeded"), ("web2", "cron_web2", "succeeded")]
    for login, argv in (("release_bot", ("deploy", "begin", "--reason", "r1")),
                        ("release_bot", ("deploy", "end")),
                        ("alice", ("disable", "publish-distro")),
                        ("alice", ("enable", "publish-distro"))):
        env = as_login(login, argv[0] + "-" + argv[1])
        result = subprocess.run([sys.executable, "-m", "cronpolicy"] + list(argv), env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (login, argv, result.stderr)


# The manual's shape: README short and a map of docs/; every example of
# every file run by a test (or said why not).

#: README.txt's longest: what a newcomer reads first (issue 29.4).
README_MAX_LINES = 250
#: README's section listing the files of docs/, a line each.
MAP = "Where the rest is"
#: Said of what is shown but not run.
NOT_RUN = "not run: "

#: Every example of the manual: (found by, text in it, run by).  "Found by"
#: is a section title (the section's examples holding the text) or a marker
#: (the example right after the paragraph holding it), as the test that
#: runs it finds it; "run by" is a test of this module (or MODULE.py::TEST),
#: whose source names "found by", or NOT_RUN and why.
EXAMPLES = (
    # README.txt
    ("recorded reason.  Rollouts stop being a mass crontab", "cronpolicy deploy run",
     "test_the_rollouts_examples_run_as_written"),
    ("Set up", "", "test_ci_runs_the_set_up_commands_of_readme"),
    ("Quick start for script authors", "class PublishDistro(CronScript)",
     "test_the_quick_start_script_runs_against_the_in_memory_store"),
    ("Put it in crontab unchanged", "*/15 * * * *", "test_the_crontab_lines_run_as_written"),
    ("Testing a script without a database", "MemoryDatabase",
     "test_the_quick_start_script_runs_against_the_in_memory_store"),
    (HEADLINE, "154 job instances",
     "test_the_simulate_examples_run_and_the_quoted_figures_are_what_they_print"),
    (MAP, "docs/", "test_readme_is_short_and_maps_every_docs_file"),
    # docs/script-authors.txt
    ("Options every script gets:", "--dry-run", "test_the_options_every_script_gets_are_its_own"),
    ("Exit codes (cronpolicy/exitcodes.py):", "main() succeeded",
     "test_the_exit_codes_listed_are_those_of_exitcodes"),
    # docs/operators.txt
    ("Any command can run behind the same gate", "cronpolicy run NAME [options]",
     NOT_RUN + "a synopsis (the --pin example and test_command.py run the command)"),
    ("Moving a whole crontab behind cronpolicy is one edit", "cronpolicy crontab wrap",
     "test_the_crontab_recipes_run"),
    ("To choose a name yourself", "# cronpolicy: name=", "test_the_crontab_recipes_run"),
    ("Unique on a host.", "crontab names", "test_the_crontab_recipes_run"),
    ("Add the line to the crontab of each user whose scripts catch up", "cronpolicy catch-up",
     "test_the_crontab_lines_run_as_written"),
    ("node_exporter's textfile collector", "cronpolicy metrics --host",
     "test_the_crontab_lines_run_as_written"),
    ("Passwords are masked (***) in every log", "[cronpolicy]",
     "test_the_config_file_example_loads_as_written"),
    ("The cronpolicy command", "cronpolicy schema upgrade",
     "test_the_command_list_names_every_option_each_command_has"),
    ("now+2h, now-1h.  `check` can gate a plain shell crontab line", "cronpolicy check",
     "test_the_crontab_lines_run_as_written"),
    ("Watching the fleet: cronpolicy serve", "cronpolicy serve --dsn",
     "test_serve.py::test_the_readme_example_serves_as_written"),
    ("Many running scripts: cronpolicy relay", "cronpolicy relay --dsn",
     "test_relay.py::test_the_operators_example_serves_as_written"),
    ("Many running scripts: cronpolicy relay", "relay = 10.0.0.5:7447",
     "test_relay.py::test_the_operators_example_serves_as_written"),
    # docs/releases.txt
    ("Rollouts", "deploy end 12", "test_the_rollouts_examples_run_as_written"),
    ("Code-only releases: one service stops, the rest runs on", "--service xmlrpc",
     "test_the_code_only_release_recipe_runs_as_written"),
    ("Releases with database patches: the whole fleet, at the best slot", "deploy slot",
     "test_the_database_patch_recipe_runs_as_written"),
    ("Releases with database patches: the whole fleet, at the best slot", "id=$(",
     "test_the_step_by_step_rollout_recipe_runs_as_written"),
    # docs/dbas.txt
    ("Setting up PostgreSQL", "", "test_the_postgresql_set_up_runs_as_written"),
    ("SQL recipes for DBAs (PostgreSQL)", "", "test_every_sql_recipe_runs_as_written"),
    # docs/internals.txt
    ("While developing, an editable install saves reinstalling", "pytest",
     NOT_RUN + "the suite's own command (README's, which CI runs, differs by the install)"),
    ("The unit layer alone (the pure core", "-m unit",
     NOT_RUN + "the suite's unit layer, which the whole suite runs"),
    ("for a longer, fresh search of the second", "CRONPOLICY_FUZZ_EXAMPLES",
     NOT_RUN + "a longer search of test_column_fuzz.py, which the suite runs on fixed "
     "examples"),
    ("Benchmarks (they print figures", "benchmarks/",
     NOT_RUN + "benchmarks take minutes each; their figures are in benchmarks/README.txt"),
    ("Layout", "schema/", "test_the_layout_names_what_is_there"),
    # docs/simulation.txt
    ("The fleet simulator: cronpolicy simulate", "cronpolicy simulate",
     "test_the_simulate_examples_run_and_the_quoted_figures_are_what_they_print"),
)


def manual_examples():
    """Every example: (file, line index, section title, its text) for each
    indented block that follows a blank line (blank lines inside it kept)."""
    found = []
    for name in manual_files():
        lines, title, index = manual_lines(name), None, 0
        while index < len(lines):
            if _is_heading(lines, index):
                title = lines[index]
            if lines[index].startswith("    ") and index and not lines[index - 1].strip():
                end = index
                while end < len(lines) and (lines[end].startswith("    ")
                                            or not lines[end].strip()):
                    end += 1
                found.append((name, index, title,
                              textwrap.dedent("\n".join(lines[index:end])).strip() + "\n"))
                index = end
                continue
            index += 1
    return found


def _claims(found_by, text, examples):
    """The examples an EXAMPLES row stands for."""
    titles = {title for _, _, title, _ in examples}
    if found_by in titles:
        return [example for example in examples if example[2] == found_by and text in example[3]]
    block = example_after(found_by)
    return [example for example in examples if example[3] == block and text in block]


def _test_source(runner):
    """The source of test ``runner`` ("test_x" here, "test_y.py::test_x" elsewhere)."""
    module, _, name = runner.rpartition("::")
    path = os.path.join(os.path.dirname(__file__), module or os.path.basename(__file__))
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    [function] = [node for node in ast.walk(ast.parse(source)) if
                  isinstance(node, ast.FunctionDef) and node.name == name] or [None]
    assert function is not None, "%s: no such test" % runner
    return ast.get_source_segment(source, function)


def test_every_example_is_run_or_said_why_not():
    """Each example of README.txt and docs/*.txt is claimed by exactly one
    row of EXAMPLES, each row claims one at least, and each row's test
    exists and finds its examples as the row says: an example added, moved
    out of its section or left without a test fails here."""
    examples = manual_examples()
    claimed = {}
    for found_by, text, runner in EXAMPLES:
        claims = _claims(found_by, text, examples)
        assert claims, "no example is found by %r holding %r" % (found_by, text)
        for name, index, _, _ in claims:
            claimed.setdefault((name, index + 1), []).append(runner)
        if not runner.startswith(NOT_RUN):        # named as is, or by a constant here (or its keys)
            spellings = [found_by] + [name for name, value in globals().items()
                                      if name.isupper() and (value == found_by or (
                                          isinstance(value, dict) and found_by in value))]
            source = _test_source(runner)
            assert any(spelling in source for spelling in spellings), (runner, found_by)
    unclaimed = ["%s:%d %s" % (name, index + 1, block.splitlines()[0])
                 for name, index, _, block in examples if (name, index + 1) not in claimed]
    assert not unclaimed, "examples no test runs (add them to EXAMPLES): %s" % unclaimed
    twice = {where: runners for where, runners in claimed.items() if len(runners) > 1}
    assert not twice


def test_the_commands_not_run_name_what_is_there():
    """The checkout's shell commands the manual shows and no test runs
    (the suite's own commands: running them is running the suite; the
    benchmarks: minutes each) still hold as far as can be seen without
    running them: each file they name is in the checkout, and each -m
    marker is one setup.cfg declares."""
    import configparser
    import shlex
    config = configparser.ConfigParser()
    config.read(os.path.join(TOP, "setup.cfg"))
    markers = {line.split(":")[0].strip() for line in
               config["tool:pytest"]["markers"].strip().splitlines()}
    examples, checked = manual_examples(), 0
    for found_by, text, runner in EXAMPLES:
        for _, _, _, block in _claims(found_by, text, examples):
            for line in block.splitlines():
                if not line.startswith((".venv/bin/", "CRONPOLICY_")):
                    continue            # (not a command of the checkout's)
                words = shlex.split(line)
                for index, word in enumerate(words):
                    if "/" in word and not word.startswith((".venv/", "-", "'")) \
                            and "=" not in word:
                        assert os.path.exists(os.path.join(TOP, word)), (line, word)
                    if word == "-m" and words[index + 1] != "pytest":
                        named = set(re.findall(r"[a-z]+", words[index + 1])) - {"not", "and",
                                                                                "or"}
                        assert named <= markers, (line, named - markers)
                checked += 1
    assert checked >= 9


def test_readme_is_short_and_maps_every_docs_file():
    """README keeps what a newcomer needs first; its map names each file of
    docs/ (and nothing that is not there); every docs/ path the manual
    names exists (docs/serve.png, the dashboard's picture, among them)."""
    readme = manual_lines("README.txt")
    assert len(readme) < README_MAX_LINES, "README.txt has %d lines" % len(readme)
    mapped = [line.split()[0] for line in indented_blocks(section(MAP))[0].splitlines()
              if not line.startswith(" ")]                      # (not a line continued)
    assert sorted(name for name in mapped if name.startswith("docs/")) == \
        manual_files()[1:], mapped
    for name in mapped + [path.rstrip(".,;:)") for path in
                          re.findall(r"\bdocs/[\w.-]+", manual_text())]:
        assert os.path.exists(os.path.join(TOP, name)), name


def test_ci_runs_the_set_up_commands_of_readme():
    """.ci/run finds README's set-up commands by the sentence before each
    (the first commands a new user needs stay in README, "Set up"): each
    sentence it names is there once, followed by its command."""
    with open(os.path.join(TOP, ".ci", "run"), encoding="utf-8") as handle:
        markers = re.findall(r'readme_command "([^"]+)"', handle.read())
    assert len(markers) == 4
    readme = manual_lines("README.txt")
    commands = []
    for marker in markers:
        [index] = [index for index, line in enumerate(readme) if marker in line]
        commands.append(next(line[4:] for line in readme[index + 1:]
                             if re.match(r"^    [^ ]", line)))
    assert commands == indented_blocks(section("Set up"))


def test_the_options_every_script_gets_are_its_own():
    """The list under "Options every script gets:" against the parser every
    CronScript starts from."""
    from cronpolicy.options import standard_options_parser
    block = example_after("Options every script gets:")
    listed = {option for line in block.splitlines() if line.startswith("-")
              for option in line.split("  ")[0].split() if option.startswith("-")}
    parser = standard_options_parser("job", "a job")
    assert listed == {action.option_strings[0] for action in parser._actions} - {"-h"}


def test_the_exit_codes_listed_are_those_of_exitcodes():
    """The list under "Exit codes" (to its first blank line: 130 stands out
    of its indent) against cronpolicy.exitcodes."""
    from cronpolicy import exitcodes
    marker = "Exit codes (cronpolicy/exitcodes.py):"
    [lines] = [manual_lines(name) for name in manual_files()
               if any(marker in line for line in manual_lines(name))]
    start = next(index for index, line in enumerate(lines) if marker in line) + 2
    end = lines.index("", start)
    listed = [int(code) for code in re.findall(r"^ +(\d+)  ", "\n".join(lines[start:end]),
                                                 re.MULTILINE)]
    defined = sorted(value for name, value in vars(exitcodes).items()
                     if name.isupper() and isinstance(value, int))
    assert listed == defined


def test_the_layout_names_what_is_there():
    """Each path of the Layout's list is in the checkout."""
    [block] = indented_blocks(section("Layout"))
    for line in block.splitlines():
        for path in re.split(r"\s{2,}", line)[0].split(", "):
            assert os.path.exists(os.path.join(TOP, path)), path
