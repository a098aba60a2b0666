"""Finishing on the release a run started from.

Deploys usually switch a symbolic link (/srv/app/current) from one release
directory to the next (/srv/app/releases/4521 to .../4522) while cron
scripts run from the link.  A script that imports a module late, after the
switch, would get the new release's code in the middle of a run of the
old one.  So at its start a CronScript resolves the links in its own path
and in sys.path once (``pin``): every later import comes from the release
it started in, and the run records that release (script_run.release).
"Started in" is when the interpreter started, not when run() is called: a
deploy may switch the link while the script's module-level imports run,
and the run must not then record the new release while it executes the
old one (``started_release``).  When that cannot be known, the run records
no release, and `deploy wait --old-releases` waits for it.
`cronpolicy run --pin PATH` does the same for any command: PATH (the link)
is resolved once, at start, and the command runs from the resolved
directory (``pinned_command``), LINK given absolute or relative.

The release of a path is the target of the last symbolic link among the
directories on its way (/srv/app/current in /srv/app/current/cron/job.py),
resolved; a path with no link on its way has none.
"""

import os
import sys


def release_of(path):
    """The release directory ``path`` lies in (resolved now), or None: also
    for one whose name is not UTF-8 text, which no database can record
    (deploy wait counts a run with no release as possibly old, and waits)."""
    link = _last_link(os.path.abspath(path))
    return _text(os.path.realpath(link)) if link is not None else None


def _last_link(absolute):
    """The last symbolic link among the directories of ``absolute``, or None."""
    current, link = os.sep, None
    for part in absolute.split(os.sep)[1:-1]:       # its directories, not itself
        current = os.path.join(current, part)
        if os.path.islink(current):
            link = current
    return link


def _text(release):
    try:
        release is not None and release.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return release


def started_release(main_file, path):
    """(known, release): the release the script ``main_file`` (__main__'s
    file, as it was run) was read from when the interpreter started, which
    may be older than the one its link names now (a deploy switched it
    while the script's imports ran).  CPython puts the script's directory
    first in sys.path with its links resolved, at start: that entry (found
    in ``path`` wherever it now stands) minus the directories the script
    lies in below its release link is the release.  (False, None) when it
    is not there to be found (a script that replaced it, -c, a pipe)."""
    if not main_file:
        return False, None
    absolute = os.path.abspath(main_file)
    link = _last_link(absolute)
    if link is None:
        return True, None           # under no link: no release to tell
    below = os.path.relpath(os.path.dirname(absolute), link)   # "cron", or "."
    name = os.path.basename(absolute)
    for entry in path:
        if not (entry and os.path.isabs(entry) and not entry.startswith(link + os.sep)
                and (below == "." or entry.endswith(os.sep + below))):
            continue
        release = entry if below == "." else entry[:-len(below) - 1]
        if release and os.path.realpath(entry) == entry \
                and os.path.isfile(os.path.join(entry, name)):
            return True, _text(release)
    return False, None


def pin(script_path, path=None, main_file=None):
    """Resolve the links in ``path`` (default sys.path) in place, so later
    imports find the files of the release the process started in; returns
    the release to record for ``script_path`` (the file of the script's
    class): the one its code was read from, or None when that cannot be
    known, so that `deploy wait --old-releases` waits for the run.

    The release is told from when the interpreter started (started_release),
    not from where the link points now: a script whose module-level imports
    took two seconds while `current` was switched recorded the new release
    while it ran the old one.  Such a script is pinned to the release it
    started in; its class in another module (imported at some moment in
    between, from either release) records None."""
    path = sys.path if path is None else path
    if main_file is None:
        main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    known, started = started_release(main_file, path)
    now = release_of(main_file) if main_file else None
    switched = known and started is not None and now is not None and started != now
    for index, entry in enumerate(list(path)):
        if not entry or not os.path.isdir(entry):
            continue            # '' (the working directory), zip files, missing entries
        real = os.path.realpath(entry)
        if switched and (real == now or real.startswith(now + os.sep)):
            real = started + real[len(now):]        # the release it started in
        if real != entry:
            path[index] = real
            sys.path_importer_cache.pop(entry, None)
    if not script_path or not known:
        return None
    if main_file and os.path.abspath(script_path) == os.path.abspath(main_file):
        return started
    return None if switched else release_of(script_path)


def pinned_command(link, command):
    """(release, command) for `cronpolicy run --pin LINK`: LINK resolved
    now, and every word of the command that names it (or a path under it)
    naming the resolved release instead."""
    release = os.path.realpath(link)
    absolute = os.path.abspath(link).rstrip(os.sep) or os.sep
    if release == absolute:
        return release, list(command)
    # The link as given too: a relative --pin current names current/bin/job,
    # and ./current/bin/job (the './' spelling first: the '/' before 'current'
    # hides it from the bare form).
    relative = {link.rstrip(os.sep), os.path.normpath(link)}
    relative |= {"." + os.sep + form for form in relative if not form.startswith("." + os.sep)}
    forms = [absolute] + sorted(form for form in relative
                                if form and not os.path.isabs(form) and form != "."
                                and form != "." + os.sep + ".")
    for form in forms:
        command = [_repointed(word, form, release) for word in command]
    return release, list(command)


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
