"""All the crontabs of a host at once: one set of unique job names.

A host's cron reads several files (a user's crontab, /etc/crontab, every
file in /etc/cron.d), and the names wrap gives must be unique across all
of them, because locks, policies and history are shared.  ``wrap_files``
names the jobs of every file together (unique.choose_names) and wraps
each; ``name_files`` only says the names, for review.

A file's format (a system crontab has a user field before the command) is
told by where it lives: /etc/crontab and any file in a directory called
cron.d are system crontabs; standard input (``crontab -l``) is a user
crontab; any other file is a system crontab when every job line's sixth
field is a user this host knows, else a user crontab.  ``--system`` and
``--user`` decide for every file instead.
"""

import collections
import os
import pwd

from cronpolicy.tooling.crontab.lines import (
    MAX_COMMAND_BYTES, parse_crontab, parse_job, split_lines, wrapped_line)
from cronpolicy.tooling.crontab.names import identify
from cronpolicy.tooling.crontab.unique import Candidate, choose_names

STDIN = "-"
USER, SYSTEM = "user", "system"

#: One crontab to read: ``path`` (STDIN for standard input), ``text`` (as
#: lines.read_crontab gives it), ``system`` whether it has a user field.
Crontab = collections.namedtuple("Crontab", "path text system")

#: A job's name as chosen: its line ``number``, ``name``, ``how``
#: (unique.EXPLICIT, KEPT or DERIVED), the ``command`` it runs (the
#: original one for a wrapped line) and its ``user`` field.
NamedJob = collections.namedtuple("NamedJob", "number name how command user")

#: What wrap made of one crontab: the new ``text``; ``too_long``: [(line
#: number, name, bytes)] of jobs left as they were because wrapped they
#: would pass cron's limit; ``foreign``: line numbers of lines that are no
#: crontab line; ``warnings``: [(line number, message)]; ``jobs``: NamedJobs.
Wrapped = collections.namedtuple("Wrapped", "crontab text too_long foreign warnings jobs")


def detect_system(path, text):
    """Whether the crontab at ``path`` holding ``text`` is a system crontab."""
    if path == STDIN:
        return False
    absolute = os.path.abspath(path)
    if absolute == "/etc/crontab" or os.path.basename(os.path.dirname(absolute)) == "cron.d":
        return True
    users = [split[0].split()[-1] for split in
             (parse_job(line, system=True) for line in split_lines(text)) if split]
    return bool(users) and all(_known_user(user) for user in users)


def _known_user(name):
    try:
        pwd.getpwnam(name)
    except (KeyError, UnicodeEncodeError, ValueError):
        return False
    return True


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
                            entry.explicit, job.wrapped_name)


def name_files(crontabs):
    """[[NamedJob] for each crontab], the names wrap would give."""
    return [result.jobs for result in wrap_files(crontabs, program="cronpolicy")]


def wrap_files(crontabs, program="cronpolicy"):
    """[Wrapped] for each crontab, with names unique across all of them."""
    parsed = _parse_all(crontabs)
    names = choose_names(list(_candidates(parsed)))     # {(file, line): (name, how)}
    return [_wrap_one(crontab, entries, index, names, program)
            for index, (crontab, entries) in enumerate(zip(crontabs, parsed))]


def _wrap_one(crontab, entries, index, names, program):
    output, too_long, foreign, warnings, jobs = [], [], [], [], []
    for entry in entries:
        if entry.foreign:
            foreign.append(entry.number)
        if entry.name_warning:
            warnings.append((entry.number, "name comment above the job not used: %s"
                             % entry.name_warning))
        job = entry.job
        if job is None:
            output.append(entry.text)
            continue
        name, how = names[(index, entry.number)]
        command = job.original if job.original is not None else job.command
        jobs.append(NamedJob(entry.number, name, how, command, job.user))
        if job.wrapped_name is not None and (job.wrapped_name == name or job.original is None):
            output.append(entry.text)           # through cronpolicy run already: as it is
            continue
        line, length = wrapped_line(entry, name, program)
        if length > MAX_COMMAND_BYTES:
            too_long.append((entry.number, name, length))
            output.append(entry.text)
            continue
        output.append(line)
    return Wrapped(crontab, "".join(output), too_long, foreign, warnings, jobs)


def wrap_report(text, program="cronpolicy", system=False):
    """(wrapped text, too_long, foreign) of one crontab on its own."""
    result = wrap_files([Crontab(STDIN, text, system)], program)[0]
    return result.text, result.too_long, result.foreign


def wrap(text, program="cronpolicy", system=False):
    """The crontab ``text`` with every job line wrapped (already wrapped ones kept)."""
    return wrap_report(text, program, system)[0]
