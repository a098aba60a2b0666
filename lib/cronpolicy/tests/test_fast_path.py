"""Issue 14.1: the start path stays small, and what it does by hand instead
of with the standard library gives the standard library's answers."""

import collections
import configparser
import json
import os
import re
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from cronpolicy.ini import _read_plain_ini, read_ini
from cronpolicy.errors import UsageError
from cronpolicy.matching import glob_matches
from cronpolicy.options import parse_standard_options, standard_options_parser
from cronpolicy.shapes import shape
from cronpolicy.timeutil import parse_duration

DEEP = int(os.environ.get("CRONPOLICY_FUZZ_EXAMPLES", "0"))
SETTINGS = dict(max_examples=DEEP or 300, deadline=None, derandomize=not DEEP,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

NOOP = """\
import sys
from cronpolicy import CronScript

class Noop(CronScript):
    name = "noop"

    def main(self):
        pass

Noop().run(exit=False)
print(" ".join(sorted(sys.modules)))
"""

#: What a gated start must not import (SQLAlchemy and zope.interface are
#: tooling's; the rest cost more than the decision, see issue 14).
NEVER = {"sqlalchemy", "zope", "argparse", "logging", "configparser", "uuid", "hashlib"}
#: On SQLite, nothing that psycopg2 would have brought along either.
NEVER_ON_SQLITE = NEVER | {"re", "json", "enum", "socket", "zlib", "decimal"}


def started_modules(tmp_path, dsn, config="[cronpolicy]\n"):
    script = tmp_path / "noop.py"
    script.write_text(NOOP)
    (tmp_path / "cronpolicy.conf").write_text(config)
    env = dict(os.environ, CRONPOLICY_CONFIG=str(tmp_path / "cronpolicy.conf"),
               CRONPOLICY_STATE_DIR=str(tmp_path / "state"),
               CRONPOLICY_LOCK_DIR=str(tmp_path / "locks"), CRONPOLICY_DSN=dsn)
    for _ in range(2):          # the second start finds its cache written
        result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
    # What this interpreter loads before any script (an editable install's
    # import hook loads re, say) is not the start path's doing.
    bare = subprocess.run([sys.executable, "-c", "import sys; print(' '.join(sys.modules))"],
                          capture_output=True, text=True, timeout=60).stdout.split()
    return {name.split(".")[0] for name in result.stdout.split()} - {
        name.split(".")[0] for name in bare}


@pytest.mark.integration
def test_a_sqlite_start_imports_only_what_it_needs(tmp_path):
    config = ("[cronpolicy]\npoll_interval = 1s\nheartbeat_interval = 5s  # a comment\n"
              "[script:noop]\non_database_error = run\n")
    found = started_modules(tmp_path, "sqlite:///%s" % (tmp_path / "db.sqlite"), config)
    assert not found & NEVER_ON_SQLITE, found & NEVER_ON_SQLITE


COLLECTOR_PROBE = """\
import gc, sys
if sys.argv[1] == "off":
    gc.disable()
import cronpolicy
cronpolicy.CronScript
frozen = gc.get_freeze_count()
cronpolicy.CronScript       # kept: the second look-up freezes nothing more
class Cycle:
    pass
cycle = Cycle()
cycle.me = cycle
del cycle
print(gc.isenabled(), frozen > 0, gc.get_freeze_count() == frozen, gc.collect() > 0)
"""


@pytest.mark.integration
@pytest.mark.parametrize("collector", ["on", "off"])
def test_importing_the_gate_leaves_the_collector_as_it_was(collector):
    """Issue 32.1: the import pauses the collector and freezes what exists
    then, once; garbage made afterwards is still collected, and a collector
    the script turned off stays off (and nothing is frozen)."""
    result = subprocess.run([sys.executable, "-c", COLLECTOR_PROBE, collector],
                            capture_output=True, text=True, timeout=60)
    assert result.stderr == ""
    enabled, frozen, once, collected = result.stdout.split()
    assert (enabled, frozen, once, collected) == (
        ("True", "True", "True", "True") if collector == "on" else
        ("False", "False", "True", "True"))


def test_a_postgresql_start_imports_only_what_it_needs(tmp_path, pg_dsn):
    found = started_modules(tmp_path, pg_dsn)
    assert not found & NEVER, found & NEVER


# Read commands without SQLAlchemy (issue 14.3) ---------------------------------------

READ_COMMANDS = [["status"], ["check", "job"], ["history"], ["history", "job"],
                 ["estimate"], ["estimate", "job"], ["why", "job"], ["status", "--json"],
                 ["window", "list", "--all"], ["audit", "--since", "now-1d"], ["rollouts"]]
#: A read command loads neither the tooling's SQLAlchemy nor the gate's
#: machinery (the watcher, the interruption, the crontab code).
NEVER_IN_A_READ = {"sqlalchemy", "zope", "shutil", "cronpolicy.script", "cronpolicy.watcher",
                   "cronpolicy.interruption", "cronpolicy.tooling.crontab",
                   "cronpolicy.tooling.tables", "cronpolicy.tooling.database"}


@pytest.mark.parametrize("argv", READ_COMMANDS, ids=" ".join)
def test_read_commands_load_no_sqlalchemy(argv, dsn, dba, tmp_path):
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, status, decision,"
                " spool_id, finished_at) VALUES ('job', 'h', 1, 'skipped', 'disabled', 'k1', %s)"
                % dba.now_plus(0))
    loaded = modules_a_command_loads(argv, dsn, tmp_path, NEVER_IN_A_READ)
    assert not loaded, loaded


