"""`cronpolicy catch-up`: start once what a rollout skipped, when it is over.

Run from this host's crontab every minute, for each user whose scripts
catch up (the tickets are in that user's state directory)::

    * * * * *  cronpolicy catch-up

For each ticket (cronpolicy.catchup) it asks the rules, as a start now
would be asked, with the block it catches up:

* a rollout still in the way (the same block or another): it waits;
* the script disabled since, or catch_up no longer 'once': the ticket goes;
* the script started for real on this host since it was skipped (its next
  scheduled start came first): the ticket goes, nothing to catch up;
* otherwise the ticket is taken and the start made again, as it was made
  (command line, directory, environment), marked as a catch-up: its gate
  records it with the decision ``catch-up`` and the block.

The catch-ups it starts run side by side, at most ``catch_up_at_once``
(config, default 4) at once on the host for this user: each holds one of
that many slots (flocked files beside the tickets) for as long as it runs,
whichever runner started it and even if that runner died; the others wait
for one of this runner's starts to end (once it has waited, each ticket
it starts after is read and judged again), or, when other runners' hold
every slot, for the next runner.  A ticket is taken (locked, then renamed) only
just before its start; one left taken by a runner that died before it
started it (nobody holds its lock) is a ticket again for the next runner.
It waits for its starts and passes their output through (cron mails it as
their own would have been).  It
says nothing else unless asked (-v: what it waits for, too), and with no
ticket waiting it does not even connect to the database: run every minute,
it mails nobody about nothing.  A start that cannot be made (its
directory is gone, say) is said once, and its ticket kept aside as
``.failed``; exit 1.
"""

import fcntl
import os
import subprocess
import sys

from cronpolicy import catchup, policy
from cronpolicy.errors import CronPolicyError

#: What became of a ticket.
WAITING, DROPPED, STARTED, WOULD_START, FAILED = (
    "waiting", "dropped", "started", "would start", "failed")


def review(settings, tickets):
    """[(ticket, action, reason)] for ``tickets``: what catch-up does with each now."""
    from cronpolicy.store import open_store
    from cronpolicy.store.reads import reading
    found = []
    store = open_store(settings, application_name="cronpolicy-catch-up")
    try:
        with reading(settings, "look for runs since the skips") as reader:
            for ticket in tickets:
                found.append((ticket,) + _judge(settings, store, reader, ticket))
    finally:
        store.close()
    return found


def _judge(settings, store, reader, ticket):
    name, block = ticket["name"], ticket["block"]
    facts = catchup.facts_of(ticket, ticket.get("host") or settings.host)
    inputs = store.load_inputs(name, settings.estimate_runs)
    verdict = policy.decide(inputs, facts, settings)
    if not verdict.run:
        if verdict.code == policy.DISABLED:
            return DROPPED, "disabled since it was skipped: %s" % verdict.reason
        return WAITING, verdict.reason
    if verdict.catch_up != policy.CATCH_UP_ONCE:
        return DROPPED, "its policy no longer says catch_up = once"
    from cronpolicy.rows import to_time
    if reader.ran_since(name, facts.host, to_time(ticket["skipped_at"])):
        return DROPPED, "it has started since it was skipped"
    return STARTED, "%s is over" % policy.describe_block(block)


def start(ticket, pass_fds=()):
    """Start the ticket's command as a catch-up; the Popen, or None (said).
    ``pass_fds``: the locks it holds for as long as it lives."""
    env = dict(ticket["env"], **{catchup.CATCH_UP_NAME: ticket["name"],
                                 catchup.CATCH_UP_BLOCK: ticket["block"]})
    if not os.path.isdir(ticket["cwd"]):
        print("cronpolicy catch-up: cannot start %s: its directory %s is gone (ticket kept "
              "as .failed)" % (ticket["name"], ticket["cwd"]), file=sys.stderr)
        return None
    try:
        return subprocess.Popen(ticket["argv"], cwd=ticket["cwd"], env=env, pass_fds=pass_fds)
    except OSError as error:
        print("cronpolicy catch-up: cannot start %s (%s): %s (ticket kept as .failed)" % (
            ticket["name"], ticket["argv"][0], error.strerror), file=sys.stderr)
        return None


def free_slot(directory, count):
    """The descriptor of a free one of this host's ``count`` catch-up slots,
    taken (flock), or None when every one is held.  A start is given its
    slot's descriptor: the slot stays taken while it runs, even when the
    runner that started it is gone (kill -9), and frees itself when it ends."""
    from cronpolicy.safety import open_lock_file
    for number in range(count):
        descriptor = open_lock_file(os.path.join(directory, ".slot-%d.lock" % number))
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return descriptor
        except OSError:
            os.close(descriptor)
    return None


def slot_when_free(directory, count, children):
    """(descriptor, waited): free_slot, waiting for one of ``children`` (this
    runner's starts) to end while every slot is held; the descriptor None when
    they are held by others' only."""
    waited = False
    while True:
        descriptor = free_slot(directory, count)
        alive = [child for _, child in children if child.poll() is None]   # (reaps the rest)
        if descriptor is not None or not alive:
            return descriptor, waited
        waited = True
        try:        # until one ends (not reaped here: poll() above reaps it)
            os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass


