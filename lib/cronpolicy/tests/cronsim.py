"""What cron does with a crontab command before any shell sees it, written
after Debian cron's do_command.c (3.0pl1), and a stub `cronpolicy` that
records the arguments a wrapped line hands it.

Cron cuts the command at its first % that no backslash escapes: the part
before goes to ``$SHELL -c`` with each \\% made %, and what follows becomes
the command's standard input, each unescaped % a newline and a newline at
the end.  Kept apart from the code under test on purpose: a test compares
the two.
"""

import os
import subprocess


def cron_command(job):
    """The command cron reads from a lines.Job: everything up to the
    newline (a \r before it included: cron keeps it), as bytes."""
    from cronpolicy.tooling.crontab.lines import write_crontab
    text = job.command + job.ending
    return write_crontab(text[:-1] if text.endswith("\n") else text)


def cron_split(command):
    """(bytes the shell gets after -c, bytes on standard input or None) of
    a crontab command given as bytes (no line ending)."""
    head = bytearray()
    escaped = False
    position = 0
    while position < len(command):
        char = command[position:position + 1]
        position += 1
        if escaped:
            if char == b"%":
                head[-1:] = b"%"        # *--p = ch: the backslash gives way
            else:
                head += char
            escaped = False
            continue
        if char == b"\\":
            head += char
            escaped = True
            continue
        if char == b"%":
            return bytes(head), _stdin(command[position:])
        head += char
    return bytes(head), None


def _stdin(rest):
    out = bytearray()
    escaped = need_newline = False
    for byte in rest:
        char = bytes([byte])
        if escaped:
            if char != b"%":
                out += b"\\"
        elif char == b"%":
            char = b"\n"
        escaped = char == b"\\"
        if not escaped:
            out += char
            need_newline = char != b"\n"
    if escaped:
        out += b"\\"
    if need_newline:
        out += b"\n"
    return bytes(out)


STUB = """#!/bin/sh
# Records its arguments, NUL-separated, and its standard input.
for argument in "$@"; do printf '%s\\0' "$argument"; done > "$CRONSIM_ARGV"
cat > "$CRONSIM_STDIN"
"""


def make_stub(directory):
    """A `cronpolicy` in ``directory`` that records how it was called."""
    path = os.path.join(str(directory), "cronpolicy")
    with open(path, "w") as handle:
        handle.write(STUB)
    os.chmod(path, 0o755)
    return path


def run_wrapped(command, directory):
    """(argv, stdin) the stub cronpolicy got when cron ran the wrapped
    ``command`` (bytes) with SHELL=/bin/sh."""
    shell_command, stdin = cron_split(command)
    argv_file = os.path.join(str(directory), "argv")
    stdin_file = os.path.join(str(directory), "stdin")
    for path in (argv_file, stdin_file):
        if os.path.exists(path):
            os.unlink(path)
    env = {"PATH": "/usr/bin:/bin", "SHELL": "/bin/sh", "CRONSIM_ARGV": argv_file,
           "CRONSIM_STDIN": stdin_file}
    subprocess.run([b"/bin/sh", b"-c", shell_command], input=stdin or b"", env=env,
                   timeout=30, check=False, capture_output=True)
    with open(argv_file, "rb") as handle:
        argv = handle.read().split(b"\0")[:-1]
    with open(stdin_file, "rb") as handle:
        return argv, handle.read()
