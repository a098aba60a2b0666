"""`cronpolicy serve` (issue 31): the real command, serving the real
database through a login that can only read, asked over HTTP and looked
at in a real headless browser (Debian's chromium, driven by selenium and
Debian's chromedriver).

Without chromium and chromedriver the browser test is skipped, saying
how to install them, except under CI (CI set), where it fails.  It saves
screenshots of the main views in its temporary directory, and also in
$CRONPOLICY_SCREENSHOTS when set (README.txt's picture, docs/serve.png,
is made so).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import psycopg2
import pytest

from cronpolicy import exitcodes

from .conftest import DBA, ScriptRunner, as_login, make_env

#: Every test here is integration (they reach a database or start processes):
#: under -m unit alone the module is not even imported (tests/layers.py).
pytestmark = pytest.mark.integration

pytest.importorskip("flask")
pytest.importorskip("waitress")

MARKUP_NAME = '<img src=x onerror="document.title=1">&amp;'
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TOKEN = "t0ken-of-sixteen-chars"


def cli(env, *argv, timeout=60):
    return subprocess.run([sys.executable, "-m", "cronpolicy"] + list(argv), env=env,
                          capture_output=True, text=True, timeout=timeout)


class Server:
    """`cronpolicy serve` as a real process on a free loopback port."""

    def __init__(self, env, *argv):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cronpolicy", "serve", "--listen", "127.0.0.1:0"]
            + list(argv), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()       # bounded: it prints or exits
        found = re.search(r"(http://\S+/)", line)
        if not found:
            self.stop()
            raise AssertionError("serve did not start: %r %s" % (
                line, self.process.stderr.read()))
        self.url = found.group(1)

    def get(self, path, headers=None):
        """(status, headers, body text)."""
        request = urllib.request.Request(self.url + path.lstrip("/"), headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, answer.headers, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read().decode()

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def reader_env(pg_roles, tmp_path):
    return make_env(tmp_path, pg_roles("cronpolicy_reader"))


@pytest.fixture
def served(reader_env):
    server = Server(reader_env, "--refresh", "1")
    try:
        yield server
    finally:
        server.stop()


def as_role(dsn, sql):
    """None, or the first line of the error ``sql`` met as that login."""
    error = as_login(dsn, sql)
    return None if error is None else str(error).strip().splitlines()[0]


@pytest.mark.parametrize("sql", [
    "SELECT count(*) FROM cronpolicy.script_run",
    "SELECT count(*) FROM cronpolicy.script_policy",
    "SELECT count(*) FROM cronpolicy.rollout",
    "SELECT count(*) FROM cronpolicy.rollout_window",
    "SELECT count(*) FROM cronpolicy.script_schedule",
    "SELECT count(*) FROM cronpolicy.policy_audit",
])
def test_the_reader_role_reads(reader_env, sql):
    assert as_role(reader_env["CRONPOLICY_DSN"], sql) is None


@pytest.mark.parametrize("sql", [
    "INSERT INTO cronpolicy.script_policy (name, enabled) VALUES ('x', false)",
    "UPDATE cronpolicy.deploy_state SET deploy_pending = true",
    "INSERT INTO cronpolicy.rollout (kind) VALUES ('full')",
    "INSERT INTO cronpolicy.rollout_window (starts_at, ends_at) VALUES (now(), now() + '1h')",
    "INSERT INTO cronpolicy.script_run (name, host, pid) VALUES ('x', 'h', 1)",
    "UPDATE cronpolicy.script_run SET status = 'failed'",
    "DELETE FROM cronpolicy.script_schedule",
    "DELETE FROM cronpolicy.policy_audit",
    "SELECT cronpolicy.reap_dead_runs()",
])
def test_the_reader_role_cannot_write(reader_env, sql):
    error = as_role(reader_env["CRONPOLICY_DSN"], sql)
    assert error is not None and "permission denied" in error


def test_the_read_commands_answer_a_reader_login(reader_env):
    """They record dead runs as abandoned when they may; a reader may not."""
    for argv in (("status",), ("rollouts",), ("deploy", "slot", "--duration", "10m"),
                 ("deploy", "plan", "--at", "+1h")):
        result = cli(reader_env, *argv)
        assert result.returncode == 0, (argv, result.stderr)


def test_serve_refuses_a_login_that_can_write_unless_allowed(pg_dsn, tmp_path):
    env = make_env(tmp_path, pg_dsn)                # a superuser: it can write everything
    result = cli(env, "serve", "--listen", "127.0.0.1:0")
    assert result.returncode == exitcodes.USAGE
    [line] = result.stderr.strip().splitlines()
    assert "can write" in line and "script_policy" in line and "cronpolicy_reader" in line
    server = Server(env, "--allow-writer")
    try:
        assert server.get("/api/live")[0] == 200
    finally:
        server.stop()
    assert "WARNING" in server.process.stderr.read()


@pytest.mark.parametrize("argv, said", [
    (("--listen", "0.0.0.0:8080"), "past loopback: give a token"),
    (("--listen", "nowhere"), "HOST:PORT"),
    (("--listen", "127.0.0.1:99999"), "HOST:PORT"),
    (("--listen", "127.0.0.1:0", "--token", "short"), "at least 16"),
])
def test_serve_refuses_what_is_not_safe_in_one_line(reader_env, argv, said):
    result = cli(reader_env, "serve", *argv)
    assert result.returncode == exitcodes.USAGE
    [line] = result.stderr.strip().splitlines()
    assert said in line


def test_every_answer_has_the_security_headers_and_names_are_text(served, pg_dsn):
    dba = DBA(pg_dsn)
    dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, status, finished_at,"
                " skip_reason) VALUES (%s, %s, 1, 'failed', now(), %s)",
                (MARKUP_NAME, "<b>web1</b>", "<script>alert(1)</script>"))
    for path in ("/", "/api/overview", "/rollouts", "/slots?duration=30m",
                 "/script?name=" + urllib.request.quote(MARKUP_NAME), "/static/app.js"):
        status, headers, body = served.get(path)
        assert status == 200, (path, body)
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert "unsafe-inline" not in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert "<img src=x" not in body and "<b>web1" not in body and "<script>alert" not in body
    status, _, body = served.get("/")
    assert "&lt;img src=x onerror=" in body and "&lt;b&gt;web1&lt;/b&gt;" in body
    [row] = json.loads(served.get("/api/overview")[2])["rows"]
    assert row["name"] == MARKUP_NAME and row["runs"][0]["status"] == "failed"


def test_serve_answers_loopback_names_only_and_bad_input_in_one_line(served):
    status, _, body = served.get("/", {"Host": "attacker.example:80"})
    assert status == 421
    status, _, body = served.get("/api/overview?back=forever")
    assert status == 400 and "back" in json.loads(body)["error"]
    status, _, body = served.get("/api/overview?rows=0")
    assert status == 400
    status, _, body = served.get("/script?name=")
    assert status == 400 and "Traceback" not in body
    request = urllib.request.Request(served.url, data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 405


def test_a_token_is_needed_when_one_is_given(reader_env):
    server = Server(reader_env, "--token", TOKEN)
    try:
        assert server.get("/api/live")[0] == 401
        assert server.get("/api/live", {"Authorization": "Bearer wrong-token-wrong!"})[0] == 401
        assert server.get("/api/live", {"Authorization": "Bearer " + TOKEN})[0] == 200
        assert server.get("/api/live", {"Cookie": "cronpolicy_token=" + TOKEN})[0] == 200
        assert server.get("/?token=wrong-token-wrong!")[0] == 401

        class Keep(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args):
                return None             # see the redirect itself
        with pytest.raises(urllib.error.HTTPError) as redirected:
            urllib.request.build_opener(Keep).open(server.url + "?token=" + TOKEN, timeout=30)
        assert redirected.value.code == 303
        cookie = redirected.value.headers["Set-Cookie"]
        assert cookie.startswith("cronpolicy_token=" + TOKEN) and "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
    finally:
        server.stop()


@pytest.mark.integration
def test_serve_on_sqlite_needs_allow_writer_and_then_serves(tmp_path):
    env = make_env(tmp_path, "sqlite:///%s" % (tmp_path / "cp.sqlite"))
    assert cli(env, "status").returncode == 0          # (creates the file)
    result = cli(env, "serve", "--listen", "127.0.0.1:0")
    assert result.returncode == exitcodes.USAGE
    assert "SQLite file" in result.stderr and "--allow-writer" in result.stderr
    runner = ScriptRunner(tmp_path, env)
    runner.write("sync-mirror")
    assert runner.run("sync-mirror").returncode == 0
    server = Server(env, "--allow-writer")
    try:
        assert server.get("/")[0] == 200
        assert json.loads(server.get("/api/live")[2])["rollouts"] == []
        [row] = json.loads(server.get("/api/overview")[2])["rows"]
        assert (row["name"], row["host"], [run["status"] for run in row["runs"]]) == (
            "sync-mirror", "testhost", ["succeeded"])
        # A name and a host a DBA's plain SQL wrote as BLOBs (SQLite keeps
        # them): the page and its JSON answered 500, sorting bytes with text.
        import sqlite3
        connection = sqlite3.connect(str(tmp_path / "cp.sqlite"))
        with connection:
            connection.execute("INSERT INTO script_run (name, host, pid, status, decision,"
                               " finished_at) VALUES (x'6aff', x'68ff', 1, 'succeeded', 'run',"
                               " strftime('%Y-%m-%d %H:%M:%f', 'now'))")
        connection.close()
        assert server.get("/")[0] == 200
        status, _, body = server.get("/api/overview")
        assert status == 200 and "j\ufffd" in json.loads(body)["rows"][0]["name"], body
    finally:
        server.stop()


@pytest.mark.integration
def test_serve_says_in_one_line_when_the_database_is_out_of_reach(tmp_path):
    env = make_env(tmp_path, "postgresql://127.0.0.1:1/cronpolicy?connect_timeout=2")
    result = cli(env, "serve", "--listen", "127.0.0.1:0")
    assert result.returncode == exitcodes.GATE_ERROR
    [line] = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr


def test_a_database_lost_while_serving_is_a_503_in_one_line(served, reader_env, pg_dsn):
    role = psycopg2.extensions.parse_dsn(reader_env["CRONPOLICY_DSN"])["user"]
    assert served.get("/")[0] == 200
    DBA(pg_dsn).execute('ALTER ROLE "%s" NOLOGIN' % role)
    try:
        status, headers, body = served.get("/")
        assert status == 503 and "not permitted to log in" in body
        assert "Traceback" not in body and "default-src 'none'" in headers[
            "Content-Security-Policy"]
        status, _, body = served.get("/api/live")
        assert status == 503 and "not permitted" in json.loads(body)["error"]
    finally:
        DBA(pg_dsn).execute('ALTER ROLE "%s" LOGIN' % role)
    assert served.get("/")[0] == 200


# The browser ---------------------------------------------------------------------------

def browser(tmp_path, javascript=True):
    """A headless chromium through chromedriver, or skip (fail under CI) saying why.
    Its profile goes under ``tmp_path``, its temporary files (a directory
    of its process singleton's socket, which quitting left in /tmp) in a
    directory of their own that quit() removes."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    if missing:
        message = ("%s missing: apt-get install -y chromium chromium-driver (README.txt, Set up)"
                   % " and ".join(missing))
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1300,900",
                     "--user-data-dir=%s" % (tmp_path / "browser-profile")):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2})
    # (Not under tmp_path: a socket's path may not be that long.)
    temporary = tempfile.mkdtemp(prefix="cronpolicy-browser-")
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER, env=dict(
            os.environ, TMPDIR=temporary)), options=options)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    quit_driver = driver.quit

    def quit():
        try:
            quit_driver()
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
    driver.quit = quit
    return driver


