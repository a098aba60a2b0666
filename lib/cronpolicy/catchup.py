"""Catching up a start a rollout skipped: the host's own tickets.

With ``script_policy.catch_up = 'once'``, a start skipped by deploy pending
or a rollout window (never one skipped by a disabled policy) leaves a
ticket on its host: ``<state_dir>/catch-up/cronpolicy-NAME.ticket``, a small
JSON file saying which block skipped it, when, and how the start was
made: its command line, working directory and environment, exactly as cron
started it.  `cronpolicy catch-up`, one crontab line per host (every
minute), starts it again once the block has ended, as a catch-up run
(decision ``catch-up``): once per block however many starts were missed,
since a later skip rewrites the same ticket.

The command comes from the host itself, never from the database: nobody
who can only write the policy database can make a host run anything.  A
ticket is read only from the checked state directory (owned by this user,
no one else may write it) and only if this user owns it and no one else
may write it; it is taken by renaming it, so two catch-up runners never
start the same ticket.
"""

import collections
import errno
import fcntl
import os
import stat
import sys
import time

from cronpolicy.errors import CronPolicyError
from cronpolicy.locking import name_file

#: The environment a catch-up start gets, so its gate records it as one
#: (and only for its own name: a command it runs sees neither).
CATCH_UP_NAME = "CRONPOLICY_CATCH_UP_NAME"
CATCH_UP_BLOCK = "CRONPOLICY_CATCH_UP_BLOCK"

FORMAT = 1
SUFFIX = ".ticket"


def ticket_dir(state_dir):
    return os.path.join(state_dir, "catch-up")


def catching_up(name, environ=None):
    """The block this process's start of ``name`` catches up, or None."""
    environ = os.environ if environ is None else environ
    if environ.get(CATCH_UP_NAME) != name:
        return None
    block = environ.get(CATCH_UP_BLOCK) or None
    try:
        block is not None and block.encode("utf-8")    # recorded with the run
    except UnicodeEncodeError:
        return None         # no block catch-up could have named: not a catch-up
    return block


def without_catch_up(environ):
    """``environ`` without the catch-up marks (for the commands a run starts)."""
    return {key: value for key, value in environ.items()
            if key not in (CATCH_UP_NAME, CATCH_UP_BLOCK)}


def command_line():
    """How this process was started, to start it again: the interpreter,
    then its own arguments as given (``-m module`` included)."""
    original = getattr(sys, "orig_argv", None)
    if original:
        return [sys.executable] + list(original[1:])
    return [sys.executable] + list(sys.argv)


def write_ticket(state_dir, facts, block, skipped_at):
    """Leave (or renew) the ticket of the script ``facts`` (policy.ScriptFacts)
    describe: the first skip of the block keeps its time; the command line
    is this start's.  A file in its place that is no ticket of this user's
    is moved aside (``.rejected``) first, with the reason returned: the
    skip goes on whatever was planted there."""
    from cronpolicy.safety import checked_directory, write_atomically
    directory = checked_directory(ticket_dir(state_dir), "state_dir", 0o700)
    path = name_file(directory, facts.name, SUFFIX)
    first, problem = skipped_at, None
    try:
        existing = read_ticket(path)
    except TicketError as error:
        existing, problem = None, str(error)
        _move_aside(path)
    if existing is not None and existing.get("block") == block:
        first = existing.get("skipped_at", skipped_at)
    import json
    ticket = {"format": FORMAT, "name": facts.name, "host": facts.host, "block": block,
              "skipped_at": first, "argv": command_line(), "cwd": os.getcwd(),
              "env": without_catch_up(os.environ),
              # What the start declared, so catch-up decides as its gate will.
              "facts": {"expected_runtime": facts.expected_runtime,
                        "max_concurrent": facts.max_concurrent,
                        "on_database_error": facts.on_database_error,
                        "needs": list(facts.needs or ())}}
    write_atomically(path, lambda handle: json.dump(ticket, handle), durable=True)
    return path, problem


def facts_of(ticket, host):
    """The policy.ScriptFacts a ticket's start declared, as a catch-up of its block."""
    from cronpolicy.policy import ScriptFacts
    declared = ticket.get("facts") if isinstance(ticket.get("facts"), dict) else {}
    runtime = declared.get("expected_runtime")
    limit = declared.get("max_concurrent")
    needs = declared.get("needs")
    return ScriptFacts(
        ticket["name"], host,
        expected_runtime=runtime if isinstance(runtime, (int, float)) else None,
        max_concurrent=limit if isinstance(limit, int) and limit > 0 else None,
        on_database_error="run" if declared.get("on_database_error") == "run" else "skip",
        catch_up_of=ticket["block"],
        needs=tuple(need for need in needs if isinstance(need, str))
        if isinstance(needs, list) else ())


def _move_aside(path, suffix=".rejected"):
    from cronpolicy.safety import replace_with
    try:
        replace_with(path, path + suffix)   # (over a plain file only)
    except OSError:
        pass


class TicketError(CronPolicyError):
    """A file in the ticket directory that is not a ticket this user may trust."""


