"""What `cronpolicy serve` shows, as plain dicts: each is a JSON view at a
stable URL, and the HTML page is drawn from the same dicts.

Everything is read in one transaction per view through the functions the
commands use (``fleet.status_of`` for `status`, ``deploy.blocking_runs``
for `deploy wait`, ``rollouts.recorded`` for `rollouts`,
``rollout_plans.slots`` for `deploy slot`, ``explain.explain`` for `why`),
and nothing is written: not even dead runs are recorded as abandoned (a
run whose lease ran out is shown as lost; the login may only read).

Every answer is bounded, whatever the fleet: at most ``MAX_RUNS`` runs
read, ``MAX_ROWS`` timeline rows drawn (the running ones first, then the
busiest), ``MAX_STARTS_PER_ROW`` scheduled starts per row; what was left
out is counted in the answer (``rows_left_out``, ``runs_cut``).
"""

import datetime
import logging
import threading
import time

from cronpolicy.errors import UsageError
from cronpolicy.matching import glob_matches, name_problem
from cronpolicy.timeutil import parse_duration

#: The runs read for a timeline, newest first.
MAX_RUNS = 5000
#: Timeline rows (one per script and host) drawn at most, and by default.
MAX_ROWS = 1000
ROWS = 200
#: Scheduled starts drawn per row (an every-minute job needs no more to be seen).
MAX_STARTS_PER_ROW = 60
#: How far back and ahead a timeline may reach.
MAX_HOURS = 48.0
#: Runs of one script shown on its page.
SCRIPT_RUNS = 50


def _hours(text, default, what):
    if text in (None, ""):
        return default
    try:
        seconds = parse_duration(text if not str(text).replace(".", "", 1).isdigit()
                                 else "%sh" % text)
    except UsageError as error:
        raise UsageError("%s: %s" % (what, error)) from None
    if not 0 < seconds <= MAX_HOURS * 3600:
        raise UsageError("%s: from a second to %dh" % (what, MAX_HOURS))
    return seconds


def _glob(text, what):
    text = text or "*"
    if len(text) > 255 or any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise UsageError("%s: not a name pattern" % what)
    return text


def _count(text, default, most, what):
    if text in (None, ""):
        return default
    try:
        value = int(text)
    except ValueError:
        raise UsageError("%s: not a whole number" % what) from None
    if not 1 <= value <= most:
        raise UsageError("%s: from 1 to %d" % (what, most))
    return value


class Query:
    """The filters a view takes from its URL (``args``: a mapping of
    strings), checked: UsageError (a 400) for what is not."""

    def __init__(self, args):
        self.back = _hours(args.get("back"), 6 * 3600.0, "back")
        self.ahead = _hours(args.get("ahead"), 6 * 3600.0, "ahead")
        self.host = _glob(args.get("host"), "host")
        self.script = _glob(args.get("script"), "script")
        self.rows = _count(args.get("rows"), ROWS, MAX_ROWS, "rows")

    def as_dict(self):
        return {"back_seconds": self.back, "ahead_seconds": self.ahead, "host": self.host,
                "script": self.script, "rows": self.rows}


def _db(settings, cache={}):
    """One tooling Database (an engine) per settings, for the server's life."""
    from cronpolicy.tooling.database import Database
    key = id(settings)
    if key not in cache:
        cache[key] = Database(settings, application_name="cronpolicy-serve")
    return cache[key]


def _reading(settings, doing):
    """(db, a context giving a SQLAlchemy connection in a reading transaction)."""
    db = _db(settings)
    return db, db.read(doing)


def writable_tables(settings):
    """What this login may change: a list of tables (PostgreSQL), or None
    on SQLite, where whoever may write the file may write everything."""
    from cronpolicy.store.reads import Reader
    db, transaction = _reading(settings, "read what this login may change")
    with transaction as connection:
        return Reader.of(connection, db).writable_tables()


def _waits(db, connection, host="*"):
    """deploy wait's look (deploy.Look), recording nothing: for each open
    rollout the runs in its way, and whether anything asks scripts to stop."""
    from cronpolicy.store.reads import Reader
    from cronpolicy.tooling.deploy import blocking_runs
    return blocking_runs(Reader.of(connection, db), host=host, reap=False)


def _rollouts_waiting(state, look):
    """The open rollouts of ``state`` (fleet.status_of), each with what it
    waits for (deploy wait's runs, each with its ETA) and when it should
    be quiet."""
    found = []
    for rollout in state["rollouts"]:
        runs = look.covered.get(rollout["id"], []) if look is not None else []
        etas = [run["predicted_finish"] for run in runs]
        unknown = any(eta is None for eta in etas)
        found.append(dict(
            rollout, waits_for=[_run_view(run, state["now"]) for run in runs],
            quiet_eta=None if unknown or not etas else max(etas),
            quiet_eta_unknown=unknown,
            unsafe=sum(1 for run in runs if not run["safe_to_interrupt"])))
    return found


