"""One instance per host: an flock()ed lock file, as Launchpad's lock_or_die.

The kernel drops an flock when its process dies (even by kill -9), so a
crashed run never leaves a stale lock behind; the pid written into the file
is only there to name the holder in messages.  The lock directory is
checked and the file opened without following links (cronpolicy.safety):
scripts run as root must not be steered into overwriting another file.
"""

import errno
import fcntl
import os

from cronpolicy.errors import ConfigError
from cronpolicy.safety import checked_directory, open_lock_file

_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


class LockHeld(Exception):
    """Another process holds the lock; ``holder_pid`` is its pid if known."""

    def __init__(self, path, holder_pid):
        self.path = path
        self.holder_pid = holder_pid
        super().__init__("%s is held by %s" % (
            path, "pid %d" % holder_pid if holder_pid else "another process"))


def lock_path(lock_dir, name):
    """``cronpolicy-NAME.lock`` (see name_file)."""
    return name_file(lock_dir, name, ".lock")


def name_file(directory, name, suffix):
    """``cronpolicy-NAME`` and ``suffix`` in ``directory``; a name with other
    characters than letters, digits, '.', '_' and '-' (or a long one) gets
    ``cronpolicy-SAFE~HASH`` instead, a hash of the whole name after a '~' no
    plain name holds, so that a/b and a_b, or names differing only beyond
    ASCII, never share a file, and the file name stays short."""
    safe = _sanitized(name)
    if safe == name and len(name) <= 100:
        return os.path.join(directory, "cronpolicy-%s%s" % (name, suffix))
    import hashlib      # only for names that need it
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return os.path.join(directory, "cronpolicy-%s~%s%s" % (safe[:60], digest, suffix))


def legacy_lock_path(lock_dir, name):
    """The lock file versions before schema 11 used for ``name`` (shared by
    names that differ only in their unsafe characters), if it differs."""
    legacy = os.path.join(lock_dir, "cronpolicy-%s.lock" % _sanitized(name))
    return legacy if legacy != lock_path(lock_dir, name) else None


def _sanitized(name):
    """``name`` with every character but letters, digits, '.', '_' and '-' as '_'."""
    return "".join(char if char in _SAFE else "_" for char in name)


class ScriptLock:
    """A non-blocking exclusive lock on ``<lock_dir>/cronpolicy-<name>.lock``."""

    def __init__(self, lock_dir, name):
        self.path = lock_path(lock_dir, name)
        self.legacy_path = legacy_lock_path(lock_dir, name)
        self.lock_dir = lock_dir
        self._fd = None
        self._legacy_fd = None

    def acquire(self):
        """Take the lock or raise LockHeld at once (never waits)."""
        checked_directory(self.lock_dir, "lock_dir")
        fd = self._flock(self.path, fcntl.LOCK_EX)
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, b"%d\n" % os.getpid())
        except OSError:
            # A full (or failing) file system: the flock is held all the
            # same, and the pid only names the holder in messages.
            pass
        if self.legacy_path is not None:
            # An instance started by an older version holds the old file
            # exclusively: while it runs, this one must not.  Shared, so that
            # names that only shared it by accident do not block each other.
            try:
                self._legacy_fd = self._flock(self.legacy_path, fcntl.LOCK_SH,
                                              missing_ok=True)
            except BaseException:
                self.release()
                raise
        return self

    def _flock(self, path, mode, missing_ok=False):
        try:
            fd = open_lock_file(path)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise ConfigError("refusing lock file %s: it is a symbolic link" % path) \
                    from None
            if missing_ok and error.errno == errno.ENAMETOOLONG:
                return None     # no older version could have used it
            raise ConfigError("cannot create lock file %s: %s" % (path, error.strerror)) \
                from None
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read_pid(fd)
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise LockHeld(path, holder) from None
            raise
        return fd

    def release(self):
        for name in ("_legacy_fd", "_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)    # closing drops the flock
                setattr(self, name, None)

    @property
    def held(self):
        return self._fd is not None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()


def _read_pid(fd):
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return int(os.read(fd, 32).split()[0])
    except (OSError, ValueError, IndexError):
        return None

