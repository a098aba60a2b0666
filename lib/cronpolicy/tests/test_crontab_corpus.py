"""crontab wrap on real crontabs: the /etc/cron.d files of every Debian 12
package that ships one, Debian's /etc/crontab, crontab(5)'s example, and a
Launchpad-style application server crontab (data/crontabs/SOURCES.txt)."""

import glob
import os
import random

import pytest

from cronpolicy.tooling.crontab import Crontab, detect_system, unwrap, wrap_files
from cronpolicy.tooling.crontab.lines import parse_crontab, read_crontab, write_crontab

from .cronsim import cron_command, cron_split, make_stub, run_wrapped
from .test_crontab_names import SHELL_WORDS

DATA = os.path.join(os.path.dirname(__file__), "data", "crontabs")
PATHS = sorted(glob.glob(os.path.join(DATA, "*", "*")))
PROGRAM = "/usr/local/bin/cronpolicy"


def load(path):
    with open(path, "rb") as handle:
        text = read_crontab(handle.read())
    return Crontab(path, text, detect_system(path, text))


CRONTABS = [load(path) for path in PATHS if not path.endswith(".txt")]


def test_the_corpus_is_there():
    assert len(CRONTABS) >= 90
    assert sum(len(result.jobs) for result in wrap_files(CRONTABS)) >= 140


def test_formats_are_told_per_file():
    for crontab in CRONTABS:
        folder = os.path.basename(os.path.dirname(crontab.path))
        assert crontab.system == (folder in ("cron.d", "etc")), crontab.path


@pytest.mark.parametrize("crontab", CRONTABS, ids=lambda c: os.path.basename(c.path))
def test_each_file_round_trips_and_wraps_once(crontab):
    [result] = wrap_files([crontab], program=PROGRAM)
    assert unwrap(result.text, system=crontab.system) == crontab.text
    [again] = wrap_files([crontab._replace(text=result.text)], program=PROGRAM)
    assert again.text == result.text
    jobs = [entry for entry in parse_crontab(crontab.text, crontab.system) if entry.job]
    # The one warning a packaged crontab earns: a job that puts itself in the
    # background (atop's daily job ends in &), which the gate cannot see end.
    backgrounded = [entry.number for entry in jobs if entry.job.command.rstrip().endswith("&")
                    and not entry.job.command.rstrip().endswith("&&")]
    assert not result.foreign and not result.too_long
    assert [number for number, message in result.warnings
            if "in the background" in message] == backgrounded
    assert [message for _, message in result.warnings if "in the background" not in message] \
        == []
    assert len(result.jobs) == len(jobs)


def host_names(crontabs):
    """{(file, user, command): name} with every file installed on one host."""
    return {(result.crontab.path, job.user, job.command): job.name
            for result in wrap_files(crontabs) for job in result.jobs}


def test_names_are_unique_on_a_host_holding_every_file():
    names = host_names(CRONTABS)
    by_name = {}
    for (path, user, command), name in names.items():
        by_name.setdefault(name, set()).add((user, " ".join(command.split())))
    shared = {name: jobs for name, jobs in by_name.items() if len(jobs) > 1}
    assert not shared                   # one name, one job (perhaps on several lines)
    assert not set(by_name) & SHELL_WORDS


@pytest.mark.parametrize("seed", range(3))
def test_names_stay_when_lines_and_files_move(seed):
    before = host_names(CRONTABS)
    shuffler = random.Random(seed)
    moved = []
    for crontab in CRONTABS:
        lines = crontab.text.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        shuffler.shuffle(lines)
        moved.append(crontab._replace(text="".join(lines)))
    shuffler.shuffle(moved)
    # Moving a job's comment away from it changes what the comment names.
    explicit = {key for key in before if key[0].endswith("launchpad-style")}
    after = host_names(moved)
    assert {k: v for k, v in after.items() if k not in explicit} == \
        {k: v for k, v in before.items() if k not in explicit}


EXPECTED = {
    "certbot": "certbot", "php-common--php": "sessionclean", "anacron": "anacron",
    "e2fsprogs--e2scrub_all": "e2scrub_all_cron", "sysstat": "debian-sa1-1",
    "mailman3-web": "mailman3-web-manage-runjobs-minutely", "crontab": "run-parts-cron.hourly",
    "amavisd-new": "amavisd-new-cronjob-sa-sync", "logcheck": "logcheck-R",
    "dkim-rotate": "dkim-rotate-minor", "fcheck": "fcheck", "tiger": "tigercron",
    "recap": "recap-B", "awstats": "awstats-update", "sanoid": "sanoid",
    "desktop-autoloader": "desktop-autoloader", "cacti": "cacti-poller",
    "crontab.5-example": "daily.job", "openssh-known-hosts": "update-openssh-known-hosts",
    "launchpad-style": "process-job-source-IRosettaUploadJobSource",
}


def test_names_mean_the_job():
    first = {}
    for result in wrap_files(CRONTABS):
        if result.jobs:
            first.setdefault(os.path.basename(result.crontab.path), result.jobs[0].name)
    assert {key: first[key] for key in EXPECTED} == EXPECTED
    launchpad = [result for result in wrap_files(CRONTABS)
                 if result.crontab.path.endswith("launchpad-style")][0]
    names = {job.name for job in launchpad.jobs}
    assert {"publish-distro", "process-job-source-groups-MAIN", "garbo-daily", "librarian-gc",
            "send-bug-notifications", "expire-questions"} <= names


@pytest.mark.integration
def test_the_shell_receives_exactly_the_original_command(tmp_path):
    """Every job of the corpus, wrapped, then cut by (a model of) cron and
    run by /bin/sh: cronpolicy gets the command cron would have given the
    shell, and the same standard input."""
    program = make_stub(tmp_path)
    checked = 0
    for result in wrap_files(CRONTABS, program=program):
        original = {entry.number: entry for entry in
                    parse_crontab(result.crontab.text, result.crontab.system)}
        for entry in parse_crontab(result.text, result.crontab.system):
            if entry.job is None:
                continue
            command = cron_command(original[entry.number].job)
            argv, stdin = run_wrapped(cron_command(entry.job), tmp_path)
            head, expected_stdin = cron_split(command)
            assert argv[:3] == [b"run", write_crontab(entry.job.wrapped_name), b"--from-crontab"]
            assert argv[3:] == [b"--", b"/bin/sh", b"-c", head], (result.crontab.path, command)
            assert stdin == (expected_stdin or b"")
            checked += 1
    assert checked >= 140
