"""All the crontabs of a host at once: one set of unique job names.

A host's cron reads several files (a user's crontab, /etc/crontab, every
file in /etc/cron.d), and the names wrap gives must be unique across all
of them, because locks, policies and history are shared.  ``wrap_files``
names the jobs of every file together (unique.choose_names) and wraps
each; ``name_files`` only says the names, for review.

A file's format (a system crontab has a user field before the command) is
told by where it lives: /etc/crontab (and any file named crontab in a
directory named etc, such as a copy of a host's /etc) and any file in a
directory named cron.d are system crontabs; every other file and standard
input (``crontab -l``) are user crontabs.  ``--system`` and ``--user``
decide for every file instead.  (Guessing from the content would be
wrong for a user crontab whose programs share their names with system
users, such as backup or mail.)
"""

import collections
import os

from cronpolicy.matching import name_problem
from cronpolicy.tooling.crontab.lines import (
    MAX_COMMAND_BYTES, POSIX_SHELLS, explicit_name_problem, parse_crontab, wrapped_line)
from cronpolicy.tooling.crontab.names import cron_command, identify
from cronpolicy.tooling.crontab.shell import backgrounds
from cronpolicy.tooling.crontab.unique import (
    DERIVED, KEPT, Candidate, choose_names, shared_names)

STDIN = "-"
USER, SYSTEM = "user", "system"

#: One crontab to read: ``path`` (STDIN for standard input), ``text`` (as
#: lines.read_crontab gives it), ``system`` whether it has a user field.
Crontab = collections.namedtuple("Crontab", "path text system")

#: A job's name: its line ``number``, ``name``, ``how`` (unique.EXPLICIT,
#: KEPT or DERIVED), the ``command`` it runs (the original one for a
#: wrapped line), its ``user`` field, and ``left``: why wrap leaves the
#: line as it is (None: it is wrapped, or already was).
NamedJob = collections.namedtuple("NamedJob", "number name how command user left")

#: What wrap made of one crontab: the new ``text``; ``too_long``: [(line
#: number, name, bytes)] of jobs left as they were because wrapped they
#: would pass cron's limit; ``foreign``: line numbers of lines that are no
#: crontab line; ``warnings``: [(line number, message)]; ``jobs``: NamedJobs.
Wrapped = collections.namedtuple("Wrapped", "crontab text too_long foreign warnings jobs")


def detect_system(path, text=None):
    """Whether the crontab at ``path`` is a system crontab (with a user field)."""
    if path == STDIN:
        return False
    absolute = os.path.abspath(path)
    directory, name = os.path.split(absolute)
    return os.path.basename(directory) == "cron.d" or (
        name == "crontab" and os.path.basename(directory) == "etc")


def _parse_all(crontabs):
    return [parse_crontab(crontab.text, crontab.system) for crontab in crontabs]



def _candidates(parsed):
    for index, entries in enumerate(parsed):
        for entry in entries:
            job = entry.job
            if job is None:
                continue
            command = job.original if job.original is not None else job.command
            yield Candidate((index, entry.number), identify(command), job.user, command,
                            entry.explicit, _kept_name(job))


def _kept_name(job):
    """The name a line wrapped by wrap keeps, unless the gate would refuse it
    (written by an older wrap, it never ran): then the job is named anew."""
    if job.wrapped_name is None or job.original is None:
        return job.wrapped_name
    return None if explicit_name_problem(job.wrapped_name) else job.wrapped_name


def name_files(crontabs):
    """[[NamedJob] for each crontab], the names wrap would give."""
    return [result.jobs for result in wrap_files(crontabs, program="cronpolicy")]


def wrap_files(crontabs, program="cronpolicy"):
    """[Wrapped] for each crontab, with names unique across all of them."""
    parsed = _parse_all(crontabs)
    candidates = list(_candidates(parsed))
    names = choose_names(candidates)     # {(file, line): (name, how)}
    shared = {key: [other for other in keys if other != key]
              for _, keys in shared_names(names, candidates) for key in keys}
    return [_wrap_one(crontab, entries, index, names, shared, crontabs, program)
            for index, (crontab, entries) in enumerate(zip(crontabs, parsed))]