def _run_view(run, now):
    """A running run as the page shows it: how long it has run, when it
    should end and in how long, whether it may be stopped now."""
    found = dict(run)
    finish = run.get("predicted_finish")
    found["eta_seconds"] = ((finish - now).total_seconds() if finish is not None else None)
    found["safe_to_stop"] = bool(run.get("safe_to_interrupt"))
    return found


def live(settings, host="*"):
    """The open rollouts with what each still waits for, and the running
    runs: the facts `deploy wait` and `status` show, for the page's poll."""
    from cronpolicy.store.reads import Reader
    from cronpolicy.tooling import rollouts
    db, transaction = _reading(settings, "read the open rollouts")
    with transaction as connection:
        reader = Reader.of(connection, db)
        look = _waits(db, connection, host)
        now = look.now
        described = [dict(found, problem=rollouts.problem(found, now)) for found in (
            rollouts.describe(row, now, settings.default_rollout_expect)
            for row in look.rollouts.values())]
        running = reader.live_runs(now, host)
    state = {"now": now, "rollouts": described}
    return {"now": now, "stop_asked": look.stop_asked,
            "rollouts": _rollouts_waiting(state, look),
            "running": [_run_view(run, now) for run in running]}


class Schedules:
    """Every script's schedule on every host, kept by the server: working
    them out takes seconds on a fleet of 10,000 jobs (the policy rows a
    schedule may come from, each expression read), and they change when a
    host imports its crontab, not from one poll to the next.  Read again
    every ``every`` seconds by a thread of the server (``keep``); each
    pair's next start is worked out again only once it has passed."""

    def __init__(self, settings, every=30.0):
        self.settings = settings
        self.every = every
        self.found = {}             # {(name, host): Schedule}
        self.next = {}              # {(name, host): its next start, as last worked out}
        self.read_at = None         # the database clock when they were read
        self._lock = threading.Lock()

    def refresh(self):
        from cronpolicy.store.reads import reading
        from cronpolicy.tooling.schedules import fleet_schedules
        with reading(self.settings, "read the schedules",
                     application_name="cronpolicy-serve") as reader:
            inputs = reader.inputs()
            found = {pair: schedule for pair, schedule in fleet_schedules(
                reader, inputs, scheduled_only=True).items() if schedule is not None}
        with self._lock:
            self.found, self.next, self.read_at = found, {}, inputs.now

    def keep(self):
        """Refresh every ``every`` seconds, in a daemon thread, for the
        server's life (a failed read is logged, and tried again)."""
        def loop():
            while True:
                time.sleep(self.every)
                try:
                    self.refresh()
                except Exception as error:      # (the next look tries again)
                    logging.getLogger("cronpolicy.serve").warning(
                        "cronpolicy serve: schedules not read again: %s", error)
        threading.Thread(target=loop, name="cronpolicy-schedules", daemon=True).start()

    def of(self, host, script):
        """{(name, host): Schedule} among ``host`` and ``script`` (globs)."""
        with self._lock:
            found = self.found
        if host == "*" and script == "*":
            return found
        return {pair: schedule for pair, schedule in found.items()
                if glob_matches(script, pair[0]) and glob_matches(host, pair[1])}

    def next_start(self, pair, schedule, now):
        found = self.next.get(pair)
        if found is None or found <= now:
            found = self.next[pair] = schedule.next_after(now)
        return found


