"""Where cronpolicy writes files, on hosts other users share.

Cron scripts often run as root.  A directory another user can write to (or
could have created first, like /run/lock/cronpolicy) lets that user plant a
symlink or hard link where cronpolicy is about to write, and root would then
overwrite the target.  So every directory cronpolicy writes into is checked
before its first use in a process:

* the directory and each of its ancestors is owned by this user or root;
* an ancestor writable by other users is sticky (as /tmp is), so nobody else
  can rename what is in it;
* the directory itself is writable by nobody else, unless it is sticky and
  owned by this user;
* no symbolic link on the way to it belongs to another user.

A directory that fails is refused with one line naming it (ConfigError:
exit 4).  Files are then created with O_EXCL or O_NOFOLLOW (see
``create_exclusive`` and ``open_lock_file``), and a file is replaced only
when it is a plain one (``write_atomically``): never a device, a FIFO, a
socket, a directory or a symbolic link.  Only os and stat: this is on
the start path.
"""

import os
import stat

from cronpolicy.errors import ConfigError

#: Directories already checked by this process: the path asked for -> its real path.
_checked = {}


def _unsafe(info, own, final):
    """Why a directory with this lstat() is unsafe, or None."""
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if info.st_uid not in (own, 0):
        return "is owned by uid %d, neither this user (uid %d) nor root" % (info.st_uid, own)
    writable_by_others = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    sticky = info.st_mode & stat.S_ISVTX
    if writable_by_others and not sticky:
        return "is writable by other users (mode %04o)" % stat.S_IMODE(info.st_mode)
    if final and writable_by_others and info.st_uid != own:
        return ("is writable by other users (mode %04o) and not owned by this user"
                % stat.S_IMODE(info.st_mode))
    return None


def checked_directory(path, what, mode=0o755):
    """Create ``path`` (mode ``mode``) if missing and make sure it is safe to
    write into; return its real path.  ``what`` names it in messages (the
    setting it comes from)."""
    absolute = os.path.abspath(path)
    if absolute in _checked:
        return _checked[absolute]
    found = _walk_without_links(absolute, what, path, mode)
    if found is not None:
        _checked[absolute] = found
        return found
    _check_links(absolute, what, path)
    real = os.path.realpath(path)
    try:
        os.makedirs(real, mode, exist_ok=True)
    except OSError as error:
        raise ConfigError("cannot create %s %s: %s" % (what, path, error.strerror)) from None
    own = os.geteuid()
    current, final = real, True
    while True:
        try:
            info = os.lstat(current)
        except OSError as error:
            raise ConfigError("cannot check %s %s: %s: %s"
                              % (what, path, current, error.strerror)) from None
        reason = _unsafe(info, own, final)
        if reason:
            shown = path if current == real else "%s (in %s)" % (current, path)
            raise ConfigError("refusing %s %s: it %s; other users could make cronpolicy "
                              "overwrite files" % (what, shown, reason))
        parent = os.path.dirname(current)
        if parent == current:
            break
        current, final = parent, False
    _checked[absolute] = real
    return real


def _walk_without_links(absolute, what, path, mode):
    """checked_directory in one walk from the root (each component lstat()ed
    once: this runs on every cron job's start), for a path that holds no
    symbolic link; None when it holds one (the general walk then decides)."""
    own = os.geteuid()
    parts = [part for part in absolute.split(os.sep) if part]
    current, infos = os.sep, []
    try:
        infos.append((current, os.lstat(current)))
        for index, part in enumerate(parts):
            current = os.path.join(current, part)
            try:
                info = os.lstat(current)
            except FileNotFoundError:
                # As makedirs: the mode for the directory asked for, the
                # umask's for those above it; another start may make it first.
                try:
                    os.mkdir(current, mode if index == len(parts) - 1 else 0o777)
                except FileExistsError:
                    pass
                info = os.lstat(current)
            if stat.S_ISLNK(info.st_mode):
                return None
            infos.append((current, info))
    except OSError as error:
        raise ConfigError("cannot create %s %s: %s: %s"
                          % (what, path, current, error.strerror)) from None
    for index, (current, info) in enumerate(reversed(infos)):
        reason = _unsafe(info, own, index == 0)
        if reason:
            shown = path if index == 0 else "%s (in %s)" % (current, path)
            raise ConfigError("refusing %s %s: it %s; other users could make cronpolicy "
                              "overwrite files" % (what, shown, reason))
    return absolute


def _check_links(absolute, what, path):
    """A symbolic link on the way to ``absolute`` must belong to this user or
    root (as /var/lock -> /run/lock does): one of another user's could be
    pointed elsewhere between the check and the write."""
    own = os.geteuid()
    current = os.sep
    for part in absolute.strip(os.sep).split(os.sep):
        current = os.path.join(current, part)
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            return      # created below, by makedirs
        except OSError as error:
            raise ConfigError("cannot check %s %s: %s: %s"
                              % (what, path, current, error.strerror)) from None
        if stat.S_ISLNK(info.st_mode) and info.st_uid not in (own, 0):
            raise ConfigError("refusing %s %s: %s is a symbolic link owned by uid %d; other "
                              "users could make cronpolicy overwrite files"
                              % (what, path, current, info.st_uid))


