"""README.txt's Python examples, run verbatim."""

import contextlib
import os
import re
import subprocess
import sys
import textwrap

import pytest

# Beside the source tree in a checkout; in the current directory when the
# suite runs from an installed copy (README's test command, from the checkout).
PLACES = (os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, os.pardir, "README.txt"),
          "README.txt")
if not any(os.path.exists(path) for path in PLACES):
    # An installed copy run elsewhere (README.txt is not in the wheel).
    pytest.skip("README.txt not found: run the tests from the top of a checkout",
                allow_module_level=True)


def example_after(marker):
    """The indented block that follows the paragraph containing ``marker``."""
    found = [path for path in PLACES if os.path.exists(path)]
    if not found:
        pytest.fail("README.txt not found: run the tests from the top of a checkout",
                    pytrace=False)
    lines = open(found[0], encoding="utf-8").read().splitlines()
    start = next(index for index, line in enumerate(lines) if marker in line)
    while lines[start].strip():                     # to the end of the paragraph
        start += 1
    block = []
    for line in lines[start + 1:]:
        if line.strip() and not line.startswith("    "):
            break
        block.append(line)
    return textwrap.dedent("\n".join(block)).strip() + "\n"


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


def section(title):
    """The lines of README.txt's section ``title`` (to the next underlined heading)."""
    found = [path for path in PLACES if os.path.exists(path)]
    lines = open(found[0], encoding="utf-8").read().splitlines()
    start = lines.index(title) + 2
    end = next(index for index in range(start, len(lines) - 1)
               if lines[index + 1].startswith("---") and lines[index].strip())
    return lines[start:end]


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
def test_every_sql_recipe_runs_as_written(pg_dsn, before):
    """Each recipe of "SQL recipes for DBAs", verbatim, on an emptied
    database (recipes are independent: a DBA types one at a time), and on
    one where the rows it names exist already (after `cronpolicy enable`,
    say): the recipes' INSERTs once failed there with a duplicate key."""
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


def test_the_crontab_recipes_run(tmp_path):
    """The crontab name comment and the whole-host recipe, with /etc and
    /tmp moved under this test's directory and a stand-in `crontab`."""
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
    script = re.sub(r"(?<![\w/])/(etc|tmp)/", str(root) + r"/\1/", recipe)
    (tmp_path / "none.conf").write_text("[cronpolicy]\n")
    env = dict(os.environ, PATH="%s:%s" % (bin_dir, os.environ["PATH"]),
               CRONPOLICY_CONFIG=str(tmp_path / "none.conf"))
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
    """README's `cronpolicy run --pin LINK NAME -- ...`, verbatim but for /srv
    moved under this test's directory and NAME given one (issue 27.6: it
    was refused, options before NAME being taken for a missing NAME)."""
    found = [path for path in PLACES if os.path.exists(path)]
    text = " ".join(open(found[0], encoding="utf-8").read().split())
    [example] = re.findall(r"`(cronpolicy run --pin [^`]*)`", text)
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


def test_the_simulate_examples_run_and_the_quoted_figures_are_what_they_print(tmp_path):
    """README's `cronpolicy simulate` examples, verbatim, from a directory
    where benchmarks/ is the checkout's; the headline README quotes (the
    conditions line and each kind's figures) is what the first prints (the
    seeds fix it)."""
    blocks = indented_blocks(section("What it buys you: a fleet simulated, strategy against "
                                     "strategy"))
    [commands] = [block.splitlines() for block in blocks
                  if block.startswith("cronpolicy simulate ")]
    [quoted] = [block for block in blocks if block.startswith("154 job instances")]
    assert len(commands) == 2 and all(line.startswith("cronpolicy simulate ")
                                      for line in commands)
    readme = os.path.abspath([path for path in PLACES if os.path.exists(path)][0])
    os.symlink(os.path.join(os.path.dirname(readme), "benchmarks"), tmp_path / "benchmarks")
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
                "dashboard")
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
    from .conftest import (GROUP_ROLES, _created_group_roles, admin_connection,
                           create_database, drop_database, server_dsn)
    blocks = indented_blocks(section("Setting up PostgreSQL"))
    lines = "\n".join(blocks[:2]).splitlines()
    assert lines[0] == "createdb cronpolicy" and any("CREATE ROLE" in line for line in lines)
    readme_dsn = "postgresql://admin@db.example.com/cronpolicy"
    name, dsn = create_database("cronpolicy_readme")
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
    _created_group_roles.extend(role for role in GROUP_ROLES
                                if role not in existing and role not in _created_group_roles)
    env = dict(os.environ, PATH="%s:%s" % (bin_dir, os.environ["PATH"]),
               CRONPOLICY_CONFIG=str(tmp_path / "none.conf"))
    (tmp_path / "none.conf").write_text("[cronpolicy]\n")
    with readme_roles():
        try:
            shell = [line.replace(readme_dsn, dsn) for line in lines
                     if line.startswith(("createdb ", "cronpolicy "))]
            result = subprocess.run(["bash", "-ec", "\n".join(shell)], env=env,
                                    capture_output=True, text=True, timeout=300)
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