def read_ticket(path):
    """The ticket at ``path`` (a dict), or None when there is none; raises
    TicketError for a file that is not one this user wrote."""
    from cronpolicy.safety import open_plain_file
    try:
        descriptor = open_plain_file(path)      # a FIFO there would block catch-up
    except FileNotFoundError:
        return None
    except OSError as error:
        raise TicketError("cannot read %s: %s" % (path, error.strerror)) from None
    import json
    with open(descriptor, encoding="utf-8", errors="surrogateescape") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or \
                info.st_mode & 0o022 or info.st_nlink != 1:
            raise TicketError("refusing %s: not a plain file of this user's that only it "
                              "may write" % path)
        try:
            ticket = json.loads(handle.read(1 << 20))
        except (ValueError, RecursionError) as error:   # (nested past recursion)
            raise TicketError("refusing %s: not a ticket (%s)" % (path, error)) from None
    if not (isinstance(ticket, dict) and ticket.get("format") == FORMAT
            and isinstance(ticket.get("name"), str) and isinstance(ticket.get("block"), str)
            and isinstance(ticket.get("argv"), list) and ticket["argv"]
            and all(isinstance(word, str) for word in ticket["argv"])
            and isinstance(ticket.get("env"), dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in ticket["env"].items())
            and isinstance(ticket.get("cwd"), str)
            and isinstance(ticket.get("skipped_at"), (int, float))):
        raise TicketError("refusing %s: not a ticket of this version" % path)
    ticket["path"] = path
    ticket["inode"] = info.st_ino       # (which file was read: take() takes only that one)
    return ticket


def tickets(state_dir, recover=True):
    """([ticket], [(path, problem)]): the tickets waiting on this host, and
    the files in their directory that are not tickets (moved aside, with
    ``.rejected`` appended, so they are said once).  ``recover``: a ticket
    left taken by a runner that died is a ticket again first."""
    from cronpolicy.safety import checked_directory
    directory = checked_directory(ticket_dir(state_dir), "state_dir", 0o700)
    if recover:
        recover_taken(directory)
    found, refused = [], []
    for entry in sorted(os.listdir(directory)):
        if not entry.endswith(SUFFIX):
            continue
        path = os.path.join(directory, entry)
        try:
            ticket = read_ticket(path)
        except TicketError as error:
            refused.append((path, str(error)))
            _move_aside(path)
            continue
        if ticket is not None:
            found.append(ticket)
    return found, refused


#: A ticket taken for starting: ``path`` its new name, ``descriptor`` the
#: open file holding its flock (for as long as its taker, or the start it
#: made, lives: see take).
Taken = collections.namedtuple("Taken", "path descriptor")
TAKEN = ".taken"


def take(ticket):
    """Take ``ticket`` for starting: a Taken for exactly one taker, else None
    (also when the file there is no longer the one ``ticket`` was read from).
    It is locked (flock) before it is renamed, and the lock lives as long as
    its taker and the start it passes the descriptor to: a taken ticket
    nobody holds was left by a runner that died (kill -9 between taking and
    starting), and the next runner makes it a ticket again (recover_taken).
    The taker removes it once the start is made (``drop``), or keeps it for
    people to see (``failed``)."""
    path = ticket["path"]
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        inode = os.fstat(descriptor).st_ino
        if inode != os.lstat(path).st_ino or inode != ticket.get("inode", inode):
            # Another took it, or a new skip wrote it anew since it was read
            # and judged: the one there now is the next judgement's to start.
            raise FileNotFoundError(path)
        taken = "%s.%d-%d%s" % (path, os.getpid(), int(time.time()), TAKEN)
        os.rename(path, taken)
    except OSError as error:    # held by another taker, or gone
        os.close(descriptor)
        if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise               # no taker may take it: said by the caller
        return None
    return Taken(taken, descriptor)


def recover_taken(directory):
    """Make each ticket left taken by a runner that died (nobody holds its
    lock) a ticket again, unless a newer skip left one in its place; the
    paths recovered."""
    recovered = []
    for entry in sorted(os.listdir(directory)):
        if not entry.endswith(TAKEN):
            continue
        taken = os.path.join(directory, entry)
        try:
            descriptor = os.open(taken, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                                 | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(descriptor)
            continue            # its taker (or the start it made) lives
        try:
            ticket = taken[:-len(TAKEN)].rsplit(".", 1)[0]
            if ticket.endswith(SUFFIX) and not os.path.lexists(ticket):
                os.rename(taken, ticket)
                recovered.append(ticket)
            else:
                os.unlink(taken)    # a newer skip's ticket stands for it
        except OSError:
            pass
        finally:
            os.close(descriptor)
    return recovered


def failed(taken):
    """A taken ticket whose start could not be made: kept as ``.failed``
    beside the others (not tried again; its reason was said)."""
    try:
        os.rename(taken, taken[:-len(TAKEN)] + ".failed")
    except OSError:
        pass


def drop(path):
    """Remove the ticket at ``path``; None, or why it stays (its file
    system read-only, say): the next runner judges it again."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as error:
        return error.strerror
    return None
