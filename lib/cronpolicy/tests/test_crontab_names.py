"""Issue 13.4-5: crontab jobs are named after the program they really run,
uniquely across a host, in a way that does not change when lines move."""

import random

import pytest

from cronpolicy.tooling.crontab import Crontab, name_files, wrap, wrap_files
from cronpolicy.tooling.crontab.names import job_name

# (command, the job's name): every guard, wrapper and bit of set-up the
# issue lists, and the cases that named 30 of 86 real files wrongly.
NAMED = [
    ("test -x /usr/bin/certbot && certbot -q renew", "certbot"),
    ("[ -x /usr/lib/php/sessionclean ] && /usr/lib/php/sessionclean", "sessionclean"),
    ("if [ -x /usr/sbin/backupninja ]; then /usr/sbin/backupninja; fi", "backupninja"),
    ("[ -x /etc/init.d/anacron ] && if [ ! -d /run/systemd/system ]; then "
     "/usr/sbin/invoke-rc.d anacron start >/dev/null; fi", "anacron"),
    ("command -v debian-sa1 > /dev/null && debian-sa1 1 1", "debian-sa1"),
    ("source /etc/profile; /srv/bin/report", "report"),
    (". /etc/default/x && export A=1 && umask 022 && /srv/bin/report", "report"),
    ("cd /srv/app && ./scripts/sync_mirror.py -v", "sync_mirror"),
    ("LPCONFIG=production /srv/cronscripts/garbo-daily.py -q", "garbo-daily"),
    ("sudo -u www-data php /var/www/site/bin/purge.php", "purge"),
    ("sudo -H -u www-data -- /srv/bin/purge", "purge"),
    ("su -c '/srv/bin/purge --all' www-data", "purge"),
    ("su - postgres -c 'vacuumdb --all --analyze'", "vacuumdb"),
    ("su www-data -s /bin/sh -c \"/srv/bin/purge\"", "purge"),
    ("timeout 2h /srv/bin/long-job", "long-job"),
    ("timeout -s KILL -k 30s 2h /srv/bin/long-job", "long-job"),
    ("flock -n /var/lock/x.lock /srv/bin/publish", "publish"),
    ("flock -xn -w 10 /var/lock/x.lock /srv/bin/publish", "publish"),
    ("flock /var/lock/x.lock -c '/srv/bin/publish --all'", "publish"),
    ("nice -n 19 /srv/bin/reindex", "reindex"),
    ("nice -19 /srv/bin/reindex", "reindex"),
    ("ionice -c3 nice -n10 /srv/bin/reindex", "reindex"),
    ("ionice -c 2 -n 7 /srv/bin/reindex", "reindex"),
    ("chronic /srv/bin/quiet-job", "quiet-job"),
    ("run-one /srv/bin/only-one", "only-one"),
    ("setlock -n /var/lock/x /srv/bin/only-one", "only-one"),
    ("envdir /etc/app/env /srv/bin/worker-job", "worker-job"),
    ("sleep 120 && /srv/bin/later", "later"),
    ("sleep $((RANDOM \\% 3600)); /srv/bin/later", "later"),   # cron reads \\% as %
    ("nohup /srv/bin/background &", "background"),
    ("env LANG=C TZ=UTC /usr/bin/backup.sh", "backup"),
    ("env -i PATH=/bin /srv/bin/clean-env", "clean-env"),
    ("sh -c '/srv/bin/inner --x'", "inner"),
    ("bash -lc 'cd /srv && ./bin/inner'", "inner"),
    ("/bin/bash -e -c \"exec /srv/bin/inner\"", "inner"),
    ("python3 -u /srv/cron/report.py --date x", "report"),
    ("/usr/bin/python3 -m lp.scripts.rebuild", "lp.scripts.rebuild"),
    ("php -q -d memory_limit=1G /var/www/site/cron/digest.php", "digest"),
    ("perl -e 'sleep int(rand(43200))' && certbot renew", "certbot"),
    ("/usr/bin/perl /usr/share/pnopaste/bin/expired_delete.pl > /dev/null", "expired_delete"),
    ("java -Xmx1g -jar /opt/tools/indexer.jar --full", "indexer"),
    ("$HOME/bin/daily.job >> $HOME/tmp/out 2>&1", "daily.job"),
    ("timeout 5m \"${BINDIR}\"/recap -B", "recap"),
    ("test -x /usr/sbin/tigercron && { [ -r \"$D\" ] && . \"$D\" ; nice -n$N /usr/sbin/tigercron -q ; }",
     "tigercron"),
    ("[ -x /x ] && { sleep `od -An -N1 -tu1 /dev/urandom`; /usr/sbin/update-known-hosts; }",
     "update-known-hosts"),
    ("exec /srv/bin/replace-shell", "replace-shell"),
    ("time /srv/bin/timed", "timed"),
    ("! /srv/bin/negated", "negated"),
    ("( cd / && run-parts --report /etc/cron.daily )", "run-parts"),
    ("/usr/lib/fwanalog/cron 2> /dev/null", "fwanalog-cron"),
    ("/usr/share/awstats/tools/update.sh", "awstats-update"),
    ("echo 'hello' | mail -s hi root", "mail"),
    ("echo \"only a builtin\"", "echo"),
    ("test -x /usr/sbin/anacron", "anacron"),
    ("mail -s \"It's 10pm\" joe%Joe,%%Where are your kids?%", "mail"),
    ("/srv/bin/job 50\\% done", "job"),
    ("true", "true"),
    ("''", "job"),
]