def _where(key, crontabs, index):
    other, number = key
    return "line %d" % number if other == index else "%s line %d" % (
        crontabs[other].path if crontabs[other].path != STDIN else "standard input", number)


def _wrap_one(crontab, entries, index, names, shared, crontabs, program):
    output, too_long, foreign, warnings, jobs = [], [], [], [], []
    for entry in entries:
        if entry.foreign:
            foreign.append(entry.number)
        if entry.name_warning:
            warnings.append((entry.number, entry.name_warning))
        job = entry.job
        if job is None:
            output.append(entry.text)
            continue
        key = (index, entry.number)
        name, how = names[key]
        if key in shared and how != DERIVED:
            warnings.append((entry.number, "the name %s is also that of %s: the jobs will "
                             "share one lock, policy and history" % (name, ", ".join(
                                 _where(other, crontabs, index) for other in shared[key]))))
        line, kind, why = _wrapped(entry, name, program)
        if line is not None and backgrounds(cron_command(job.original or job.command)):
            warnings.append((entry.number, "it puts a command in the background (&): the gate "
                             "sees it end at once, so nothing waits for that command, nor "
                             "stops it; run it in the foreground"))
        if job.wrapped_name is not None and _kept_name(job) is None:
            warnings.append((entry.number, "renamed %s: %s" % (
                name, explicit_name_problem(job.wrapped_name))))
        elif job.original is None and job.wrapped_name and name_problem(job.wrapped_name):
            warnings.append((entry.number, "left as it is, and it never runs: %s"
                             % name_problem(job.wrapped_name)))
        if job.wrapped_name is not None and line is None:
            # Through cronpolicy run already: the name on the line stands.
            if name != job.wrapped_name:
                warnings.append((entry.number, "keeps its name %s, not %s: %s"
                                 % (job.wrapped_name, name, why)))
            name, how = job.wrapped_name, KEPT
        elif kind == TOO_LONG:
            too_long.append((entry.number, name, why))
        elif kind == REFUSED:
            warnings.append((entry.number, "left as it is: %s" % why))
        left = None if line is not None or kind == ALREADY else (
            "wrapped it would be %d bytes, over cron's %d" % (why, MAX_COMMAND_BYTES)
            if kind == TOO_LONG else why)
        command = job.original if job.original is not None else job.command
        jobs.append(NamedJob(entry.number, name, how, command, job.user, left))
        output.append(line if line is not None else entry.text)
    return Wrapped(crontab, "".join(output), too_long, foreign, warnings, jobs)


#: What _wrapped made of a job line.
WRAPPED, ALREADY, GATED, TOO_LONG, REFUSED = "wrapped", "already", "gated", "too long", "refused"


def _wrapped(entry, name, program):
    """(the line wrapped as ``name``, or None to keep it as it is; what
    happened; why: the wrapped length for TOO_LONG, a sentence otherwise)."""
    job = entry.job
    if job.wrapped_name is not None and job.original is None:
        return None, GATED, "it runs through cronpolicy run already"
    if job.wrapped_name == name:
        return None, ALREADY, None
    if "\0" in job.command:
        return None, REFUSED, "it holds a NUL byte, where cron ends the command"
    if entry.shell and os.path.basename(entry.shell) not in POSIX_SHELLS:
        return None, REFUSED, ("SHELL=%s is no POSIX shell, and the wrapped line needs one"
                               % entry.shell)
    line, length = wrapped_line(entry, name, program)
    if length > MAX_COMMAND_BYTES:
        return None, TOO_LONG, length
    return line, WRAPPED, None


def wrap_report(text, program="cronpolicy", system=False):
    """(wrapped text, too_long, foreign) of one crontab on its own."""
    result = wrap_files([Crontab(STDIN, text, system)], program)[0]
    return result.text, result.too_long, result.foreign


def wrap(text, program="cronpolicy", system=False):
    """The crontab ``text`` with every job line wrapped (already wrapped ones kept)."""
    return wrap_report(text, program, system)[0]
