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

The catch-ups it starts run side by side; it waits for them and passes
their output through (cron mails it as their own would have been).  It
says nothing else unless asked (-v: what it waits for, too), and with no
ticket waiting it does not even connect to the database: run every minute,
it mails nobody about nothing.  A start that cannot be made (its
directory is gone, say) is said once, and its ticket kept aside as
``.failed``; exit 1.
"""

import os
import subprocess
import sys

from cronpolicy import catchup, policy

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


def start(ticket):
    """Start the ticket's command as a catch-up; the Popen, or None (said)."""
    env = dict(ticket["env"], **{catchup.CATCH_UP_NAME: ticket["name"],
                                 catchup.CATCH_UP_BLOCK: ticket["block"]})
    if not os.path.isdir(ticket["cwd"]):
        print("cronpolicy catch-up: cannot start %s: its directory %s is gone (ticket kept "
              "as .failed)" % (ticket["name"], ticket["cwd"]), file=sys.stderr)
        return None
    try:
        return subprocess.Popen(ticket["argv"], cwd=ticket["cwd"], env=env)
    except OSError as error:
        print("cronpolicy catch-up: cannot start %s (%s): %s (ticket kept as .failed)" % (
            ticket["name"], ticket["argv"][0], error.strerror), file=sys.stderr)
        return None


def run(settings, dry_run=False):
    """Review every ticket and act; returns ([row dict], refused files, all started)."""
    if not os.path.isdir(catchup.ticket_dir(settings.state_dir)):
        return [], [], True         # nothing ever skipped here: no database needed
    tickets, refused = catchup.tickets(settings.state_dir)
    if not tickets:
        return [], refused, True
    rows, children, started_all = [], [], True
    for ticket, action, reason in review(settings, tickets):
        if action == DROPPED and not dry_run:
            catchup.drop(ticket["path"])
        elif action == STARTED:
            taken = None if dry_run else catchup.take(ticket)
            if dry_run:
                action = WOULD_START
            elif taken is None:
                continue            # another catch-up took it meanwhile
            else:
                child = start(ticket)
                if child is None:
                    action, started_all = FAILED, False
                    catchup.failed(taken)
                else:
                    catchup.drop(taken)
                    children.append((ticket["name"], child))
        rows.append({"name": ticket["name"], "block": ticket["block"],
                     "skipped_at": ticket["skipped_at"], "action": action, "reason": reason})
    for name, child in children:
        code = child.wait()
        for row in rows:
            if row["name"] == name:
                row["exit_code"] = code
    return rows, refused, started_all


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
        print_json(rows)
    else:
        said = [row for row in rows
                if row["action"] != WAITING or args.verbose or args.dry_run]
        # (Only with something to say: said every minute, it would be mailed.)
        note = database_note(settings) if said else None
        if note:
            print(note)
        for row in said:
            print("%s: %s (skipped by %s since %s): %s%s" % (
                row["name"], row["action"], policy.describe_block(row["block"]),
                format_time(to_time(row["skipped_at"])), row["reason"],
                "; exit code %d" % row["exit_code"] if "exit_code" in row else ""))
    return exitcodes.OK if started_all else exitcodes.FAILED