@pytest.mark.parametrize("command, name", NAMED)
def test_the_job_is_the_program_past_guards_wrappers_and_setup(command, name):
    assert job_name(command) == name


SHELL_WORDS = {"test", "if", "then", "command", "source", "export", "umask", "cd", "[", "sudo",
               "su", "timeout", "flock", "nice", "ionice", "chronic", "run-one", "setlock",
               "envdir", "sleep", "nohup", "env", "sh", "bash", "www-data", "2h", "perl"}


@pytest.mark.parametrize("command, name", NAMED)
def test_no_name_is_a_shell_word_or_a_wrapper(command, name):
    assert job_name(command) not in SHELL_WORDS - {"echo"}


def names_of(*files, system=False):
    crontabs = [Crontab("/tmp/f%d" % index, text, system) for index, text in enumerate(files)]
    return [[(job.name, job.command) for job in jobs] for jobs in name_files(crontabs)]


LAUNCHPAD = """\
*/5 * * * * nice -n 17 /srv/lp/cronscripts/process-job-source.py -q IRosettaUploadJobSource
*/5 * * * * nice -n 17 /srv/lp/cronscripts/process-job-source.py -q IMembershipNotificationJobSource
* * * * * nice -n 17 /srv/lp/cronscripts/process-job-source.py -q IPersonMergeJobSource
0 * * * * /srv/lp/cronscripts/garbo-hourly.py -q
"""


def test_the_same_program_is_told_apart_by_its_distinguishing_argument():
    [jobs] = names_of(LAUNCHPAD)
    assert [name for name, _ in jobs] == [
        "process-job-source-IRosettaUploadJobSource",
        "process-job-source-IMembershipNotificationJobSource",
        "process-job-source-IPersonMergeJobSource", "garbo-hourly"]


@pytest.mark.parametrize("seed", range(5))
def test_names_do_not_change_when_lines_move(seed):
    """They were numbered by line order: reordering the file and wrapping
    again attached policies to different jobs."""
    lines = LAUNCHPAD.splitlines(keepends=True) + [
        "0 1 * * * /srv/bin/backup --full\n", "0 2 * * * /srv/bin/backup --incremental\n",
        "0 3 * * * /srv/bin/backup\n", "5 * * * * /srv/bin/backup --full\n"]
    before = dict((command, name) for name, command in names_of("".join(lines))[0])
    random.Random(seed).shuffle(lines)
    after = dict((command, name) for name, command in names_of("".join(lines))[0])
    assert after == before
    assert before["/srv/bin/backup"] == "backup"
    assert before["/srv/bin/backup --full"] == "backup-full"


def test_the_same_command_on_two_schedules_is_one_job():
    [jobs] = names_of("@reboot /usr/sbin/ldap2bind\n@hourly /usr/sbin/ldap2bind\n")
    assert [name for name, _ in jobs] == ["ldap2bind", "ldap2bind"]


