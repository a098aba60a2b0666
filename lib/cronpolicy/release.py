"""Finishing on the release a run started from.

Deploys usually switch a symbolic link (/srv/app/current) from one release
directory to the next (/srv/app/releases/4521 to .../4522) while cron
scripts run from the link.  A script that imports a module late, after the
switch, would get the new release's code in the middle of a run of the
old one.  So at its start a CronScript resolves the links in its own path
and in sys.path once (``pin``): every later import comes from the release
it started in, and the run records that release (script_run.release).
`cronpolicy run --pin PATH` does the same for any command: PATH (the link)
is resolved once, at start, and the command runs from the resolved
directory (``pinned_command``).

The release of a path is the target of the last symbolic link among the
directories on its way (/srv/app/current in /srv/app/current/cron/job.py),
resolved; a path with no link on its way has none.
"""

import os
import sys


def release_of(path):
    """The release directory ``path`` lies in (resolved), or None: also for
    one whose name is not UTF-8 text, which no database can record (deploy
    wait counts a run with no release as possibly old, and waits for it)."""
    absolute = os.path.abspath(path)
    current, link = os.sep, None
    for part in absolute.split(os.sep)[1:-1]:       # its directories, not itself
        current = os.path.join(current, part)
        if os.path.islink(current):
            link = current
    release = os.path.realpath(link) if link is not None else None
    try:
        release is not None and release.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return release


def pin(script_path, path=None):
    """Resolve the links in ``path`` (default sys.path) in place, so later
    imports find the files the links point to now; returns the release of
    ``script_path`` (or None)."""
    path = sys.path if path is None else path
    for index, entry in enumerate(list(path)):
        if not entry or not os.path.isdir(entry):
            continue            # '' (the working directory), zip files, missing entries
        real = os.path.realpath(entry)
        if real != entry:
            path[index] = real
            sys.path_importer_cache.pop(entry, None)
    return release_of(script_path) if script_path else None


def pinned_command(link, command):
    """(release, command) for `cronpolicy run --pin LINK`: LINK resolved
    now, and every word of the command that names it (or a path under it)
    naming the resolved release instead."""
    release = os.path.realpath(link)
    link = os.path.abspath(link).rstrip(os.sep) or os.sep
    if release == link:
        return release, list(command)
    return release, [_repointed(word, link, release) for word in command]


def _repointed(word, link, release):
    """``word`` with LINK replaced by RELEASE where it names LINK itself or a
    path under it (followed by '/', the end, or what ends a shell word)."""
    found, start = [], 0
    while True:
        index = word.find(link, start)
        if index < 0:
            found.append(word[start:])
            return "".join(found)
        after = word[index + len(link):index + len(link) + 1]
        before = word[index - 1:index] if index else ""
        if (after in ("", "/") or after in " \t'\";&|)<>") and before in ("", " ", "\t", "'",
                                                                          '"', "=", ":", "("):
            found.append(word[start:index] + release)
        else:
            found.append(word[start:index + len(link)])
        start = index + len(link)