def console_errors(driver):
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def until(condition, what, timeout=30.0):
    """Wait (bounded) until ``condition()`` is true.  An element the page
    replaced between finding it and reading it (it refreshes every second:
    StaleElementReferenceException) is looked for again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = condition()
        except Exception as error:
            if type(error).__name__ != "StaleElementReferenceException":
                raise
            found = None
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("not seen within %ss: %s" % (timeout, what))


def test_until_looks_again_for_an_element_the_page_replaced():
    """The browser test read an element the page had just replaced (its
    refresh every second) and failed, StaleElementReferenceException."""
    class StaleElementReferenceException(Exception):
        pass
    calls = []

    def condition():
        calls.append(1)
        if len(calls) == 1:
            raise StaleElementReferenceException("stale element reference")
        return "its text"
    assert until(condition, "the text", timeout=5) == "its text"
    with pytest.raises(ValueError):
        until(lambda: int("not a number"), "anything else", timeout=5)


def screenshot(driver, tmp_path, name):
    path = tmp_path / ("%s.png" % name)
    driver.save_screenshot(str(path))
    wanted = os.environ.get("CRONPOLICY_SCREENSHOTS")
    if wanted:
        os.makedirs(wanted, exist_ok=True)
        shutil.copy(path, os.path.join(wanted, path.name))
    return path


#: A small fleet for the pictures: (script, host, schedule, runtime in
#: minutes); every sixth run failed, every seventh was skipped by a window.
FLEET = [("publish-distro", "web1", "*/30 * * * *", 12), ("publish-distro", "web2", "15,45 * * * *", 12),
         ("sync-mirror", "mirror1", "*/10 * * * *", 4), ("sync-mirror", "mirror2", "5-59/10 * * * *", 4),
         ("cleanup-tmp", "web1", "7 * * * *", 2), ("cleanup-tmp", "web2", "37 * * * *", 2),
         ("backup-db", "db1", "20 */3 * * *", 55), ("nightly-report", "db1", "0 2 * * *", 40),
         ("rebuild-index", "search1", "50 */2 * * *", 35)]


def seed_fleet(dba):
    """FLEET's schedules and six hours of its history, times and all (an
    administrator may write them)."""
    import datetime
    from cronsim import CronSim
    now = dba.scalar("SELECT now()")
    for number, (name, host, expression, minutes) in enumerate(FLEET):
        dba.execute("INSERT INTO cronpolicy.script_schedule (name, host, schedule)"
                    " VALUES (%s, %s, %s)", (name, host, expression))
        starts = CronSim(expression, now - datetime.timedelta(hours=6))
        for index, start in enumerate(starts):
            end = start + datetime.timedelta(minutes=minutes * (0.8 + (index % 3) / 5))
            if end >= now:
                break
            kind = (index + number) % 7
            status = "skipped" if kind == 3 else "failed" if kind == 5 else "succeeded"
            dba.execute(
                "INSERT INTO cronpolicy.script_run (name, host, pid, status, started_at,"
                " finished_at, heartbeat_at, exit_code, decision, skip_reason)"
                " VALUES (%s, %s, 1, %s, %s, %s, %s, %s, %s, %s)",
                (name, host, status, start, start if status == "skipped" else end,
                 start if status == "skipped" else end,
                 {"succeeded": 0, "failed": 1}.get(status),
                 "in-window" if status == "skipped" else "run",
                 "window #7: release 4520" if status == "skipped" else None))


def test_the_page_in_a_real_browser(reader_env, pg_dsn, tmp_path):
    """No console errors; a run a script starts shows, then its end; an
    open rollout shows with what it waits for, then goes; a name holding
    markup is text; screenshots of the views."""
    from selenium.webdriver.common.by import By
    dba = DBA(pg_dsn)
    admin = make_env(tmp_path, pg_dsn)
    seed_fleet(dba)
    window = cli(admin, "window", "add", "--start", "+2h", "--duration", "40m",
                 "--reason", "release <i>4522</i>")
    assert window.returncode == 0, window.stderr
    runner = ScriptRunner(tmp_path, admin)
    runner.write("publish-distro", expected_runtime=600)
    stop = tmp_path / "stop-now"
    served = Server(reader_env, "--refresh", "1")
    job = runner.start("publish-distro", "--sleep", "60", "--until-file", str(stop))
    driver = browser(tmp_path)
    try:
        run_id = until(lambda: dba.scalar("SELECT id FROM cronpolicy.script_run"
                                          " WHERE status = 'running'"), "the run's start")
        driver.get(served.url)
        assert driver.find_elements(By.CSS_SELECTOR, 'g.row[data-host="mirror2"] path.start')
        bar = '[data-run="%d"][data-status="%%s"]' % run_id
        until(lambda: driver.find_elements(By.CSS_SELECTOR, bar % "running"),
              "the running run on the timeline")
        assert driver.find_elements(By.CSS_SELECTOR, bar % "predicted")
        assert "publish-distro" in until(lambda: driver.find_element(By.ID, "running").text,
                                         "the running table")
        assert console_errors(driver) == []

        began = cli(admin, "deploy", "begin", "--reason", "release <b>4521</b>", "--json")
        assert began.returncode == 0, began.stderr
        rollout_id = json.loads(began.stdout)["id"]
        article = '[data-rollout="%d"]' % rollout_id
        until(lambda: driver.find_elements(By.CSS_SELECTOR, article), "the open rollout")
        text = until(lambda: driver.find_element(By.CSS_SELECTOR, article).text, "its text")
        assert "release <b>4521</b>" in text and "waits for 1 run" in text
        assert "publish-distro" in text
        screenshot(driver, tmp_path, "serve")

        # A name with markup is text: no element is made of it, nothing runs.
        dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, status, finished_at)"
                    " VALUES (%s, 'web1', 1, 'succeeded', now())", (MARKUP_NAME,))
        label = 'g.row[data-name="%s"] .label' % MARKUP_NAME.replace('"', '\\"')
        until(lambda: driver.find_elements(By.CSS_SELECTOR, label), "the row of the markup")
        assert until(lambda: driver.find_element(By.CSS_SELECTOR, label).text,
                     "its label").startswith('<img src=x onerror="')
        assert not driver.find_elements(By.CSS_SELECTOR, "img")
        assert driver.title != "1"

        stop.write_text("")
        assert job.wait(timeout=30) == 0
        until(lambda: driver.find_elements(By.CSS_SELECTOR, bar % "succeeded"),
              "the run's end on the timeline")
        until(lambda: "nothing running is in its way" in driver.find_element(
            By.CSS_SELECTOR, article).text, "the rollout quiet")
        ended = cli(admin, "deploy", "end", str(rollout_id))
        assert ended.returncode == 0, ended.stderr
        until(lambda: not driver.find_elements(By.CSS_SELECTOR, article),
              "the rollout gone")
        assert "Open rollouts: none" in until(
            lambda: driver.find_element(By.ID, "rollouts").text, "the rollouts' text")

        driver.get(served.url + "slots?duration=40m&within=6h")
        assert driver.find_elements(By.CSS_SELECTOR, "article.slot")
        screenshot(driver, tmp_path, "serve-slots")
        driver.get(served.url + "script?name=publish-distro")
        assert until(lambda: driver.find_element(By.ID, "name").text,
                     "the script's name") == "publish-distro"
        screenshot(driver, tmp_path, "serve-script")
        assert console_errors(driver) == []
    finally:
        driver.quit()
        served.stop()
        if job.poll() is None:
            job.kill()
            job.wait(timeout=10)


def test_the_readme_example_serves_as_written(reader_env, tmp_path):
    """docs/releases.txt's "Watching the fleet" command, verbatim but for the DSN (this
    test's reader login) and the port (a free one)."""
    import shlex
    import socket
    from .test_readme import indented_blocks, section
    command = indented_blocks(section("Watching the fleet: cronpolicy serve"))[0]
    argv = shlex.split(command)
    assert argv[:2] == ["cronpolicy", "serve"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [reader_env["CRONPOLICY_DSN"] if word.startswith("postgresql://") else
            word.replace(":8080", ":%d" % port) for word in argv[2:]]
    env = dict(reader_env)
    server = Server.__new__(Server)
    server.process = subprocess.Popen([sys.executable, "-m", "cronpolicy", "serve"] + argv,
                                      env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
    try:
        line = server.process.stdout.readline()
        assert "http://127.0.0.1:%d/" % port in line, server.process.stderr.read()
        server.url = "http://127.0.0.1:%d/" % port
        status, _, body = server.get("/")
        assert status == 200 and "Open rollouts: none" in body
    finally:
        server.stop()


def test_without_the_web_extra_serve_says_how_to_get_it(reader_env):
    code = ("import sys; sys.modules['flask'] = None; from cronpolicy.tooling.cli import main;"
            " sys.exit(main(['serve']))")
    result = subprocess.run([sys.executable, "-c", code], env=reader_env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == exitcodes.USAGE
    [line] = result.stderr.strip().splitlines()
    assert "pip install 'cronpolicy[web]'" in line


def test_the_page_without_javascript(served, pg_dsn, tmp_path):
    """Everything static is drawn by the server; the page reloads itself."""
    from selenium.webdriver.common.by import By
    admin = make_env(tmp_path, pg_dsn)
    DBA(pg_dsn).execute("INSERT INTO cronpolicy.script_run (name, host, pid, status,"
                        " finished_at) VALUES ('sync-mirror', 'mirror1', 1, 'failed', now())")
    began = cli(admin, "deploy", "begin", "--reason", "release 4521", "--json")
    assert began.returncode == 0, began.stderr
    driver = browser(tmp_path, javascript=False)
    try:
        driver.get(served.url)
        # With scripts off the noscript's refresh is an element (else it is text).
        assert driver.find_elements(By.CSS_SELECTOR, 'noscript meta[http-equiv="refresh"]')
        assert "#1 full by" in until(lambda: driver.find_element(By.ID, "rollouts").text,
                                     "the rollouts' text")
        assert driver.find_elements(By.CSS_SELECTOR, 'rect.bar.failed')
        assert driver.find_elements(By.CSS_SELECTOR, "svg rect.rollout")
        assert console_errors(driver) == []
    finally:
        driver.quit()


def test_the_script_page_says_what_each_audited_change_changed(served, pg_dsn):
    """The audit table names the columns each change changed, old and new, as
    `cronpolicy audit` does; a change recorded with no reason shows '-', not None."""
    dba = DBA(pg_dsn)
    dba.execute("INSERT INTO cronpolicy.script_policy (name, enabled, reason)"
                " VALUES ('sync-mirror', false, 'disk <full>')")
    dba.execute("UPDATE cronpolicy.script_policy SET enabled = true WHERE name = 'sync-mirror'")
    status, _, body = served.get("/script?name=sync-mirror")
    assert status == 200, body
    audit = body[body.index("(the audit)"):body.index("runs and decisions")]
    assert "enabled False -&gt; True" in audit
    assert "new: name=sync-mirror, host=*, enabled=False" in audit
    assert ">None<" not in audit and "<td>-</td>" in audit
