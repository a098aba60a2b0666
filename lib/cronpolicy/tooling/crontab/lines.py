"""Crontab lines as cron reads them, and one job line wrapped or unwrapped.

A job line

    15 * * * *  /srv/bin/publish-distro --all >/dev/null 2>&1

becomes

    15 * * * *  cronpolicy run publish-distro --from-crontab -- "${SHELL:-/bin/sh}" -c '/srv/bin/publish-distro --all >/dev/null 2>&1'

The original command is handed whole to the shell cron would have used (so
pipes, redirections and && stay inside the gate), quoted for the outer
shell.  Cron itself turns an unescaped % into a newline and feeds what
follows to the command's standard input, before any shell sees the line,
so the part from the first unescaped % on is left outside the quotes,
exactly where it was.  --from-crontab is wrap's mark: unwrap takes apart
only lines that carry it.

Lines are what cron reads: split on \\n only (not on form feeds, U+2028 or
the other breaks str.splitlines knows), and fields are separated by
blanks and tabs only.  Text is handled as decoded with surrogateescape, so
a crontab in any encoding comes back byte for byte (see read_crontab).
"""

import collections
import re
import shlex

from cronpolicy.matching import is_pattern, name_problem

_SCHEDULE_KEYWORDS = ("@reboot", "@yearly", "@annually", "@monthly", "@weekly", "@daily",
                      "@midnight", "@hourly")
_ENVIRONMENT = re.compile(r"^[ \t]*[A-Za-z_][A-Za-z0-9_]*[ \t]*=")
_BLANKS = " \t"
# One schedule field as cron reads it: *, numbers, ranges, steps and lists,
# or (month, day of week) three-letter names.
_RANGE = r"(?:\*|[0-9]+(?:-[0-9]+)?|[A-Za-z]{3}(?:-[A-Za-z]{3})?)(?:/[0-9]+)?"
_SCHEDULE_FIELD = re.compile(r"^%s(?:,%s)*$" % (_RANGE, _RANGE))
_FIELD = re.compile(r"[ \t]*[^ \t\n]+[ \t]+")
#: The comment that names the job on the line below it.
NAME_COMMENT = re.compile(r"^[ \t]*#[ \t]*cronpolicy:(?P<settings>.*?)[ \t\r]*$")

#: Debian's cron refuses a crontab with a command longer than this (bytes):
#: its MAX_COMMAND of 1000 holds the command, its newline and a terminator.
MAX_COMMAND_BYTES = 998

#: One job line: ``prefix`` is the schedule (and user field) with all its
#: spacing, ``command`` the rest without its line ending, ``user`` the
#: system crontab's user field (None in a user crontab); ``wrapped_name``
#: is set on a line that runs through `cronpolicy run` already (whoever
#: wrote it), ``original`` on a line wrap wrote (or, with legacy, one in
#: its form without the mark): the command it wrapped.
Job = collections.namedtuple("Job", "prefix command ending user wrapped_name original")

#: One line of a crontab: ``job`` is a Job or None; ``foreign`` says it is
#: none of a job, an environment line, a comment or a blank line;
#: ``explicit`` is the name a ``# cronpolicy: name=...`` comment just above
#: gives the job, ``name_warning`` what in such a comment was not honoured;
#: ``shell`` the SHELL the crontab sets for this line (None: cron's /bin/sh);
#: ``cron_tz`` the CRON_TZ it sets (the time zone cronie reads the schedule
#: in; None: the host's own).
Entry = collections.namedtuple("Entry",
                               "number text job foreign explicit name_warning shell cron_tz")

#: Shells that read the wrapped line's "${SHELL:-/bin/sh}" -c '...'.
POSIX_SHELLS = frozenset(("sh", "bash", "dash", "ksh", "mksh", "zsh", "ash", "busybox", "yash",
                          "posh", "ksh93", "lksh"))


def read_crontab(data):
    """Crontab bytes as text that encodes back to the same bytes."""
    return data.decode("utf-8", "surrogateescape")


def write_crontab(text):
    """The bytes of crontab text made by read_crontab (and wrap/unwrap)."""
    return text.encode("utf-8", "surrogateescape")


def split_lines(text):
    """The lines cron sees: split on \\n only, each keeping its \\n."""
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
    first = re.split(r"[ \t]", stripped, maxsplit=1)[0]
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


def name_comment(line):
    """(name, warning) a ``# cronpolicy: name=NAME`` comment line gives;
    (None, None) for any other line."""
    match = NAME_COMMENT.match(line)
    if match is None:
        return None, None
    name, warnings, problems = None, [], []
    for setting in match.group("settings").split():
        key, has_value, value = setting.partition("=")
        if key != "name" or not has_value:
            warnings.append("ignored %r (the comment takes name=NAME only)" % setting)
            continue
        problem = explicit_name_problem(value)
        if problem:
            problems.append(problem)
        else:
            name = value
    if name is None:
        problems = problems or ["it gives no name=NAME"]
        warnings.insert(0, "the name comment above the job is not used: %s"
                        % "; ".join(problems))
    return name, "; ".join(warnings) or None


def explicit_name_problem(name):
    """Why ``name`` cannot name a wrapped job, or None: the name rule, and
    nothing cron or `cronpolicy run` would read otherwise (% is cut by
    cron, a leading - is an option, * and ? make a pattern)."""
    problem = name_problem(name, "the name")
    if problem:
        return problem
    if is_pattern(name):
        return "the name %r holds * or ?, which would make it a pattern" % name
    if "%" in name or "\\" in name:
        return "the name %r holds %% or \\, which cron reads itself" % name
    if name.startswith("-"):
        return "the name %r starts with -, which would make it an option" % name
    return None