#: A rollout's commands (begin, wait, run, end), its windows and
#: disable/enable are plain SQL (store.writes): release tooling calls them at
#: every deploy, and SQLAlchemy cost each command 0.2 s.
ROLLOUT_WRITES = [["deploy", "begin", "--reason", "r1"], ["deploy", "end", "--all"],
                  ["deploy", "end", "1"], ["window", "add", "--start", "+1h", "--duration", "1h"],
                  ["window", "cancel", "1"], ["disable", "job"], ["enable", "job"],
                  ["deploy", "wait", "--timeout", "5s"],
                  ["deploy", "run", "--wait-timeout", "5s", "--", "true"],
                  ["schedule", "import", "{crontab}"], ["prune", "--older-than", "30d"]]


#: What those commands leave out (schedule import reads crontabs, deploy run runs a command).
NEVER_IN_A_WRITE = {"sqlalchemy", "zope", "cronpolicy.tooling.tables",
                    "cronpolicy.tooling.database"}


def test_rollout_writes_load_no_sqlalchemy(dsn, tmp_path):
    crontab = tmp_path / "crontab"
    crontab.write_text("*/5 * * * * /srv/bin/job\n")
    for argv in ROLLOUT_WRITES:
        argv = [word.format(crontab=crontab) for word in argv]
        loaded = modules_a_command_loads(argv, dsn, tmp_path, NEVER_IN_A_WRITE)
        assert not loaded, (argv, loaded)


def modules_a_command_loads(argv, dsn, tmp_path, never):
    """The modules of ``never`` (or within them) that `cronpolicy ARGV` loads."""
    probe = ("import sys, io, contextlib\n"
             "from cronpolicy.tooling.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    code = main(sys.argv[1:])\n"
             "print(code, ' '.join(sorted(sys.modules)))\n")
    (tmp_path / "cronpolicy.conf").write_text("[cronpolicy]\n")
    env = dict(os.environ, CRONPOLICY_DSN=dsn, CRONPOLICY_STATE_DIR=str(tmp_path / "state"),
               CRONPOLICY_CONFIG=str(tmp_path / "cronpolicy.conf"))
    result = subprocess.run([sys.executable, "-c", probe] + argv, env=env, capture_output=True,
                            text=True, timeout=60)
    code, _, modules = result.stdout.partition(" ")
    assert code in ("0", "5"), result.stderr
    return {name for name in modules.split() for module in never
            if name == module or name.startswith(module + ".")}


# Standard options without argparse -----------------------------------------------------