def run(settings, dry_run=False):
    """Review every ticket and act; returns ([row dict], refused files, all started).
    At most ``settings.catch_up_at_once`` starts run at once on this host
    (for this user): the others wait, this runner's starts ending first, or
    for the next runner when others' hold every slot."""
    directory = catchup.ticket_dir(settings.state_dir)
    if not os.path.isdir(directory):
        return [], [], True         # nothing ever skipped here: no database needed
    tickets, refused = catchup.tickets(settings.state_dir, recover=not dry_run)
    if not tickets:
        return [], refused, True
    rows, children, started_all = [], [], True
    stale = [False]     # whether this runner has waited since it judged the tickets
    for ticket, action, reason in review(settings, tickets):
        if action == DROPPED and not dry_run:
            reason = _dropped(ticket, reason)
        elif action == STARTED and dry_run:
            action = WOULD_START
        elif action == STARTED:
            slot, ticket, action, reason = _slot_for(settings, directory, ticket, children,
                                                     reason, stale)
            if action is None:
                continue            # another catch-up took it while this one waited
            if action == FAILED:
                started_all = False
            if slot is not None:
                try:
                    action, child = _start_taken(ticket, slot)
                except OSError as error:    # its file system read-only, say
                    action, child = FAILED, None
                    reason = "cannot take its ticket to start it: %s" % error.strerror
                if action is None:
                    continue        # another catch-up took it, or a new skip rewrote it
                if child is None:
                    started_all = False
                else:
                    children.append((ticket["name"], child))
        rows.append({"name": ticket["name"], "block": ticket["block"],
                     "skipped_at": ticket["skipped_at"], "action": action, "reason": reason})
    for name, child in children:
        code = child.wait()
        for row in rows:
            if row["name"] == name:
                row["exit_code"] = code
    return rows, refused, started_all


def _slot_for(settings, directory, ticket, children, reason, stale):
    """(slot descriptor, ticket, STARTED, reason) for a ticket judged
    (``reason``) to start; else (None, ticket, action, reason) when no slot
    is free for it, or when, judged again after waiting for one, it no
    longer starts: its next scheduled start (or a rollout, or disabling)
    came during the wait.  After a wait the ticket is read again and the
    one found is judged (a new skip may have written another in its place,
    which the old one's judgement must not drop); action None when it is
    gone (another runner took it).  ``stale``: [whether this runner has
    waited since the tickets were judged], set here: a ticket that finds a
    slot free without waiting itself (one a ticket judged again let go) was
    judged before that wait all the same."""
    try:
        slot, waited = slot_when_free(directory, settings.catch_up_at_once, children)
    except OSError as error:        # no slot file can be made: a read-only file system
        return None, ticket, FAILED, "cannot take a catch-up slot: %s" % error.strerror
    stale[0] = stale[0] or waited
    if slot is None:
        return None, ticket, WAITING, ("%d catch-up runs are going on this host, as many "
                                       "as catch_up_at_once allows"
                                       % settings.catch_up_at_once)
    if not stale[0]:
        return slot, ticket, STARTED, reason
    try:
        current = catchup.read_ticket(ticket["path"])
        if current is None:
            os.close(slot)
            return None, ticket, None, None
        ticket = current
        [(_, action, reason)] = review(settings, [ticket])
    except CronPolicyError as error:
        action, reason = WAITING, "cannot judge it again after waiting for a slot: %s" % error
    except BaseException:
        os.close(slot)
        raise
    if action == STARTED:
        return slot, ticket, action, reason
    os.close(slot)
    if action == DROPPED:
        reason = _dropped(ticket, reason)
    return None, ticket, action, reason


def _dropped(ticket, reason):
    """Drop ``ticket``: ``reason``, with why its file stays when it does."""
    problem = catchup.drop(ticket["path"])
    if problem is None:
        return reason
    return "%s; its ticket stays, cannot remove it: %s" % (reason, problem)


def _start_taken(ticket, slot):
    """Take ``ticket`` and start it holding ``slot`` (a descriptor, closed
    here): (STARTED, Popen), (FAILED, None), or (None, None) when another
    runner took it first, or a new skip wrote it anew since it was read
    (the next runner judges that one)."""
    try:
        taken = catchup.take(ticket)
        if taken is None:
            return None, None
        try:
            child = start(ticket, pass_fds=(slot, taken.descriptor))
            if child is None:
                catchup.failed(taken.path)
                return FAILED, None
            catchup.drop(taken.path)
            return STARTED, child
        finally:
            os.close(taken.descriptor)
    finally:
        os.close(slot)


def add_arguments(parsers):
    """The parser of catch-up (see cli.CommandParsers)."""
    add, common, reader = parsers.add, parsers.common, parsers.reader
    sub = add("catch-up", "cmd_catch_up", parents=(common, reader))
    sub.add_argument("--dry-run", action="store_true", help="say what it would start, start "
                                                            "nothing, keep every ticket")
    sub.add_argument("-v", "--verbose", action="store_true",
                     help="also say which tickets wait, and why")


def cmd_catch_up(args, settings):
    from cronpolicy import exitcodes
    from cronpolicy.rows import to_time
    from cronpolicy.timeutil import format_time
    from cronpolicy.tooling.cli import database_note
    from cronpolicy.tooling.output import print_json
    rows, refused, started_all = run(settings, dry_run=args.dry_run)
    for path, problem in refused:
        print("cronpolicy catch-up: %s (moved aside)" % problem, file=sys.stderr)
    if args.json:
        for row in rows:
            row["skipped_at"] = to_time(row["skipped_at"])
        print_json(rows, "tickets")
    else:
        said = [row for row in rows
                if row["action"] != WAITING or args.verbose or args.dry_run]
        # (Only with something to say: said every minute, it would be mailed.)
        note = database_note(settings) if said else None
        if note:
            print(note)
        for row in said:
            print("%s: %s (skipped at %s by %s): %s%s" % (
                row["name"], row["action"], format_time(to_time(row["skipped_at"])),
                policy.describe_block(row["block"]), row["reason"],
                "; exit code %d" % row["exit_code"] if "exit_code" in row else ""))
    return exitcodes.OK if started_all else exitcodes.FAILED