def program_problem(program):
    """Why ``program`` cannot be the cronpolicy written into wrapped lines, or None."""
    if not program or program.rsplit("/", 1)[-1] != "cronpolicy":
        return "--program must name the cronpolicy program (a path ending in /cronpolicy)"
    if any(char in program for char in "%\\\n\r") or any(ord(char) < 32 for char in program):
        return "--program must not hold %, \\ or control characters (cron reads them itself)"
    return None


def _split_ending(command):
    for newline in ("\r\n", "\n"):
        if command.endswith(newline):
            return command[:-len(newline)], newline
    return command, ""


def parse_crontab(text, system=False, legacy=False):
    """Every line of ``text`` as an Entry."""
    entries = []
    comment_name = comment_warning = shell = cron_tz = None
    for number, line in enumerate(split_lines(text), 1):
        shell = _assignment(line, "SHELL", shell)
        cron_tz = _assignment(line, "CRON_TZ", cron_tz)
        split = parse_job(line, system)
        job = None
        if split is not None:
            prefix, rest = split
            command, ending = _split_ending(rest)
            user = prefix.split()[-1] if system else None
            wrapped = unwrap_command(command, legacy=legacy)
            name, original = wrapped or (gated_name(command), None)
            job = Job(prefix, command, ending, user, name, original)
        entries.append(Entry(number, line, job, is_foreign(line, system),
                             comment_name if job else None, comment_warning if job else None,
                             shell, cron_tz))
        comment_name, comment_warning = name_comment(line)
    return entries


def _assignment(line, variable, before):
    """The value ``line`` gives ``variable`` (SHELL=...), else ``before``."""
    match = _ENVIRONMENT.match(line)
    if match is None or line.split("=", 1)[0].strip(_BLANKS) != variable:
        return before
    value = line.split("=", 1)[1].strip(_BLANKS + "\r\n")
    if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return value


def first_unescaped_percent(command):
    """Where cron cuts ``command``: its first % that no backslash escapes."""
    index = 0
    while index < len(command):
        if command[index] == "\\" and index + 1 < len(command):
            index += 2
            continue
        if command[index] == "%":
            return index
        index += 1
    return len(command)


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
#: wrap's mark: unwrap takes apart only lines that carry it, never a
#: hand-written `cronpolicy run` line (wrap before schema 11 wrote none:
#: `unwrap --legacy` takes those apart too).
MARK = "--from-crontab"
#: A word as shlex.quote() writes it: bare, or in single quotes.
_QUOTED_WORD = r"(?:'(?:[^']|'\"'\"')*'|[^ \t']+)"
WRAPPED = re.compile(r"^(?P<program>'(?:[^']|'\"'\"')*cronpolicy'|[^ \t']*cronpolicy)"
                     r" run (?P<name>" + _QUOTED_WORD + r") (?P<mark>" + MARK + r" )?-- "
                     + re.escape(SHELL) + r" -c ")


def wrap_command(command, name, program="cronpolicy"):
    """``command`` (no line ending) run through ``cronpolicy run NAME``."""
    cut = first_unescaped_percent(command)
    head, tail = command[:cut], command[cut:]
    return "%s run %s %s -- %s -c %s%s" % (shlex.quote(program), shlex.quote(name), MARK,
                                           SHELL, shlex.quote(head), tail)


def unwrap_command(command, legacy=False):
    """(name, original command) of a line wrap wrote, or None."""
    match = WRAPPED.match(command)
    if match is None or not (match.group("mark") or legacy):
        return None
    rest = command[match.end():]
    try:
        end = _quote_end(rest)
        [name] = shlex.split(match.group("name"))
    except ValueError:
        return None
    quoted, tail = rest[:end], rest[end:]
    words = shlex.split(quoted) if quoted else [""]
    if len(words) != 1:
        return None
    return name, words[0] + tail


def gated_name(command):
    """The NAME of a `cronpolicy run NAME ...` command, whoever wrote it, or None."""
    try:
        words = shlex.split(command[:first_unescaped_percent(command)])
    except ValueError:
        return None
    if len(words) > 2 and words[0].rsplit("/", 1)[-1] == "cronpolicy" and words[1] == "run" \
            and not words[2].startswith("-"):
        return words[2]
    return None


def schedule_of(job, system=False):
    """The schedule of a job line: its five fields (or @keyword), without
    the user field of a system crontab, as one string."""
    fields = job.prefix.split()
    return " ".join(fields[:-1] if system else fields)


def wrapped_line(entry, name, program):
    """(the job line of ``entry`` run through cronpolicy as ``name``, the
    length in bytes of its command)."""
    job = entry.job
    command = job.original if job.original is not None else job.command
    wrapped = wrap_command(command, name, program)
    # Cron's command runs to the newline: a \r before it counts.
    return job.prefix + wrapped + job.ending, len(write_crontab(wrapped + job.ending.rstrip("\n")))


def unwrap(text, system=False, legacy=False):
    """The crontab ``text`` with every line wrap wrote restored (``legacy``:
    also those it wrote before it marked them)."""
    return "".join(entry.job.prefix + entry.job.original + entry.job.ending
                   if entry.job is not None and entry.job.original is not None else entry.text
                   for entry in parse_crontab(text, system, legacy))
