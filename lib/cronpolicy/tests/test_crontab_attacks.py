"""crontab wrap against what an attack on it found: each test failed before
its fix (issue 13's review)."""

import json
import os
import subprocess
import sys

import pytest

from cronpolicy import exitcodes
from cronpolicy.tooling.crontab import Crontab, job_name, name_files, wrap, wrap_files
from cronpolicy.tooling.crontab.lines import MAX_COMMAND_BYTES, parse_crontab, unwrap

from .cronsim import cron_command, cron_split
from .test_crontab import run_like_cron
from .test_crontab_files import cronpolicy


def names(text, system=False):
    [jobs] = name_files([Crontab("-", text, system)])
    return [job.name for job in jobs]


REPORT_SCRIPT = """\
import sys
from cronpolicy import CronScript

class Report(CronScript):
    def main(self):
        # What main() is promised, gated by a wrapper or not: its host, its settings.
        open(sys.argv[0] + ".ran", "a").write("ran on %s %s\\n" % (
            self.host, self.settings is not None))

if __name__ == "__main__":
    Report().run()
"""


def test_a_wrapped_cronscript_runs_once_under_the_wrappers_gate(script_env, dba, tmp_path):
    """It never ran: the wrapper and the script share the name (report), and
    the script found the wrapper's lock taken (exit 3)."""
    script = tmp_path / "report.py"
    script.write_text(REPORT_SCRIPT)
    program = os.path.join(os.path.dirname(sys.executable), "cronpolicy")
    line = "0 * * * * %s %s\n" % (sys.executable, script)
    wrapped = wrap(line, program=program)
    assert "run report --from-crontab" in wrapped
    [entry] = [entry for entry in parse_crontab(wrapped) if entry.job]
    result = run_like_cron(cron_command(entry.job).decode(), dict(script_env, SHELL="/bin/sh"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "report.py.ran").read_text() == "ran on testhost True\n"
    [run] = dba.runs()
    assert (run["name"], run["status"]) == ("report", "succeeded")


NAMED_REPORT_SCRIPT = """\
import os, sys
from cronpolicy import CronScript

class Report(CronScript):
    name = "report"

    def add_my_options(self):
        self.parser.add_argument("--daily", action="store_true")
        self.parser.add_argument("--weekly", action="store_true")

    def main(self):
        open(sys.argv[0] + ".ran", "a").write("ran as %s, a child would see %s\\n" % (
            self.name, os.environ.get("CRONPOLICY_GATED_BY")))

if __name__ == "__main__":
    Report().run()
"""


def test_a_wrapped_cronscript_named_otherwise_is_one_run_under_the_wrappers_name(
        script_env, dba, tmp_path):
    """Issue 26.11: wrap names the two jobs report-daily and report-weekly;
    the script, named report, gated itself again: one invocation made two
    run rows, took two locks and obeyed two sets of policy rows.  It takes
    the wrapper's name now, and runs under the wrapper's gate alone."""
    script = tmp_path / "report.py"
    script.write_text(NAMED_REPORT_SCRIPT)
    program = os.path.join(os.path.dirname(sys.executable), "cronpolicy")
    wrapped = wrap("0 2 * * * %s %s --daily\n0 3 * * 0 %s %s --weekly\n"
                   % (sys.executable, script, sys.executable, script), program=program)
    [daily, _] = [entry for entry in parse_crontab(wrapped) if entry.job]
    assert " run report-daily --from-crontab " in daily.text
    env = dict(script_env, SHELL="/bin/sh")
    # A row for the script's own name is not the job's: it does not stop it.
    dba.execute("INSERT INTO cronpolicy.script_policy (name, enabled, reason)"
                " VALUES ('report', false, 'not this job')")
    result = run_like_cron(cron_command(daily.job).decode(), env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "report.py.ran").read_text() == \
        "ran as report-daily, a child would see None\n"
    assert [(run["name"], run["status"]) for run in dba.runs()] == [
        ("report-daily", "succeeded")]
    # The job's own row does.
    dba.execute("INSERT INTO cronpolicy.script_policy (name, enabled, reason)"
                " VALUES ('report-daily', false, 'the job')")
    result = run_like_cron(cron_command(daily.job).decode(), env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "report.py.ran").read_text().count("ran as") == 1
    assert [(run["name"], run["status"]) for run in dba.runs()] == [
        ("report-daily", "succeeded"), ("report-daily", "skipped")]


@pytest.mark.integration
def test_wrap_warns_about_a_command_that_puts_itself_in_the_background(tmp_path):
    """Issue 26.11: the gate sees such a command's shell end at once."""
    crontab = tmp_path / "mine"
    crontab.write_text("0 * * * * nohup /srv/bin/sync >/dev/null 2>&1 &\n"
                       "1 * * * * /srv/bin/a && /srv/bin/b &> /dev/null\n"
                       "2 * * * * sh -c '/srv/bin/c & /srv/bin/d'\n"
                       "3 * * * * echo 'a & b' 2>&1\n")
    code, out, err = cronpolicy(tmp_path, "wrap", str(crontab))
    assert code == exitcodes.OK, err
    warned = [line for line in err.splitlines() if "in the background" in line]
    assert [line.split(": ")[1] for line in warned] == ["%s, line 1" % crontab,
                                                        "%s, line 3" % crontab]


def test_the_script_gates_itself_when_the_wrapper_is_not_its_ancestor(script_env, dba,
                                                                      tmp_path):
    script = tmp_path / "report.py"
    script.write_text(REPORT_SCRIPT)
    env = dict(script_env, CRONPOLICY_GATED_BY="report", CRONPOLICY_GATED_PID="1")
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    [run] = dba.runs()
    assert run["status"] == "succeeded"


@pytest.mark.parametrize("name", ["50%off", "a\\%b", "-x", "--", "web*"])
def test_a_name_cron_or_cronpolicy_run_would_misread_is_refused(name):
    text = "# cronpolicy: name=%s\n* * * * * /srv/sale.sh\n" % name
    [result] = wrap_files([Crontab("-", text, False)])
    assert "run sale --from-crontab" in result.text
    assert result.warnings and "not used" in result.warnings[0][1]


@pytest.mark.integration
@pytest.mark.parametrize("program", ["/opt/100%/cronpolicy", "/opt/a\nb/cronpolicy",
                                     "/opt/bin/cp", "", "/opt/x\\/cronpolicy"])
def test_a_program_cron_would_misread_is_refused(tmp_path, program):
    code, out, err = cronpolicy(tmp_path, "wrap", "--program", program,
                                stdin=b"* * * * * /srv/sale.sh\n")
    assert code == exitcodes.USAGE and out == "" and "--program" in err
    assert len(err.strip().splitlines()) == 1


def test_derived_names_never_collide_across_programs():
    text = ("0 1 * * * /srv/bin/backup.sh db full\n0 2 * * * /srv/bin/backup.sh web\n"
            "0 3 * * * /srv/bin/backup-db.sh --full\n0 4 * * * /srv/bin/backup-db.sh --incr\n"
            "0 5 * * * '/srv/foo' bar-baz\n0 6 * * * /srv/foo-bar baz\n")
    found = names(text)
    assert len(set(found)) == len(found) == 6


def test_a_long_script_name_gives_a_name_cronpolicy_run_accepts():
    from cronpolicy.matching import name_problem
    [name] = names("* * * * * /srv/%s.py --x\n" % ("a" * 300))
    assert name_problem(name) is None and len(name) <= 120


def test_two_comments_giving_one_name_are_warned_about():
    text = ("# cronpolicy: name=report\n0 1 * * * /srv/a\n"
            "# cronpolicy: name=report\n0 2 * * * /srv/b\n")
    [result] = wrap_files([Crontab("-", text, False)])
    assert [job.name for job in result.jobs] == ["report", "report"]
    assert len([w for w in result.warnings if "share one lock" in w[1]]) == 2


@pytest.mark.integration
def test_a_rename_that_fails_half_way_puts_everything_back(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_text("* * * * * /srv/bin/one\n")
    second.write_text("* * * * * /srv/bin/two\n")
    (tmp_path / ".b.cronpolicy-orig").mkdir()
    code, _, err = cronpolicy(tmp_path, "wrap", "--in-place", str(first), str(second))
    assert code == exitcodes.USAGE and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert first.read_text() == "* * * * * /srv/bin/one\n"
    assert second.read_text() == "* * * * * /srv/bin/two\n"
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


@pytest.mark.integration
def test_output_dir_does_not_follow_a_link_beneath_it(tmp_path):
    source = tmp_path / "src" / "crontab"
    source.parent.mkdir()
    source.write_text("* * * * * /srv/bin/one\n")
    victim = tmp_path / "victim"
    victim.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(str(victim), str(out / str(tmp_path).lstrip("/").split("/")[0]))
    code, _, err = cronpolicy(tmp_path, "wrap", "--output-dir", str(out), str(source))
    assert code == exitcodes.USAGE and "symbolic link" in err
    assert os.listdir(str(victim)) == []


@pytest.mark.integration
@pytest.mark.parametrize("owned", ["the directory", "a directory beneath it"])
def test_output_dir_another_user_may_change_is_refused(tmp_path, owned):
    """--output-dir DIR owned by another user (or a directory beneath it
    made by one): its owner could swap a directory on the way for a link
    between the check for links and the rename, and have root write a
    crontab wherever it points.  Refused as a state directory is: one
    line, exit 2, nothing written."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to give a directory to another user")
    source = tmp_path / "src" / "crontab"
    source.parent.mkdir()
    source.write_text("* * * * * /srv/bin/one\n")
    out = tmp_path / "out"
    out.mkdir()
    other = 65534
    if owned == "the directory":
        os.chown(str(out), other, other)
    else:
        beneath = out / str(source.parent).lstrip("/").split("/")[0]
        beneath.mkdir()
        os.chown(str(beneath), other, other)
    code, _, err = cronpolicy(tmp_path, "wrap", "--output-dir", str(out), str(source))
    assert code == exitcodes.USAGE, err
    assert len(err.strip().splitlines()) == 1 and "--output-dir" in err, err
    assert not [name for _, _, names in os.walk(str(out)) for name in names]


@pytest.mark.integration
def test_crontab_commands_need_no_configuration(tmp_path):
    env = dict(os.environ, CRONPOLICY_DSN="", CRONPOLICY_CONFIG=str(tmp_path / "missing"))
    result = subprocess.run([sys.executable, "-m", "cronpolicy", "crontab", "wrap"],
                            input=b"* * * * * /srv/bin/one\n", env=env, capture_output=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert b"cronpolicy run one" in result.stdout


@pytest.mark.integration
def test_a_user_crontab_is_never_taken_for_a_system_one(tmp_path):
    mine = tmp_path / "mine"
    mine.write_text("30 2 * * * backup --config ~/.backup.conf\n")
    code, out, _ = cronpolicy(tmp_path, "names", "--json", str(mine))
    [row] = json.loads(out)["jobs"]
    assert (row["format"], row["name"], row["user"]) == ("user", "backup", None)


def test_the_same_command_keeps_one_name_with_wrapped_lines_and_comments():
    wrapped = wrap("0 * * * * certbot renew\n", program="cronpolicy")
    assert names(wrapped + "30 * * * * certbot renew\n") == ["certbot", "certbot"]
    commented = "# cronpolicy: name=renew\n0 * * * * certbot renew\n30 * * * * certbot renew\n"
    assert names(commented) == ["renew", "renew"]


def test_names_says_the_name_a_hand_written_line_really_has():
    text = "# cronpolicy: name=nightly\n0 * * * * cronpolicy run handmade -- /srv/x\n"
    [result] = wrap_files([Crontab("-", text, False)])
    [job] = result.jobs
    assert job.name == "handmade" and result.text == text
    assert any("keeps its name handmade" in message for _, message in result.warnings)


def test_the_limit_counts_the_carriage_return_cron_keeps():
    base = "0 * * * * /srv/bin/job "
    prefix = len(wrap(base + "x\n").split("* * * * ", 1)[1]) - len("x\n") + 1
    for size in range(900, 1000):
        line = base + "x" * size + "\r\n"
        [result] = wrap_files([Crontab("-", line, False)])
        [entry] = [entry for entry in parse_crontab(result.text) if entry.job]
        assert (len(cron_command(entry.job)) <= MAX_COMMAND_BYTES) or result.text == line
    assert prefix > 0


def test_a_name_comment_with_a_second_word_says_what_it_ignored():
    [result] = wrap_files([Crontab("-", "# cronpolicy: name=a b\n* * * * * /srv/x\n", False)])
    assert "run a --from-crontab" in result.text
    [(_, message)] = result.warnings
    assert "ignored 'b'" in message and "not used" not in message


@pytest.mark.integration
def test_no_backup_writes_a_file_whose_name_ends_like_a_backup(tmp_path):
    path = tmp_path / "x.cronpolicy-orig"
    path.write_text("* * * * * /srv/bin/one\n")
    code, _, err = cronpolicy(tmp_path, "wrap", "--in-place", "--no-backup", str(path))
    assert code == exitcodes.OK, err
    assert "cronpolicy run one" in path.read_text()


def test_commands_that_differ_in_spacing_are_different_jobs():
    assert len(set(names("* * * * * printf 'a  b'\n* * * * * printf 'a b'\n"))) == 2


@pytest.mark.integration
def test_closed_stdin_and_a_full_disk_are_one_line(tmp_path):
    config = tmp_path / "none.conf"
    config.write_text("[cronpolicy]\n")
    env = dict(os.environ, CRONPOLICY_CONFIG=str(config))
    closed = subprocess.run(
        [sys.executable, "-c", "import os, sys; os.close(0); from cronpolicy.tooling.cli "
                               "import main; sys.exit(main(['crontab', 'wrap']))"],
        env=env, capture_output=True, text=True, timeout=60)
    assert closed.returncode == exitcodes.USAGE and "Traceback" not in closed.stderr
    with open("/dev/full", "wb") as full:
        result = subprocess.run([sys.executable, "-m", "cronpolicy", "crontab", "wrap"],
                                input=b"* * * * * /srv/bin/one\n", stdout=full,
                                stderr=subprocess.PIPE, env=env, timeout=60)
    # A full disk is no bad usage (it said 2): see test_output_faults.
    assert result.returncode == exitcodes.OUTPUT_FAILED and b"Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("text, why", [
    ("* * * * * /srv/bin/one \x00 two\n", "NUL"),
    ("SHELL=/usr/bin/fish\n* * * * * /srv/bin/one\n", "no POSIX shell"),
    ("SHELL=\"/bin/csh\"\n* * * * * /srv/bin/one\n", "no POSIX shell")])
def test_lines_a_wrap_would_break_are_left_and_said(text, why):
    [result] = wrap_files([Crontab("-", text, False)])
    assert result.text == text
    assert any(why in message for _, message in result.warnings)
    assert unwrap(result.text) == text


def test_a_posix_shell_setting_still_wraps():
    assert "cronpolicy run one" in wrap("SHELL=/bin/bash\n* * * * * /srv/bin/one\n")


@pytest.mark.parametrize("command, name", [
    ("$PHP /srv/x/report.php", "report"),
    ("$(which php) /srv/y.php", "y"),
    ("php /var/www/shop/artisan schedule:run", "shop-artisan-schedule-run"),
    ("cd /srv/app && bundle exec rake sitemap:refresh", "rake-sitemap-refresh"),
    ("docker exec app php artisan queue:work", "artisan-queue-work"),
    ("docker compose exec -T web python manage.py clearsessions", "manage-clearsessions"),
    ("npm run cron:daily", "npm-cron-daily"),
    ("uv run --python 3.11 /srv/job.py", "job"),
    ("pgrep -f myd || /srv/bin/myd", "myd"),
    ("if ! pgrep -f worker.py; then /srv/bin/worker.py; fi", "worker"),
    ("/opt/backup/bin/backup.sh", "backup"),
    ("node /srv/api/dist/jobs/index.js", "api-index"),
    ("systemctl start backup.service", "backup"),
    ("wget -q -O - https://example.com/wp-cron.php?doing_wp_cron", "wp-cron"),
    ("/usr/bin/time -v /srv/bin/timed", "timed"),
    ("setsid /srv/bin/detached", "detached"),
    ("wp cron event run --due-now", "wp-cron"),
])
def test_names_of_web_application_jobs(command, name):
    assert job_name(command) == name


def test_apps_on_one_host_are_told_apart_by_their_directory_or_site():
    text = ("* * * * * cd /srv/shop && php artisan schedule:run\n"
            "* * * * * cd /srv/blog && php artisan schedule:run\n"
            "*/5 * * * * wget -q -O - https://shop.example/wp-cron.php\n"
            "*/5 * * * * wget -q -O - https://blog.example/wp-cron.php\n")
    assert names(text) == ["artisan-schedule-run-shop", "artisan-schedule-run-blog",
                           "wp-cron-shop.example", "wp-cron-blog.example"]


def test_the_job_with_nothing_of_its_own_keeps_the_plain_name():
    [user, system] = name_files([Crontab("/home/me/crontab", "0 3 * * * certbot renew\n", False),
                                 Crontab("/etc/cron.d/certbot", "0 4 * * * root certbot renew\n",
                                         True)])
    assert (user[0].name, system[0].name) == ("certbot", "certbot-root")


def test_cron_split_model_agrees_on_an_escaped_percent():
    assert cron_split(b"echo 50\\% done%in") == (b"echo 50% done", b"in\n")