OPTION_WORDS = st.sampled_from(["-v", "-q", "-vv", "-vq", "-qqv", "--verbose", "--quiet",
                                "--log-file", "--log-file=/tmp/x", "--log-file=", "--dsn",
                                "--dsn=sqlite:////x", "--ignore-policy", "--dry-run", "--",
                                "-", "-x", "--dsn=-v", "--verb", "-h", "value", "-vx", "--x=1",
                                "-v2", "--dry-run=1", "-3s", "--ignore"])


@hypothesis_settings(**SETTINGS)
@given(argv=st.lists(OPTION_WORDS, max_size=6))
def test_standard_options_read_as_argparse_reads_them(argv):
    from cronpolicy.arguments import attach_dashed_values
    fast = parse_standard_options(argv)
    if fast is None:
        return          # left to argparse
    parser = standard_options_parser("noop", None)
    try:
        expected = parser.parse_args(attach_dashed_values(argv, parser))
    except SystemExit:
        pytest.fail("read %r, which argparse refuses" % (argv,))
    assert vars(fast) == vars(expected)


# The config file without configparser --------------------------------------------------

INI_LINES = st.sampled_from([
    "[cronpolicy]", "[script:job]", "[DEFAULT]", "[cronpolicy]", "dsn = sqlite:////x",
    "poll_interval = 1s", "poll_interval: 2s", "Key = Value", "key=value # comment",
    "key = a#b", "# a comment", "; a comment", "", "   ", "  continued", "novalue", "= x",
    "[broken", "[a] b", "dsn = postgresql://h/db  ; not a comment", "\tkey = tab",
    "key = value\t# tab comment", "KEY = upper", "[]", "x = 1 = 2", "y : 3 = 4",
    "[script:job]", "on_database_error = run"])


@hypothesis_settings(**SETTINGS)
@given(lines=st.lists(INI_LINES, max_size=8), crlf=st.booleans())
def test_plain_config_files_read_as_configparser_reads_them(lines, crlf):
    text = "\n".join(lines) + "\n"
    fast = _read_plain_ini(text)
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#",))
    try:
        parser.read_string(text)
    except configparser.Error:
        assert fast is None, "read %r, which configparser refuses" % text
        return
    expected = {section: dict(parser.items(section)) for section in parser.sections()}
    if fast is not None:
        assert fast == expected
    assert read_ini(text, "test.conf") == expected


# The cache's name by hand --------------------------------------------------------------

@hypothesis_settings(**SETTINGS)
@given(data=st.binary(max_size=300))
def test_the_cache_names_checksum_is_zlibs(data):
    """The policy cache is named by the DSN's CRC-32: by hand on the start
    path, and the same as zlib's, so a cache written before stays found."""
    import zlib
    from cronpolicy.config import _crc32
    assert _crc32(data) == zlib.crc32(data)


# Durations and globs by hand -------------------------------------------------------------

def _duration_by_regex(text):
    cleaned = str(text).strip().lower()
    position, total = 0, 0.0
    for match in re.finditer(r"(\d+(?:\.\d+)?)([smhdw])", cleaned):
        if match.start() != position:
            break
        total += float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400,
                                          "w": 604800}[match.group(2)]
        position = match.end()
    return total if cleaned and position == len(cleaned) and total <= 100 * 365.25 * 86400 \
        else None


@hypothesis_settings(**SETTINGS)
@given(text=st.text(alphabet="0123456789.smhdwSMx -", max_size=10))
def test_durations_read_as_the_regular_expression_read_them(text):
    try:
        found = parse_duration(text)
    except UsageError:
        found = None
    assert found == _duration_by_regex(text)


@hypothesis_settings(**SETTINGS)
@given(pattern=st.text(alphabet="ab*?.[", max_size=7), value=st.text(alphabet="ab.[\n",
                                                                     max_size=8))
def test_globs_match_as_the_regular_expression_matched(pattern, value):
    regex = "".join(".*" if char == "*" else "." if char == "?" else re.escape(char)
                    for char in pattern)
    assert glob_matches(pattern, value) == (re.fullmatch(regex, value, re.DOTALL) is not None)


# Light named tuples ----------------------------------------------------------------------

@hypothesis_settings(**SETTINGS)
@given(count=st.integers(1, 6), defaults=st.integers(0, 6), given=st.integers(0, 7),
       keywords=st.booleans())
