"""Reading crontab files and writing what wrap or unwrap made of them.

With one crontab the result goes to standard output.  With several, each
result is written either in place (``--in-place``: the file is replaced
atomically, keeping its mode and owner, and its previous content is kept
beside it as ``.NAME.cronpolicy-orig``: no cron reads a file whose name
starts with a dot), or into a directory (``--output-dir DIR``: the file's
absolute path under DIR, so /etc/cron.d/php goes to DIR/etc/cron.d/php).

Nothing is half-written: every new file is first written beside its
target under a temporary dot-name; only when all are written are they
renamed over their targets.  Only a plain file is ever replaced (as by
safety.write_atomically): a target or backup that is a device, a FIFO, a
socket, a directory or a symbolic link is refused before anything is
written, and checked again just before its rename.  A symbolic link is
never written through either.
"""

import collections
import os
import stat

from cronpolicy.errors import NotAPlainFile, UsageError
from cronpolicy.safety import (
    check_replaceable, checked_directory, open_plain_file, remove_quietly, replace_with,
    write_beside)
from cronpolicy.tooling.crontab.host import STDIN
from cronpolicy.tooling.crontab.lines import read_crontab, write_crontab

BACKUP_SUFFIX = ".cronpolicy-orig"

#: A file to write: ``path`` its target, ``text`` the new content,
#: ``like`` the file whose mode and owner it takes (None: 0644, ours),
#: ``backup`` whether it is the copy of a file's previous content,
#: ``previous`` the target's content before (to put back if a later rename fails).
Output = collections.namedtuple("Output", "path text like backup previous",
                                defaults=(False, None))


#: No crontab is longer (cron's own limits are far below): a file that is
#: is not one, and reading it whole could take all the memory.
MAX_BYTES = 4 * 1024 * 1024


