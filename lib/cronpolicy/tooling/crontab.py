"""Moving a crontab behind cronpolicy, once: `cronpolicy crontab wrap` / `unwrap`.

wrap rewrites every job line so its command runs through `cronpolicy run`,
keeping schedules, environment lines, comments and blank lines exactly as
they were; unwrap restores the original byte for byte; wrapping a wrapped
crontab changes nothing.  A job line

    15 * * * *  /srv/bin/publish-distro --all >/dev/null 2>&1

becomes

    15 * * * *  cronpolicy run publish-distro --from-crontab -- "${SHELL:-/bin/sh}" -c '/srv/bin/publish-distro --all >/dev/null 2>&1'

The original command is handed whole to the shell cron would have used (so
pipes, redirections and && stay inside the gate), quoted for the outer shell.  Cron itself turns an
unescaped % into a newline and feeds what follows to the command's standard
input, before any shell sees the line, so the part from the first unescaped
% on is left outside the quotes, exactly where it was.

Each job is named from its command: the first program's base name (the
script's, for `python3 script.py`, `sh job.sh`, `env X=1 prog`...), with
-2, -3... appended when two lines would share a name.

Lines are what cron reads: split on \n only (not on form feeds, U+2028 or
the other breaks str.splitlines knows), and fields are separated by
blanks and tabs only.  Text is handled as decoded with surrogateescape, so
a crontab in any encoding comes back byte for byte (see read_crontab).
"""

import os
import re
import shlex

_SCHEDULE_KEYWORDS = ("@reboot", "@yearly", "@annually", "@monthly", "@weekly", "@daily",
                      "@midnight", "@hourly")
_ENVIRONMENT = re.compile(r"^[ \t]*[A-Za-z_][A-Za-z0-9_]*[ \t]*=")
_BLANKS = " \t"
# One schedule field as cron reads it: *, numbers, ranges, steps and lists,
# or (month, day of week) three-letter names.
_RANGE = r"(?:\*|[0-9]+(?:-[0-9]+)?|[A-Za-z]{3}(?:-[A-Za-z]{3})?)(?:/[0-9]+)?"
_SCHEDULE_FIELD = re.compile(r"^%s(?:,%s)*$" % (_RANGE, _RANGE))
_FIELD = re.compile(r"[ \t]*[^ \t\n]+[ \t]+")
_INTERPRETERS = {"python", "python2", "python3", "sh", "bash", "dash", "zsh", "ksh", "perl",
                 "ruby", "php", "node", "env", "nice", "ionice", "timeout", "flock", "nohup",
                 "exec", "time", "sudo", "chronic"}
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def read_crontab(data):
    """Crontab bytes as text that encodes back to the same bytes."""
    return data.decode("utf-8", "surrogateescape")


def write_crontab(text):
    """The bytes of crontab text made by read_crontab (and wrap/unwrap)."""
    return text.encode("utf-8", "surrogateescape")