def test_jobs_alike_in_every_word_get_a_stable_hash():
    text = "0 * * * * /usr/bin/rnews -U\n5 * * * * rnews -U\n"
    [jobs] = names_of(text)
    names = [name for name, _ in jobs]
    assert len(set(names)) == 2 and all(name.startswith("rnews-") for name in names)
    [again] = names_of("".join(reversed(text.splitlines(keepends=True))))
    assert sorted(name for name, _ in again) == sorted(names)


def test_names_are_unique_across_all_files_of_a_host():
    """8 unrelated jobs from 8 packages were all called `test`, and shared
    one lock, one estimate and one `cronpolicy disable test`."""
    files = ["0 * * * * root test -x /usr/sbin/tool%d && /usr/sbin/tool%d --run\n" % (n, n)
             for n in range(8)]
    files += ["0 * * * * root [ -x /usr/bin/certbot ] && /usr/bin/certbot renew\n",
              "0 */12 * * * root test -x /usr/bin/certbot && certbot -q renew\n"]
    names = [name for jobs in names_of(*files, system=True) for name, _ in jobs]
    assert len(names) == len(set(names)) == 10
    assert "tool3" in names and "certbot" in names


def test_the_user_field_tells_apart_the_same_command_for_two_users():
    text = ("0 * * * * debian-systraq command -v st_snapshot >/dev/null && st_snapshot\n"
            "0 * * * * root command -v st_snapshot >/dev/null && ST_MODE=root st_snapshot\n")
    [jobs] = names_of(text, system=True)
    assert [name for name, _ in jobs] == ["st_snapshot-debian-systraq", "st_snapshot-root"]


def test_an_explicit_name_comment_is_honoured_and_kept():
    text = ("# cronpolicy: name=publish-distro\n"
            "3 * * * * flock -n /var/lock/p.lock /srv/lp/cronscripts/publish-ftpmaster.py -v\n"
            "0 * * * * /srv/lp/cronscripts/publish-ftpmaster.py --other\n")
    wrapped = wrap(text, program="cronpolicy")
    lines = wrapped.splitlines()
    assert lines[0] == "# cronpolicy: name=publish-distro"
    assert "cronpolicy run publish-distro --from-crontab" in lines[1]
    assert "cronpolicy run publish-ftpmaster --from-crontab" in lines[2]
    assert wrap(wrapped, program="cronpolicy") == wrapped


def test_a_name_comment_added_later_renames_the_wrapped_job():
    wrapped = wrap("0 * * * * /srv/bin/job\n", program="cronpolicy")
    renamed = wrap("# cronpolicy: name=nightly-report\n" + wrapped, program="cronpolicy")
    assert "cronpolicy run nightly-report --from-crontab" in renamed
    assert wrap(renamed, program="cronpolicy") == renamed


@pytest.mark.parametrize("comment, problem", [
    ("# cronpolicy: name=", "must not be empty"), ("# cronpolicy: name=web*", "pattern"),
    ("# cronpolicy: nmae=x", "ignored 'nmae=x'"), ("# cronpolicy:", "no name=NAME"),
    ("# cronpolicy: name=" + "x" * 300, "at most 255")])
def test_a_bad_name_comment_is_a_warning_and_the_name_is_derived(comment, problem):
    [result] = wrap_files([Crontab("-", comment + "\n0 * * * * /srv/bin/job\n", False)])
    assert "cronpolicy run job --from-crontab" in result.text
    [(number, message)] = result.warnings
    assert number == 2 and problem in message


def test_a_comment_not_just_above_the_job_names_nothing():
    text = "# cronpolicy: name=special\n\n0 * * * * /srv/bin/job\n"
    assert "cronpolicy run job --from-crontab" in wrap(text)


def test_already_wrapped_names_are_kept_and_taken():
    first = wrap("0 * * * * /srv/bin/job --a\n", program="cronpolicy")
    assert "run job --from" in first
    both = wrap(first + "5 * * * * /srv/bin/job --b\n", program="cronpolicy")
    assert "run job --from" in both and "run job-b --from" in both


def test_a_hand_written_cronpolicy_run_line_is_left_and_its_name_taken():
    text = ("0 * * * * /usr/local/bin/cronpolicy run job --interruptible -- /srv/bin/job\n"
            "5 * * * * /srv/bin/job --other\n")
    wrapped = wrap(text, program="cronpolicy")
    assert wrapped.splitlines()[0] == text.splitlines()[0]
    assert "run job-other --from-crontab" in wrapped