def test_shapes_behave_as_named_tuples(count, defaults, given, keywords):
    fields = ["f%d" % index for index in range(count)]
    defaults = list(range(100, 100 + min(defaults, count)))
    ours = shape("Thing", " ".join(fields), defaults=defaults)
    theirs = collections.namedtuple("Thing", fields, defaults=defaults)
    values = list(range(given))

    def build(cls):
        try:
            if keywords:
                return cls(**dict(zip(fields, values)))
            return cls(*values)
        except TypeError:
            return TypeError
    made, expected = build(ours), build(theirs)
    assert (made is TypeError) == (expected is TypeError)
    if made is TypeError:
        return
    assert tuple(made) == tuple(expected) and repr(made) == repr(expected)
    assert made._asdict() == expected._asdict() and ours._fields == theirs._fields
    assert ours._field_defaults == theirs._field_defaults
    assert tuple(made._replace(f0="x")) == tuple(expected._replace(f0="x"))
    assert tuple(ours._make(tuple(expected))) == tuple(expected)
    assert made.f0 == expected.f0 and made == expected and hash(made) == hash(expected)
    assert made.__getnewargs__() == expected.__getnewargs__()


# The policy cache is written when it changes, touched when it does not ---------------------

def test_the_cache_is_rewritten_only_when_the_policy_changes(tmp_path, cli_env, dba):
    script = tmp_path / "noop.py"
    script.write_text(NOOP)

    def start():
        result = subprocess.run([sys.executable, str(script)], env=cli_env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    start()
    [cache] = [path for path in (tmp_path / "state").glob("policy-cache-*.json")]
    first = os.stat(cache)
    content = cache.read_bytes()
    time.sleep(0.05)
    start()
    second = os.stat(cache)
    assert (second.st_ino, cache.read_bytes()) == (first.st_ino, content)
    assert second.st_mtime_ns > first.st_mtime_ns         # confirmed now
    dba.execute("INSERT INTO cronpolicy.script_policy (name, enabled) VALUES ('other', false)")
    start()
    assert os.stat(cache).st_ino != first.st_ino and b"other" in cache.read_bytes()
    # Still the format older versions read; what it holds is said beside it.
    assert json.loads(cache.read_bytes())["format"] == 2
    assert (cache.parent / ("." + cache.name + ".fingerprint")).exists()


@pytest.fixture
def cli_env(tmp_path, dsn):
    from .conftest import make_env
    env = make_env(tmp_path, dsn)
    env["CRONPOLICY_STATE_DIR"] = str(tmp_path / "state")
    return env


def test_a_cache_confirmed_recently_is_trusted_however_old_its_content(tmp_path):
    from cronpolicy.cache import PolicyCache
    from cronpolicy.rows import Inputs, to_time
    cache = PolicyCache(str(tmp_path / "cache.json"), max_age=3600)
    os.chmod(tmp_path, 0o700)
    inputs = Inputs(now=to_time(time.time()), schema_version=12, deploy=None, policies=[],
                    windows=[], recent_runtimes=[])
    cache.keep(inputs)
    old = time.time() - 7200
    os.utime(cache.path, (old, old))
    assert cache.load_inputs("job", 20) is None            # not confirmed for two hours
    cache.keep(inputs)                                      # the same content: touched
    assert cache.load_inputs("job", 20) is not None


def test_a_cache_saved_long_ago_or_in_the_future_is_written_again(tmp_path, monkeypatch):
    from cronpolicy.cache import PolicyCache
    from cronpolicy.rows import Inputs, to_time
    os.chmod(tmp_path, 0o700)
    cache = PolicyCache(str(tmp_path / "cache.json"), max_age=3600)
    inputs = Inputs(now=to_time(time.time()), schema_version=12, deploy=None, policies=[],
                    windows=[], recent_runtimes=[])
    real_time = time.time
    for shift in (86400, -2400):        # saved a day ahead (a clock put back), 40 min ago
        monkeypatch.setattr(time, "time", lambda: real_time() + shift)
        cache.keep(inputs)
        monkeypatch.setattr(time, "time", real_time)
        saved = os.stat(cache.path).st_ino
        cache.keep(inputs)
        assert os.stat(cache.path).st_ino != saved, "kept a cache saved at %+ds" % shift
        assert cache.load_inputs("job", 20) is not None


# Logging is set up when it is needed, as before ---------------------------------------------

LOGGING_SCRIPT = """\
import logging
from cronpolicy import CronScript

class Job(CronScript):
    name = "job"

    def main(self):
        logging.getLogger("library").warning("from a library")
        self.logger.info("from the script")

Job().run()
"""


@pytest.mark.integration
def test_durable_sqlite_writes_commit_before_they_are_synced(tmp_path):
    """A skip is INSERT ... RETURNING: it commits only when its rows are
    read, which once happened after synchronous was back at NORMAL; the
    checkpoint that now makes it durable must come after the COMMIT."""
    from cronpolicy.rows import RunRecord
    from cronpolicy.store.sqlite import SQLiteStore
    store = SQLiteStore(str(tmp_path / "db.sqlite"), create_directory=True)
    store.load_inputs("job", 20)
    seen = []
    store._connection.set_trace_callback(seen.append)
    store.record_skip(RunRecord(name="job", host="h", pid=1, status="skipped",
                                spool_id=os.urandom(16).hex()))
    store.close()
    steps = [sql.split()[0] if not sql.startswith("PRAGMA") else sql for sql in seen]
    # (a statement may be traced twice, when SQLite prepares it again)
    checkpoint = steps.index("PRAGMA cronpolicy.wal_checkpoint(PASSIVE)")
    assert steps.index("INSERT") < steps.index("COMMIT") < checkpoint, seen


@pytest.mark.parametrize("dsn", ["sqlite"], indirect=True)
@pytest.mark.parametrize("argv, where", [([], "stderr"), (["-v"], "stderr"),
                                         (["--log-file", "LOG"], "file")])
def test_records_reach_the_configured_place_in_the_configured_form(tmp_path, cli_env, argv,
                                                                   where):
    script = tmp_path / "job.py"
    script.write_text(LOGGING_SCRIPT)
    log = tmp_path / "job.log"
    argv = [str(log) if word == "LOG" else word for word in argv]
    result = subprocess.run([sys.executable, str(script)] + argv, env=cli_env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    text = log.read_text() if where == "file" else result.stderr
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ WARNING library\[\d+\]: from a library$",
                     text, re.M), text
    assert ("INFO job[" in text) == bool(argv), text
    if where == "file":
        assert result.stderr == ""


OWN_LOGGING_SCRIPT = """\
import sys
from cronpolicy import CronScript

class Job(CronScript):
    name = "job"

    def main(self):
        import logging
        logging.basicConfig(filename=sys.argv[0] + ".log", format="own: %(message)s")
        logging.getLogger("library").warning("from main")
        sys.exit(3)

Job().run()
"""


@pytest.mark.parametrize("dsn", ["sqlite"], indirect=True)
def test_a_root_logger_main_sets_up_gets_the_gates_records_after_main(tmp_path, cli_env):
    """Logging imported only inside main(): the gate's record of the failure
    set up a handler of its own, which took the script's away (to stderr)."""
    script = tmp_path / "job.py"
    script.write_text(OWN_LOGGING_SCRIPT)
    result = subprocess.run([sys.executable, str(script)], env=cli_env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3 and result.stderr == "", result.stderr
    text = (tmp_path / "job.py.log").read_text()
    assert "own: from main\n" in text and re.search(r"^own: run #\d+ failed", text, re.M), text


@pytest.mark.parametrize("dsn", ["sqlite"], indirect=True)
def test_quiet_means_warnings_are_not_printed(tmp_path, cli_env):
    """-q: Python's last-resort handler printed the library's WARNING anyway."""
    script = tmp_path / "job.py"
    script.write_text(LOGGING_SCRIPT.replace("import logging\n", ""))
    script.write_text(script.read_text().replace(
        "    def main(self):\n", "    def main(self):\n        import logging\n"))
    result = subprocess.run([sys.executable, str(script), "-q"], env=cli_env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