def read_bytes(path, what="the crontab"):
    """The bytes of the plain file at ``path``: never a FIFO or device that
    would block or never end (/dev/zero), never more than MAX_BYTES."""
    try:
        with open(open_plain_file(path, follow_links=True), "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except NotAPlainFile:
        raise UsageError("cannot read %s %s: not a plain file" % (what, path)) from None
    except OSError as error:
        raise UsageError("cannot read %s %s: %s" % (what, path, error.strerror)) from None
    except ValueError:          # a NUL in the name (a fleet file may say anything)
        raise UsageError("cannot read %s %r: not a file name" % (what, path)) from None
    return _bounded(data, "%s %s" % (what, path))


def _bounded(data, what):
    if len(data) > MAX_BYTES:
        raise UsageError("%s is longer than %d MB" % (what, MAX_BYTES >> 20))
    return data


def read(path, stdin):
    """The text of the crontab at ``path`` (STDIN: ``stdin``, a binary stream)."""
    if path == STDIN:
        try:
            return read_crontab(_bounded(stdin.read(MAX_BYTES + 1), "standard input"))
        except OSError as error:
            raise UsageError("cannot read standard input: %s" % error.strerror) from None
    return read_crontab(read_bytes(path))


def backup_path(path):
    directory, name = os.path.split(path)
    return os.path.join(directory, "." + name + BACKUP_SUFFIX)


def in_place_outputs(changes):
    """[Output] to replace each changed file, and to keep its backup.
    ``changes``: [(path, old text, new text)]."""
    outputs = []
    for path, old, new in changes:
        if path == STDIN:
            raise UsageError("standard input cannot be written in place: name the file")
        try:
            mode = os.lstat(path).st_mode
        except OSError as error:
            raise UsageError("cannot write %s: %s" % (path, error.strerror)) from None
        if stat.S_ISLNK(mode) or not stat.S_ISREG(mode):
            raise UsageError("will not write %s in place: it is %s; wrap the file it names"
                             % (path, "a symbolic link" if stat.S_ISLNK(mode)
                                else "not a regular file"))
        if old != new:
            outputs.append(Output(backup_path(path), old, path, backup=True))
            outputs.append(Output(path, new, path, previous=old))
    return outputs


def directory_outputs(results, directory):
    """[Output] of each result under ``directory``, at its absolute path.
    ``results``: [(path, new text)]."""
    outputs = []
    for path, new in results:
        if path == STDIN:
            raise UsageError("standard input has no path to write under --output-dir: "
                             "name the file")
        target = os.path.join(directory, os.path.abspath(path).lstrip("/"))
        check_replaceable(target)
        previous = read_crontab(read_bytes(target, "the file under --output-dir")) \
            if os.path.lexists(target) else None
        outputs.append(Output(target, new, path, previous=previous))
    return outputs


def make_directories(top, target):
    """The directories from ``top`` down to ``target``'s, made where missing;
    a symbolic link on the way (planted by another user, say) is refused."""
    relative = os.path.relpath(os.path.dirname(target), top)
    current = top
    for part in [] if relative == "." else relative.split(os.sep):
        current = os.path.join(current, part)
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            os.mkdir(current, 0o755)
            continue
        if stat.S_ISLNK(mode) or not stat.S_ISDIR(mode):
            raise UsageError("will not write under %s: it is %s (nothing was changed)" % (
                current, "a symbolic link" if stat.S_ISLNK(mode) else "not a directory"))


def _held_by_no_other_user(directory):
    """Refuse a directory under --output-dir that another user may change
    (theirs, or writable by them): they could swap a directory on the way
    for a link between make_directories' look and the rename, and have
    root write a crontab wherever it points.  The rule of the state
    directory (safety.checked_directory)."""
    from cronpolicy.errors import ConfigError
    try:
        checked_directory(directory, "--output-dir's directory")
    except ConfigError as error:
        raise UsageError("%s (nothing was changed)" % error) from None


def write_all(outputs, top=None):
    """Write every Output, or (on any error) none of them: a target that is
    a directory is refused before anything is renamed, and a rename that
    fails after others put their targets back (``top``: the --output-dir
    under which missing directories are made)."""
    temporaries = []
    output = None
    try:
        if top is not None:
            os.makedirs(top, exist_ok=True)
        for output in outputs:
            check_replaceable(output.path)
            if top is not None:
                make_directories(top, output.path)
                _held_by_no_other_user(os.path.dirname(output.path))
            temporaries.append((_write_beside(output), output))
    except (OSError, UsageError) as error:
        for temporary, _ in temporaries:
            remove_quietly(temporary)
        if isinstance(error, UsageError) and not isinstance(error, NotAPlainFile):
            raise
        # (The crontab's name, not its temporary's, which no one gave.)
        raise UsageError("cannot write %s: %s (nothing was changed)"
                         % (output.path if output is not None else error.filename or top,
                            error.strerror)) from None
    done = []
    for index, (temporary, output) in enumerate(temporaries):
        try:
            replace_with(temporary, output.path)
        except OSError as error:
            for later, _ in temporaries[index:]:
                remove_quietly(later)
            _put_back(done)
            raise UsageError("cannot write %s: %s (the files written before it were put "
                             "back)" % (output.path, error.strerror)) from None
        done.append(output)


def _write_beside(output):
    """The temporary file of ``output``, with the mode (and, as root, the
    owner) of the file it is like, on disk."""
    def write(handle):
        handle.write(write_crontab(output.text))
        handle.flush()
        if output.like is not None:
            like = os.stat(output.like)
            os.fchmod(handle.fileno(), stat.S_IMODE(like.st_mode))
            if os.geteuid() == 0:
                os.fchown(handle.fileno(), like.st_uid, like.st_gid)
        else:
            os.fchmod(handle.fileno(), 0o644)
    return write_beside(output.path, write, durable=True, binary=True)


def _put_back(done):
    """Undo renames already made: a target gets its previous content again,
    a file that did not exist before is removed (backups stay: harmless)."""
    for output in reversed(done):
        if output.backup:
            continue
        if output.previous is None:
            remove_quietly(output.path)
            continue
        try:
            temporary = _write_beside(output._replace(text=output.previous))
        except OSError:
            continue        # (the error that began the undoing is what is said)
        try:
            replace_with(temporary, output.path)
        except OSError:
            remove_quietly(temporary)
