"""Issue 13.5: `cronpolicy crontab wrap|unwrap|names` over all the crontabs
of a host at once, through the real command: in place with a backup, into
a directory, never half-written, never through a symbolic link."""

import json
import os
import stat
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from cronpolicy import exitcodes

CRON_D_A = ("SHELL=/bin/sh\n"
            "0 * * * * root test -x /usr/bin/certbot && certbot -q renew\n"
            "*/5 * * * * root [ -x /usr/sbin/tool ] && /usr/sbin/tool --a\n")
CRON_D_B = ("30 1 * * * www-data test -x /usr/sbin/tool && /usr/sbin/tool --b\n"
            "# cronpolicy: name=nightly-export\n"
            "0 3 * * * www-data /srv/bin/export --all\n")
USER_CRONTAB = "15 * * * * /srv/bin/publish-distro --all\n@reboot /srv/bin/tool\n"

#: Every test here runs the real command in a process.
pytestmark = pytest.mark.integration


def cronpolicy(tmp_path, *argv, stdin=b""):
    config = tmp_path / "none.conf"
    config.write_text("[cronpolicy]\n")
    env = dict(os.environ, CRONPOLICY_CONFIG=str(config), XDG_STATE_HOME=str(tmp_path / "state"))
    result = subprocess.run([sys.executable, "-m", "cronpolicy", "crontab"] + list(argv),
                            input=stdin, env=env, capture_output=True, timeout=60)
    return result.returncode, result.stdout.decode("utf-8", "replace"), \
        result.stderr.decode("utf-8", "replace")


@pytest.fixture
def host(tmp_path):
    """A host's crontabs: two files in a cron.d and a user crontab."""
    cron_d = tmp_path / "etc" / "cron.d"
    cron_d.mkdir(parents=True)
    (cron_d / "a").write_text(CRON_D_A)
    (cron_d / "b").write_text(CRON_D_B)
    os.chmod(cron_d / "b", 0o600)
    (tmp_path / "mine").write_text(USER_CRONTAB)
    return [str(cron_d / "a"), str(cron_d / "b"), str(tmp_path / "mine")]


def read(path):
    with open(path, "rb") as handle:
        return handle.read()


def names_in(text):
    return [line.split(" run ", 1)[1].split()[0] for line in text.splitlines() if " run " in line]


def test_wrap_in_place_names_uniquely_across_files_and_keeps_backups(tmp_path, host):
    code, out, err = cronpolicy(tmp_path, "wrap", "--in-place", "--program", "/usr/bin/cronpolicy",
                                *host)
    assert code == exitcodes.OK, err
    wrapped = [read(path).decode() for path in host]
    names = [name for text in wrapped for name in names_in(text)]
    assert names == ["certbot", "tool-a", "tool-b", "nightly-export", "publish-distro", "tool"]
    assert "* root /usr/bin/cronpolicy run certbot --from-crontab -- " in wrapped[0]
    assert "# cronpolicy: name=nightly-export\n" in wrapped[1]
    for path, original in zip(host, (CRON_D_A, CRON_D_B, USER_CRONTAB)):
        backup = os.path.join(os.path.dirname(path), "." + os.path.basename(path)
                              + ".cronpolicy-orig")
        assert read(backup) == original.encode()
        assert stat.S_IMODE(os.stat(backup).st_mode) == stat.S_IMODE(os.stat(path).st_mode)
        assert "wrote %s" % path in out
    assert stat.S_IMODE(os.stat(host[1]).st_mode) == 0o600


def test_wrapping_again_changes_nothing_and_touches_nothing(tmp_path, host):
    cronpolicy(tmp_path, "wrap", "--in-place", *host)
    before = [(read(path), os.stat(path).st_ino, os.stat(path).st_mtime_ns) for path in host]
    code, out, err = cronpolicy(tmp_path, "wrap", "--in-place", *host)
    assert code == exitcodes.OK, err
    assert [(read(path), os.stat(path).st_ino, os.stat(path).st_mtime_ns)
            for path in host] == before
    assert out.count("unchanged") == 3