def _lines(text):
    """The lines cron sees: split on \n only, each keeping its \n."""
    parts = text.split("\n")
    return [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _split_fields(line, count):
    """(prefix through the ``count``-th field and its trailing blanks, rest)."""
    position = 0
    for _ in range(count):
        match = _FIELD.match(line, position)
        if match is None:
            return None
        position = match.end()
    return line[:position], line[position:]


def parse_job(line, system=False):
    """(schedule prefix, command) for a job line, else None (comment, blank,
    environment line).  The prefix keeps all its original spacing."""
    stripped = line.strip(_BLANKS + "\r\n")
    if not stripped or stripped.startswith("#") or _ENVIRONMENT.match(line):
        return None
    first = re.split(r"[ \t]", stripped, 1)[0]
    fields = 1 if first.startswith("@") and first in _SCHEDULE_KEYWORDS else 5
    if first.startswith("@") and first not in _SCHEDULE_KEYWORDS:
        return None
    split = _split_fields(line, fields + (1 if system else 0))
    if split is None or not split[1].strip(_BLANKS + "\r\n"):
        return None
    if fields == 5 and not all(_SCHEDULE_FIELD.match(field)
                               for field in re.split(r"[ \t]+", split[0].strip(_BLANKS))[:5]):
        return None     # not a schedule: not a job cron would run
    return split


def is_foreign(line, system=False):
    """Whether ``line`` is none of what a crontab holds: a job, an
    environment line, a comment or a blank line."""
    stripped = line.strip(_BLANKS + "\r\n")
    return bool(stripped) and not stripped.startswith("#") and not _ENVIRONMENT.match(line) \
        and parse_job(line, system) is None


def _first_unescaped_percent(command):
    index = 0
    while index < len(command):
        if command[index] == "\\" and index + 1 < len(command):
            index += 2
            continue
        if command[index] == "%":
            return index
        index += 1
    return len(command)


def job_name(command):
    """A script name for a command line."""
    head = command[:_first_unescaped_percent(command)]
    try:
        words = shlex.split(head, comments=False)
    except ValueError:
        words = head.split()
    # Skip "cd DIR &&" and leading VAR=value assignments, interpreters and options.
    while words and words[0] == "cd":
        words = words[words.index("&&") + 1:] if "&&" in words else words[2:]
    for word in words:
        if "=" in word.split("/")[0] and not word.startswith("/"):
            continue
        base = os.path.basename(word)
        if word.startswith("-") or word.isdigit() or re.match(r"^(python|ruby|perl|php)[\d.]*$", base) \
                or base in _INTERPRETERS:
            continue
        name = _NAME_UNSAFE.sub("-", os.path.splitext(base)[0]).strip("-.")
        if name:
            return name
    return "job"


def _quote_end(text):
    """Length of the shlex.quote()d word at the start of ``text``."""
    if not text.startswith("'"):
        match = re.match(r"[\w@%+=:,./-]*", text, re.ASCII)
        return match.end()
    position = 0
    while True:
        close = text.index("'", position + 1)
        position = close + 1
        if text.startswith("\"'\"'", position):
            position += len("\"'\"")
            continue
        return position


#: The shell cron itself would have used: the SHELL it sets (from the crontab).
SHELL = '"${SHELL:-/bin/sh}"'
#: The program is a shell word: bare, or quoted as shlex.quote() quotes.
#: wrap's mark: unwrap takes apart only lines that carry it, never a
#: hand-written `cronpolicy run` line (wrap before schema 11 wrote none:
#: `unwrap --legacy` takes those apart too).
MARK = "--from-crontab"
WRAPPED = re.compile(r"^(?P<program>'(?:[^']|'\"'\"')*cronpolicy'|[^ \t']*cronpolicy)"
                     r" run (?P<name>\S+) (?P<mark>" + MARK + r" )?-- " + re.escape(SHELL)
                     + r" -c ")


def wrap_command(command, name, program="cronpolicy"):
    cut = _first_unescaped_percent(command)
    head, tail = command[:cut], command[cut:]
    trailing = head[len(head.rstrip("\r\n")):]
    head = head[:len(head) - len(trailing)] if trailing else head
    return "%s run %s %s -- %s -c %s%s%s" % (shlex.quote(program), shlex.quote(name), MARK,
                                             SHELL, shlex.quote(head), tail, trailing)


def unwrap_command(command, legacy=False):
    """The original command of a line wrap wrote, or None."""
    match = WRAPPED.match(command)
    if match is None or not (match.group("mark") or legacy):
        return None
    rest = command[match.end():]
    try:
        end = _quote_end(rest)
    except ValueError:
        return None
    quoted, tail = rest[:end], rest[end:]
    words = shlex.split(quoted) if quoted else [""]
    if len(words) != 1:
        return None
    return words[0] + tail


#: Debian's cron refuses a crontab with a command longer than this (bytes):
#: its MAX_COMMAND of 1000 holds the command, its newline and a terminator.
MAX_COMMAND_BYTES = 998


def wrap(text, program="cronpolicy", system=False):
    """The crontab ``text`` with every job line wrapped (already wrapped ones kept)."""
    return wrap_report(text, program, system)[0]


def wrap_report(text, program="cronpolicy", system=False):
    """(wrapped text, [(line number, name, wrapped length)] of the jobs left
    as they were because wrapped they would be too long for cron, [line
    numbers] of lines that are no crontab line at all, left as they are)."""
    lines = _lines(text)
    too_long = []
    foreign = [number for number, line in enumerate(lines, 1) if is_foreign(line, system)]
    taken = set()
    jobs = []
    for line in lines:
        job = parse_job(line, system)
        if job is not None:
            match = WRAPPED.match(job[1])
            if match is not None:
                taken.add(shlex.split(match.group("name"))[0])
        jobs.append(job)
    output = []
    for number, (line, job) in enumerate(zip(lines, jobs), 1):
        if job is None or WRAPPED.match(job[1]):
            output.append(line)
            continue
        prefix, command = job
        body, ending = command, ""
        for newline in ("\r\n", "\n"):
            if body.endswith(newline):
                body, ending = body[:-len(newline)], newline
                break
        base = job_name(body)
        name, counter = base, 1
        while name in taken:
            counter += 1
            name = "%s-%d" % (base, counter)
        wrapped = wrap_command(body, name, program)
        length = len(write_crontab(wrapped.rstrip("\r")))
        if length > MAX_COMMAND_BYTES:
            too_long.append((number, name, length))
            output.append(line)
            continue
        taken.add(name)
        output.append(prefix + wrapped + ending)
    return "".join(output), too_long, foreign


def unwrap(text, system=False, legacy=False):
    """The crontab ``text`` with every line wrap wrote restored (``legacy``:
    also those it wrote before it marked them)."""
    output = []
    for line in _lines(text):
        job = parse_job(line, system)
        original = unwrap_command(job[1], legacy) if job is not None else None
        output.append(line if original is None else job[0] + original)
    return "".join(output)