def overview(settings, query, schedules):
    """The page: the open rollouts (what each waits for), windows, the
    running runs, and the timeline of each script on each host from
    ``query.back`` ago to ``query.ahead`` from now: its runs, its scheduled
    starts (from ``schedules``, a Schedules)."""
    from cronpolicy.store.reads import Reader
    from cronpolicy.tooling.fleet import status_of
    known = schedules.of(query.host, query.script)
    db, transaction = _reading(settings, "read the fleet")
    with transaction as connection:
        reader = Reader.of(connection, db)
        state = status_of(reader, settings, None, query.host, query.script, schedules={})
        now = state["now"]
        look = _waits(db, connection, query.host) if state["rollouts"] else None
        since = now - datetime.timedelta(seconds=query.back)
        runs = [run for run in reader.fleet_runs_since(since, MAX_RUNS + 1)
                if glob_matches(query.host, run["host"]) and glob_matches(query.script,
                                                                         run["name"])]
    until = now + datetime.timedelta(seconds=query.ahead)
    runs_cut = len(runs) > MAX_RUNS
    runs = runs[:MAX_RUNS]
    live_ids = {run["id"]: run for run in state["running"]}
    rows = {}

    def row(name, host):
        return rows.setdefault((name, host), {
            "name": name, "host": host, "runs": [], "starts": [], "schedule": None,
            "schedule_tz": None, "next_start": None, "running": 0})
    for run in state["running"]:
        row(run["name"], run["host"])["running"] += 1
    for run in runs:
        shown = _run_view(live_ids.get(run["id"], run), now)
        if run["status"] == "running" and run["id"] not in live_ids:
            shown["status"] = "lost"        # lease ran out; not yet recorded as abandoned
        row(run["name"], run["host"])["runs"].append(shown)
    for pair, schedule in known.items():
        next_start = schedules.next_start(pair, schedule, now)
        if pair in rows or (next_start is not None and next_start < until):
            row(*pair).update(schedule=schedule, next_start=next_start)
    chosen = sorted(rows.values(), key=lambda r: (-r["running"], -len(r["runs"]),
                                                   r["next_start"] is None,
                                                   r["next_start"] or now, r["host"],
                                                   r["name"]))[:query.rows]
    starts = {}
    for found in chosen:
        schedule = found["schedule"]
        if schedule is not None:
            if schedule not in starts:      # (alike on many hosts: worked out once)
                starts[schedule] = schedule.starts_between(now, until, MAX_STARTS_PER_ROW)
            found.update(starts=starts[schedule], schedule=schedule.expression,
                         schedule_tz=schedule.tz)
        found["runs"].reverse()             # oldest first, as drawn
    chosen.sort(key=lambda r: (r["host"], r["name"]))
    windows = state["active_windows"] + state["upcoming_windows"]
    return {
        "now": now, "from": since, "until": until, "query": query.as_dict(),
        "deploy": state["deploy"], "services": state["services"],
        "rollouts": _rollouts_waiting(state, look),
        "windows": [window for window in windows if window["starts_at"] < until],
        "running": [_run_view(run, now) for run in state["running"]],
        "disabled_policies": state["disabled_policies"],
        "rows": chosen, "rows_left_out": len(rows) - len(chosen), "runs_cut": runs_cut,
        "schedules_read_at": schedules.read_at,
    }


def rollout_history(settings, limit=20):
    """`cronpolicy rollouts`: the newest rollouts, open or ended, what each cost."""
    from cronpolicy.tooling.rollouts import recorded
    now, found = recorded(settings, limit)
    return {"now": now, "rollouts": found}


def slots(settings, args):
    """`deploy slot`: the best times to start a rollout of ``duration``
    within ``within`` (from the URL's arguments), each with what it would
    skip and wait for."""
    from cronpolicy.tooling.rollout_plans import slots as best_slots
    duration = _hours(args.get("duration") or "30m", None, "duration")
    within = _hours(args.get("within") or "24h", None, "within")
    count = _count(args.get("count"), 3, 10, "count")
    service = args.get("service") or None
    if service is not None and not all(char.isascii() and (char.isalnum() or char in "_.-")
                                       for char in service):
        raise UsageError("service: letters, digits, '_', '.', '-'")
    return best_slots(settings, duration, within, host=_glob(args.get("host"), "host"),
                      script=_glob(args.get("script"), "script"), service=service, count=count)


def script(settings, name):
    """One script: its last runs with the decision behind each (`why`),
    its estimate and schedule per host, the policy rows that match it, and
    the audit of their changes."""
    problem = name_problem(name or "")
    if problem:
        raise UsageError(problem)
    from cronpolicy.tooling.explain import explain, with_documents_normalized
    from cronpolicy.tooling.history import estimates
    from cronpolicy.store.reads import Reader
    runs = explain(settings, name, SCRIPT_RUNS)
    hosts = sorted({run["host"] for run in runs}) or ["*"]
    found = {"name": name, "runs": runs, "estimates": []}
    for host in hosts:
        for estimate in estimates(settings, [name], host):
            found["estimates"].append(dict(estimate, host=host))
    db, transaction = _reading(settings, "read the policy rows")
    with transaction as connection:
        reader = Reader.of(connection, db)
        policies = [row._asdict() for row in reader.policies()
                    if glob_matches(row.name, name)]
        audit = []
        for policy_row in policies:
            audit += reader.audit_before("script_policy", policy_row["id"], reader.now())
    found["policies"] = policies
    found["audit"] = sorted((with_documents_normalized(entry) for entry in audit),
                            key=lambda entry: entry["id"], reverse=True)
    return found