def test_unwrap_in_place_restores_every_file_byte_for_byte(tmp_path, host):
    originals = [read(path) for path in host]
    cronpolicy(tmp_path, "wrap", "--in-place", "--no-backup", *host)
    assert not any(name.endswith(".cronpolicy-orig") for name in os.listdir(
        os.path.dirname(host[0])))
    code, _, err = cronpolicy(tmp_path, "unwrap", "--in-place", *host)
    assert code == exitcodes.OK, err
    assert [read(path) for path in host] == originals


def test_output_dir_mirrors_the_paths_and_leaves_the_sources(tmp_path, host):
    originals = [read(path) for path in host]
    out_dir = tmp_path / "out"
    code, out, err = cronpolicy(tmp_path, "wrap", "--output-dir", str(out_dir), *host)
    assert code == exitcodes.OK, err
    assert [read(path) for path in host] == originals
    for path in host:
        target = str(out_dir) + os.path.abspath(path)
        assert b"cronpolicy run" in read(target)
        assert "wrote %s" % target in out
    assert stat.S_IMODE(os.stat(str(out_dir) + host[1]).st_mode) == 0o600


def test_several_files_need_a_destination(tmp_path, host):
    originals = [read(path) for path in host]
    code, out, err = cronpolicy(tmp_path, "wrap", *host)
    assert code == exitcodes.USAGE and out == ""
    assert len(err.strip().splitlines()) == 1 and "--in-place or --output-dir" in err
    assert [read(path) for path in host] == originals


def test_a_symbolic_link_is_refused_and_nothing_is_written(tmp_path, host):
    target = tmp_path / "elsewhere"
    target.write_text(CRON_D_A)
    link = os.path.join(os.path.dirname(host[0]), "link")
    os.symlink(str(target), link)
    originals = [read(path) for path in host]
    code, _, err = cronpolicy(tmp_path, "wrap", "--in-place", *(host + [link]))
    assert code == exitcodes.USAGE and "symbolic link" in err
    assert [read(path) for path in host] == originals and read(str(target)) == CRON_D_A.encode()


def test_a_link_planted_where_the_backup_goes_is_refused_not_followed(tmp_path, host):
    """Neither followed nor replaced (issue 26.1: only a plain file is ever
    replaced; test_plain_files.py has every other kind)."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    backup = os.path.join(os.path.dirname(host[0]), ".a.cronpolicy-orig")
    os.symlink(str(victim), backup)
    code, _, err = cronpolicy(tmp_path, "wrap", "--in-place", host[0])
    assert code == exitcodes.USAGE and "symbolic link" in err, err
    assert victim.read_text() == "precious\n" and read(host[0]) == CRON_D_A.encode()
    assert os.readlink(backup) == str(victim)


def test_a_failed_write_changes_nothing(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = tmp_path / "a" / "crontab", tmp_path / "b" / "crontab"
    first.write_text(USER_CRONTAB)
    second.write_text(USER_CRONTAB)
    out_dir = tmp_path / "out"
    blocked = out_dir / str(tmp_path).lstrip("/") / "b"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where a directory must go\n")
    code, _, err = cronpolicy(tmp_path, "wrap", "--output-dir", str(out_dir), str(first),
                              str(second))
    assert code == exitcodes.USAGE and "nothing was changed" in err
    assert len(err.strip().splitlines()) == 1
    written = [os.path.join(folder, name) for folder, _, names in os.walk(str(out_dir))
               for name in names]
    assert written == [str(blocked)]


def test_an_unreadable_file_is_one_line(tmp_path):
    code, out, err = cronpolicy(tmp_path, "names", str(tmp_path / "missing"))
    assert code == exitcodes.USAGE and "cannot read" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_file_that_never_ends_or_is_far_too_long_is_one_line(tmp_path):
    """/dev/zero was read until memory ran out, a FIFO nobody writes waited
    forever, and a 5 MB file (no crontab is) was taken whole; each is now
    refused in one line, exit 2, as simulate refuses them."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    huge = tmp_path / "huge"
    huge.write_bytes(b"# " + b"x" * (5 * 1024 * 1024) + b"\n")
    for path, said in (("/dev/zero", "not a plain file"), (str(fifo), "not a plain file"),
                       (str(huge), "longer than 4 MB")):
        code, out, err = cronpolicy(tmp_path, "names", path)
        assert code == exitcodes.USAGE and said in err and "Traceback" not in err, (path, err)
        assert len(err.strip().splitlines()) == 1 and out == ""
    code, out, err = cronpolicy(tmp_path, "names", stdin=huge.read_bytes())
    assert code == exitcodes.USAGE and "standard input is longer than 4 MB" in err


