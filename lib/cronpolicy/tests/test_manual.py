"""Shell completion and the manual page, from the parser (issue 30.4), run
by real bash and zsh and read by groff."""

import os
import shutil
import subprocess
import sys

import pytest

from cronpolicy import exitcodes
from cronpolicy.tooling import manual

#: In a checkout, else where pip installed it (setup.py's data_files).
MAN_PAGE = next((path for path in (
    os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, os.pardir,
                 "man", "cronpolicy.1"),
    os.path.join(sys.prefix, "share", "man", "man1", "cronpolicy.1")) if os.path.exists(path)),
    None)

#: (what was typed, what completes): the current word is the last one.
CASES = [
    ("cronpolicy de", {"deploy"}),
    ("cronpolicy deploy ", {"begin", "end", "run", "wait", "plan", "slot"}),
    ("cronpolicy --dsn postgresql://db/x dep", {"deploy"}),     # past an option's value
    ("cronpolicy metrics --h", {"--help", "--host"}),
    ("cronpolicy metrics --host web1 --", {"--help", "--dsn", "--host", "--fleet",
                                            "--output"}),
    ("cronpolicy window add --st", {"--start"}),
    ("cronpolicy run --inter", {"--interruptible"}),
    ("cronpolicy run job --safe", {"--safe-file"}),
    ("cronpolicy run job -- ls --h", set()),          # the command's own: file names
    ("cronpolicy metrics --output ", set()),          # a value: file names
    ("cronpolicy completion ", set()),
    ("cronpolicy schema ", {"upgrade", "roles"}),
]


def _script(shell, script, line):
    """Source the completion, then call it as bash (or zsh's bashcompinit)
    would for ``line``: COMP_WORDS the words, COMP_CWORD the last one's index."""
    words = line.split(" ")
    return "source %s\nCOMP_WORDS=(%s)\nCOMP_CWORD=%d\n_cronpolicy\n%s\n" % (
        script, " ".join("'%s'" % word for word in words), len(words) - 1,
        'printf "%s\\n" "${COMPREPLY[@]}"' if shell == "bash"
        else 'print -l -- "${COMPREPLY[@]}"')


@pytest.mark.integration
@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_in_a_real_shell(shell, tmp_path):
    program = shutil.which(shell)
    if program is None:
        pytest.skip("%s is not installed" % shell)
    script = tmp_path / ("completion." + shell)
    script.write_text(manual.completion(shell))
    for line, expected in CASES:
        flags = ["-f"] if shell == "zsh" else ["--norc", "--noprofile"]
        result = subprocess.run([program, *flags, "-c", _script(shell, script, line)],
                                capture_output=True, text=True, timeout=30, cwd=tmp_path)
        assert result.returncode == 0 and result.stderr == "", (line, result.stderr)
        assert set(result.stdout.split()) == expected, (shell, line, result.stdout)


def test_completion_knows_every_command_the_parser_has():
    script = manual.completion("bash")
    for path, parser, _ in manual.commands():
        assert "['%s']=" % " ".join(("cronpolicy",) + path) in script, path
        for action in parser._actions:
            for option in action.option_strings:
                assert " %s" % option in script or "'%s" % option in script


@pytest.mark.integration
def test_the_commands_print_them():
    for argv in (["completion", "bash"], ["completion", "zsh"], ["man"]):
        result = subprocess.run([sys.executable, "-m", "cronpolicy", *argv],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == exitcodes.OK and result.stdout, result.stderr
    result = subprocess.run([sys.executable, "-m", "cronpolicy", "completion", "fish"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == exitcodes.USAGE and len(result.stderr.splitlines()) == 1


@pytest.mark.integration
def test_the_manual_page_names_every_command_and_groff_reads_it(tmp_path):
    page = manual.manpage()
    for path, _, _ in manual.commands():
        if path:
            assert '.SS "cronpolicy %s"' % " ".join(path) in page
    for code, _ in manual._exit_codes():
        assert ".B %d\n" % code in page
    assert len(manual._exit_codes()) == len([name for name in dir(exitcodes) if name.isupper()])
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff is not installed")
    result = subprocess.run([groff, "-man", "-ww", "-z"], input=page, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_the_shipped_manual_page_is_the_parsers():
    if MAN_PAGE is None:
        pytest.skip("neither a checkout's man/cronpolicy.1 nor an installed one")
    with open(MAN_PAGE, encoding="utf-8") as handle:
        assert handle.read() == manual.manpage(), (
            "man/cronpolicy.1 is stale: cronpolicy man > man/cronpolicy.1")
