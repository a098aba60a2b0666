"""README.txt's Python examples, run verbatim."""

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
    connection = psycopg2.connect(pg_dsn)
    connection.autocommit = True
    try:
        for recipe in recipes:
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM cronpolicy.script_policy;"
                               " DELETE FROM cronpolicy.rollout_window;"
                               " DELETE FROM cronpolicy.script_owner;"
                               " DELETE FROM cronpolicy.script_run")
                if before != "nothing":
                    cursor.execute("INSERT INTO cronpolicy.script_policy (name, host)"
                                   " SELECT DISTINCT name, host FROM (VALUES"
                                   " ('publish-distro', '*'), ('publish-distro', 'ppa3'),"
                                   " ('publish-*', '*'), ('sync-mirror', '*'), ('build-*', '*'),"
                                   " ('heartbeat', '*')) AS t (name, host)")
                try:
                    cursor.execute(recipe)
                except psycopg2.Error as error:
                    pytest.fail("README recipe failed: %s\n%s" % (error, recipe))
    finally:
        connection.close()


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


def test_the_rollout_recipe_runs_as_written(script_env, tmp_path):
    """README's rollout recipe, verbatim as a shell script, but for the
    database it exports (this test's)."""
    recipe = indented_blocks(section("Rollout recipe"))[0]
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
    assert "deploy no longer pending" in result.stdout


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


def test_the_slot_recipe_runs_as_written(script_env, tmp_path):
    """README's recipe that chooses the time with the schedules, verbatim as
    a shell script, with /etc moved under this test's directory."""
    recipe = indented_blocks(section("Rollout recipe"))[1]
    assert "deploy slot" in recipe and "schedule import" in recipe
    root = tmp_path / "root"
    (root / "etc" / "cron.d").mkdir(parents=True)
    (root / "etc" / "crontab").write_text("17 * * * * root cd / && run-parts /etc/cron.hourly\n")
    (root / "etc" / "cron.d" / "publisher").write_text(
        "0 * * * * archive /srv/bin/publish-distro\n")
    lines = re.sub(r"(?<![\w/])/etc/", str(root) + "/etc/", recipe).splitlines()
    assert lines[0].startswith("export CRONPOLICY_DSN=")
    script = "set -e\nexport CRONPOLICY_DSN=%s\n%s\n" % (
        script_env["CRONPOLICY_DSN"], "\n".join(lines[1:]))
    env = dict(script_env, PATH=os.path.dirname(sys.executable) + os.pathsep
               + os.environ.get("PATH", ""))
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "publish-distro@testhost" in result.stdout and "release 4522" in result.stdout
    assert "a rollout at" in result.stdout


def test_the_service_and_release_recipe_runs_as_written(script_env, tmp_path):
    """README's recipe for one service and for releases, verbatim as a shell
    script, with /srv moved under this test's directory."""
    recipe = indented_blocks(section(
        "Rolling out one service, and finishing on the release you started from"))[-1]
    srv = tmp_path / "srv"
    (srv / "app" / "releases" / "4521").mkdir(parents=True)
    (srv / "app" / "releases" / "4522").mkdir()
    os.symlink(str(srv / "app" / "releases" / "4521"), str(srv / "app" / "current"))
    lines = re.sub(r"(?<![\w/])/srv/", str(srv) + "/", recipe).splitlines()
    assert lines[0].startswith("export CRONPOLICY_DSN=")
    script = "set -e\nexport CRONPOLICY_DSN=%s\n%s\n" % (
        script_env["CRONPOLICY_DSN"], "\n".join(lines[1:]))
    env = dict(script_env, PATH=os.path.dirname(sys.executable) + os.pathsep
               + os.environ.get("PATH", ""))
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "deploy of xmlrpc no longer pending" in result.stdout
    assert os.path.realpath(str(srv / "app" / "current")) == str(srv / "app" / "releases" / "4522")


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
    where benchmarks/ is the checkout's; the stall p95s README quotes are the
    ones the first prints (the seed fixes them)."""
    blocks = indented_blocks(section("What it buys you: a fleet simulated, strategy against "
                                     "strategy"))
    [commands] = [block.splitlines() for block in blocks
                  if block.startswith("cronpolicy simulate ")]
    [quoted] = [block for block in blocks if block.startswith("rollout stall p95")]
    assert len(commands) == 2 and all(line.startswith("cronpolicy simulate ")
                                      for line in commands)
    readme = os.path.abspath([path for path in PLACES if os.path.exists(path)][0])
    os.symlink(os.path.join(os.path.dirname(readme), "benchmarks"), tmp_path / "benchmarks")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep
               + os.environ.get("PATH", ""))
    printed = []
    for command in commands:
        result = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        printed.append(result.stdout.splitlines()[-1])
    assert (tmp_path / "stalls.svg").stat().st_size > 10000
    prefix = "rollout stall p95:"
    assert printed[0].startswith(prefix)
    assert quoted == printed[0].replace(prefix, "rollout stall p95 on the reference fleet:")
    assert printed[1] == "rollout stall p95: all-stop 0s, on/off 10m16s, cronpolicy 0s, " \
                         "cronpolicy+slot 20m"