def test_a_fifo_planted_in_the_output_dir_is_refused_not_waited_on(tmp_path, host):
    out_dir = tmp_path / "out"
    target = str(out_dir) + os.path.abspath(host[0])
    os.makedirs(os.path.dirname(target))
    os.mkfifo(target)
    code, out, err = cronpolicy(tmp_path, "wrap", "--output-dir", str(out_dir), *host)
    assert code == exitcodes.USAGE and "not a plain file" in err, err
    assert not os.path.exists(str(out_dir) + os.path.abspath(host[1]))    # nothing written


def test_names_lists_each_job_beside_its_line(tmp_path, host):
    code, out, err = cronpolicy(tmp_path, "names", *host)
    assert code == exitcodes.OK, err
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "FROM", "WHERE", "USER", "COMMAND"]
    assert any(line.startswith("nightly-export") and "comment" in line and host[1] + ":3" in line
               for line in lines)
    code, out, _ = cronpolicy(tmp_path, "names", "--json", *host)
    rows = json.loads(out)["jobs"]
    assert [(row["name"], row["from"], row["format"], row["line"]) for row in rows] == [
        ("certbot", "program", "system", 2), ("tool-a", "program", "system", 3),
        ("tool-b", "program", "system", 1), ("nightly-export", "comment", "system", 3),
        ("publish-distro", "program", "user", 1), ("tool", "program", "user", 2)]
    assert rows[0]["user"] == "root" and rows[4]["user"] is None


def test_names_reads_standard_input_as_a_user_crontab(tmp_path):
    code, out, _ = cronpolicy(tmp_path, "names", "--json", stdin=USER_CRONTAB.encode())
    assert code == exitcodes.OK
    assert [row["name"] for row in json.loads(out)["jobs"]] == ["publish-distro", "tool"]


def test_the_format_flags_decide_for_every_file(tmp_path, host):
    _, out, _ = cronpolicy(tmp_path, "names", "--json", "--user", host[0])
    # Read as a user crontab, the user field is the program.
    rows = json.loads(out)["jobs"]
    assert rows and all(row["format"] == "user" and row["name"].startswith("root")
                        for row in rows)
    _, out, _ = cronpolicy(tmp_path, "names", "--json", "--system", host[2])
    rows = json.loads(out)["jobs"]
    assert [(row["format"], row["user"]) for row in rows] == [
        ("system", "/srv/bin/publish-distro")]


OPTIONS = st.lists(st.sampled_from(["--system", "--user", "--legacy", "--json", "--in-place",
                                    "--no-backup", "--program", "--output-dir", "-", "--x"]),
                   max_size=4)


@hypothesis_settings(max_examples=int(os.environ.get("CRONPOLICY_FUZZ_EXAMPLES", "0")) or 25,
                     deadline=None, derandomize="CRONPOLICY_FUZZ_EXAMPLES" not in os.environ,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(["wrap", "unwrap", "names"]), options=OPTIONS,
       data=st.binary(max_size=300))
def test_generated_input_gets_a_documented_exit_and_never_a_traceback(
        tmp_path_factory, command, options, data):
    tmp_path = tmp_path_factory.mktemp("fuzz")
    argv = [command]
    for option in options:
        argv.append(option)
        if option in ("--program", "--output-dir"):
            argv.append(str(tmp_path / "out"))
    code, out, err = cronpolicy(tmp_path, *argv, stdin=data)
    assert code in (exitcodes.OK, exitcodes.USAGE, exitcodes.NOT_ALL_WRAPPED), (argv, err)
    assert "Traceback" not in err, (argv, err)
    if code == exitcodes.USAGE:
        assert len([line for line in err.splitlines() if "error" in line]) == 1, (argv, err)
