"""A small fleet made in this process, for deploy slot's reference answer.

``fleet()`` gives (jobs, flights) of six hosts and ten scripts: every
kind of schedule (every minute to weekly), history or a declaration or
neither, policy rows by exact name, by pattern and for one host
(disabled, exempt, needs, interruptible), a standing window, runs in
flight that can and cannot be interrupted, jobs already skipped by
rollouts.  ``QUESTIONS`` are the slot searches asked of it.  The answers
of the planner before the speed-ups of issue 26.6 are kept in
data/slots-reference.json (test_slot_reference.py); only the stable
shapes are used here, so the code before and after reads it alike.
"""

import datetime

from cronpolicy.tooling.planning import Flight, Job
from cronpolicy.rows import DeployState, Inputs, PolicyRow, Window
from cronpolicy.schedule import Schedule

UTC = datetime.timezone.utc
#: Off the 5-minute marks, as a command's now is.
NOW = datetime.datetime(2026, 12, 3, 1, 52, 13, 500000, tzinfo=UTC)
HOSTS = ("web1", "web2", "web3", "web4", "db1", "db2")

#: name: (schedule, or a function of the host number; history seconds or
#: None; declared seconds or None)
SCRIPTS = {
    "sync": ("*/5 * * * *", [50.0, 60.0, 70.0, 65.0], None),
    "heartbeat": ("* * * * *", [2.0, 3.0, 2.5], None),
    "publish-distro": ("0 * * * *", None, 1200.0),
    "report": (lambda number: "%d %d * * *" % (number * 11 % 60, (number * 5 + 1) % 24), None,
               None),
    "backup": ("30 2 * * *", [7000.0, 7400.0, 7200.0], None),
    "mirror": (lambda number: "%d-59/15 * * * *" % (number % 15), None, 240.0),
    "reindex": ("0 */6 * * *", None, 3 * 3600.0),
    "uploads": ("10,40 * * * *", [400.0, 480.0], None),
    "tidy": (lambda number: "%d * * * *" % (number * 7 % 60), None, 90.0),
    "weekly": ("15 3 * * 4", None, 5 * 3600.0),
}

POLICIES = [
    PolicyRow(id=1, name="heartbeat", rollout_exempt=True),
    PolicyRow(id=2, name="upload*", needs="xmlrpc"),
    PolicyRow(id=3, name="tidy", host="db*", enabled=False, reason="disk"),
    PolicyRow(id=4, name="publish-distro", host="web3", expected_runtime=1500.0),
    PolicyRow(id=5, name="*", host="db2", interruptible=True),
    PolicyRow(id=6, name="mirror", expected_runtime=300.0),
]

WINDOWS = [Window(id=7, starts_at=NOW + datetime.timedelta(hours=3),
                  ends_at=NOW + datetime.timedelta(hours=4), reason="db maintenance",
                  host="db*", script="report")]


#: Rollouts in a row that skipped a job already: one more starves these.
STARVING = {("report", "web2"): 2, ("weekly", "db1"): 2, ("mirror", "web4"): 1,
            ("publish-distro", "web1"): 1, ("sync", "db2"): 1}


def fleet(policies=None):
    """(jobs, flights); ``policies``: the rows as the caller wraps them."""
    rows = POLICIES if policies is None else policies
    jobs = []
    for number, host in enumerate(HOSTS):
        for name, (schedule, history, declared) in sorted(SCRIPTS.items()):
            if name in ("backup", "weekly") and not host.startswith("db"):
                continue
            expression = schedule(number) if callable(schedule) else schedule
            inputs = Inputs(NOW, 14, DeployState(False), rows, list(WINDOWS),
                            list(history or []))
            jobs.append(Job(name, host, Schedule(expression), declared, inputs,
                            STARVING.get((name, host), 0)))
    minutes = datetime.timedelta(minutes=1)
    flights = [
        Flight("reindex", "db1", NOW - 100 * minutes, NOW + 47 * minutes + 13 * minutes / 60,
               False, 101),
        Flight("sync", "web2", NOW - minutes, NOW + 30 * minutes / 60, True, 102),
        Flight("publish-distro", "web3", NOW - 40 * minutes, NOW + 12 * minutes, False, 103),
        Flight("backup", "db2", NOW - 30 * minutes, NOW + 190 * minutes, False, 104),
        Flight("uploads", "web1", NOW - 5 * minutes, NOW + 3 * minutes, False, 105,
               ("xmlrpc",)),
    ]
    return jobs, flights


#: (duration, within, host, script, service, count) of each search.
QUESTIONS = [
    (1800.0, 86400.0, "*", "*", None, 5),
    (600.0, 6 * 3600.0, "web*", "*", None, 3),
    (1200.0, 4 * 3600.0, "*", "*", "xmlrpc", 5),
    (3600.0, 14 * 86400.0, "*", "*", None, 2),
    (900.0, 8 * 3600.0, "*", "publish-*", None, 4),
]