def planted(info):
    """What makes the file of ``info`` (an lstat, or the fstat of what was
    opened) one another user may have planted to have cronpolicy write
    elsewhere: a symbolic link of another user's (root's and this user's
    own are followed), or a plain file with a second name (a hard link to
    another's file, in /tmp, where fs.protected_hardlinks is 0); None when
    neither.  (The SQLite file and --log-file; a lock file takes no link.)"""
    if stat.S_ISLNK(info.st_mode) and info.st_uid not in (os.geteuid(), 0):
        return "it is a symbolic link owned by uid %d" % info.st_uid
    if stat.S_ISREG(info.st_mode) and info.st_nlink != 1:
        return "it has %d names (a planted hard link?)" % info.st_nlink
    return None


def create_exclusive(path, mode=0o600):
    """A new file at ``path``, never an existing one nor through a link."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                   mode)


#: What the refusals call each kind of file that is not a plain one.
_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _not_plain(mode):
    """Why a file of ``mode`` (st_mode) is refused, or None for a plain file."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "of another kind")
    return "it is %s, not a plain file" % kind


def _refusal(path, problem):
    import errno
    from cronpolicy.errors import NotAPlainFile
    return NotAPlainFile(errno.EEXIST, problem, path)


def replace_problem(path):
    """Why the file at ``path`` must not be replaced by a new one, or None
    (nothing there yet, or a plain file).  Renaming over a device, a FIFO
    or a socket destroys the node (/dev/null, as root); over a directory it
    fails.  A symbolic link is refused too, whatever it points to: the
    rename would destroy the link (/dev/stdout is one), and writing through
    it instead could write anywhere another user pointed it."""
    try:
        return _not_plain(os.lstat(path).st_mode)
    except OSError:
        return None         # nothing there, or the write says what is wrong


def check_replaceable(path):
    """Raise NotAPlainFile (an OSError, exit 2) unless ``path`` may be replaced."""
    problem = replace_problem(path)
    if problem is not None:
        raise _refusal(path, problem)


def write_atomically(path, write, mode=0o600, durable=False):
    """Replace ``path`` with what ``write(handle)`` writes (see write_beside),
    renamed over ``path``, so a reader finds the old file or the new one.
    Only a plain file (or nothing) is replaced: anything else at ``path``
    raises NotAPlainFile before anything is written, and again just before
    the rename (see replace_problem).  The one atomic writer: every file
    cronpolicy replaces goes through here, or through its two halves
    (crontab wrap writes all its files beside their targets first, then
    renames them, see tooling/crontab/files.py)."""
    check_replaceable(path)
    temporary = write_beside(path, write, mode, durable)
    try:
        replace_with(temporary, path)
    except BaseException:
        remove_quietly(temporary)
        raise


def write_beside(path, write, mode=0o600, durable=False, binary=False):
    """The name of a new file beside ``path`` (in its directory: a rename
    within one file system is atomic) holding what ``write(handle)`` wrote.
    Its name is unpredictable (never an existing file, never through a
    link) and begins with a dot: no cron reads such a file in a crontab
    directory, no reader here lists it.  ``durable``: on disk before it
    is returned, so that a power cut after the rename cannot leave the new
    name on an empty file (a cache, rewritten at the next start, need not
    pay for it).  ``binary``: the handle takes bytes."""
    directory, name = os.path.split(path)
    temporary = os.path.join(directory, ".%s.%d-%s.tmp" % (name, os.getpid(),
                                                           os.urandom(8).hex()))
    descriptor = create_exclusive(temporary, mode)
    try:
        with open(descriptor, "wb") if binary else \
                open(descriptor, "w", encoding="utf-8", errors="surrogateescape") as handle:
            write(handle)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
    except BaseException:
        remove_quietly(temporary)
        raise
    return temporary


def replace_with(temporary, path):
    """Rename ``temporary`` (from write_beside) over ``path``, unless what
    is at ``path`` may not be replaced (NotAPlainFile): checked as late as
    can be, in case it was made meanwhile."""
    check_replaceable(path)
    os.replace(temporary, path)


def remove_quietly(path):
    """Remove ``path`` if it can be: a temporary file given up on."""
    try:
        os.unlink(path)
    except OSError:
        pass


def open_plain_file(path, follow_links=False):
    """A descriptor reading the plain file at ``path``, or NotAPlainFile:
    a FIFO or a device is never even opened (an open can block forever,
    or act: /dev/watchdog), and a symbolic link is not followed unless
    ``follow_links``."""
    info = (os.stat if follow_links else os.lstat)(path)
    problem = _not_plain(info.st_mode)
    if problem is None:
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_links
                                                               else os.O_NOFOLLOW)
        descriptor = os.open(path, flags)
        opened = os.fstat(descriptor)
        if (opened.st_dev, opened.st_ino) == (info.st_dev, info.st_ino):
            return descriptor
        os.close(descriptor)            # swapped in between: look again, once
        problem = _not_plain(opened.st_mode) or "it changed while it was opened"
    raise _refusal(path, problem)


def open_lock_file(path):
    """Open (creating) a lock file read-write without following a link, and
    make sure it is a plain file with no other name (not a planted hard link).
    On a read-only file system, or one this user may not write, a lock file
    already there is opened read-only: flock() needs no write, and only the
    pid it names would be missing (a FIFO is not waited on: O_NONBLOCK)."""
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o644)
    except OSError as error:
        import errno
        if error.errno not in (errno.EROFS, errno.EACCES):
            raise
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
                                 | os.O_NONBLOCK)
        except OSError:
            raise error from None
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(descriptor)
        raise ConfigError("refusing lock file %s: it is not a plain file with one name "
                          "(a planted link?)" % path)
    return descriptor
