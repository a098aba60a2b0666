"""`deploy plan` and `deploy slot`: what a rollout would meet, and when to start it.

Both read the fleet without SQLAlchemy (store.reads) and hand the rest to
the pure ``cronpolicy.tooling.planning``, which asks the real rules at each
scheduled start.  ``gather`` collects what they plan with: every job (a
script on a host, its schedule, its estimate as the gate computes it, how
many rollouts in a row skipped it) and every run in flight now.

Deciding as on "some host" for a host pattern: a start of a script on a
host the pattern covers is planned with that host's own policy rows.
"""

import datetime

from cronpolicy import policy
from cronpolicy.tooling import planning
from cronpolicy.errors import UsageError
from cronpolicy.matching import glob_matches, is_pattern, parse_needs
from cronpolicy.shapes import shape
from cronpolicy.timeutil import UTC, format_duration, format_time, parse_time

_EPOCH = datetime.datetime(2000, 1, 1, tzinfo=UTC)

#: How many of a script's newest runs are read for what its starts declared.
RECENT_RUNS = 100


def _estimate(settings, inputs, name, host, recorded):
    """The estimate a start of ``name`` would decide with (seconds): the
    gate's own, the script's declared runtime taken from what its latest
    start recorded."""
    return policy.runtime_estimate(inputs, policy.ScriptFacts(
        name, host, expected_runtime=recorded), settings).seconds


#: What a rollout plan reads: the decision ``inputs`` (no history), the
#: ``jobs`` ([planning.Job]) and ``flights`` ([planning.Flight]); ``live``:
#: every run in flight, rollout-exempt ones too, as status shows them;
#: ``history``: {name: its newest runs, all hosts (host, status,
#: started_at and needs at least)}.
Fleet = shape("Fleet", "inputs jobs flights live history")


def gather(settings, host="*", script="*", warn=None):
    """The Fleet of the scripts and hosts ``host`` and ``script`` (globs)
    cover; dead runs recorded first."""
    from cronpolicy.store.reads import reading
    with reading(settings, "plan the rollout", reap=True) as reader:
        return gather_of(reader, settings, host, script, warn)


def gather_of(reader, settings, host="*", script="*", warn=None, history=True,
              recent_pairs=None):
    """``gather`` as ``reader`` (store.reads.Reader) reads it, in its
    transaction, recording nothing.  ``history`` False: the caller needs
    neither the scripts' recent starts (Fleet.history is then empty) nor
    what they declared they need (each job's needs are then empty): overdue
    and metrics, which ask only schedules, estimates and rollouts in a row.
    ``recent_pairs``: as fleet_schedules takes it."""
    from cronpolicy.tooling.schedules import RECENT, fleet_schedules
    inputs = reader.inputs()
    found = fleet_schedules(reader, inputs, warn, host=host, script=script,
                            recent_pairs=recent_pairs)
    live = [run for run in reader.live_runs(inputs.now, host)
            if glob_matches(script, run["name"])]
    names = sorted({name for name, _ in found} | {run["name"] for run in live})
    history = reader.recent_starts_of_each(names, RECENT_RUNS) if history else {}
    in_a_row = reader.rollouts_in_a_row_of_each({name for name, _ in found})
    declared = declarations(reader.declared_runtimes(inputs.now - RECENT))
    # Each script's history as its gate reads it; the rest from the one
    # snapshot, whose policy rows are indexed once for the fleet.
    runtimes = reader.recent_runtimes_of_each(names, settings.estimate_runs)
    by_name = {name: inputs._replace(recent_runtimes=runtimes[name]) for name in names}
    # What each script declared it needs at its newest start on each host
    # that declared any (history is newest first).
    needs = {}
    for name, runs in history.items():
        for run in runs:
            if run["needs"] is not None:
                needs.setdefault((name, run["host"]), run["needs"])
    jobs = []
    for (name, on), schedule in found.items():
        jobs.append(planning.Job(name, on, schedule, declared(name, on),
                                 by_name[name], in_a_row[name].get(on, 0),
                                 parse_needs(needs[name, on]) if (name, on) in needs else ()))
    flights = []
    for run in live:
        run["exempt"] = policy.rollout_exempt(inputs.policies, run["name"], run["host"])
        if run["exempt"]:
            continue            # rollouts never wait for it
        end = run["predicted_finish"] or run["started_at"] + datetime.timedelta(
            seconds=_estimate(settings, by_name[run["name"]], run["name"], run["host"],
                              declared(run["name"], run["host"])))
        always = policy.decide(by_name[run["name"]], policy.ScriptFacts(
            run["name"], run["host"]), settings).interruptible
        flights.append(planning.Flight(run["name"], run["host"], run["started_at"], end,
                                       bool(always or run["safe_to_interrupt"]), run["id"],
                                       parse_needs(run["needs"])))
    jobs, flights = _believed(settings, jobs, flights, warn)
    return Fleet(inputs, jobs, flights, live, history)


def _believed(settings, jobs, flights, warn=None):
    """(jobs, flights) without those whose runtime no plan believes
    (planning.runtime_problem), each named in a warning: one absurd row
    leaves its own job out, never the whole answer."""
    from cronpolicy.matching import matching_policies
    said, believed_jobs, believed_flights = {}, [], []
    # A script's jobs on many hosts share its history (one inputs), and
    # mostly its rows and declaration: each estimate is worked out once.
    # And a script with enough history has that estimate on every host,
    # whatever its rows (policy.history_estimate): those of the rest are
    # worked out per script, declaration and rows.
    known, from_history = {}, {}
    for job in jobs:
        estimate = job.estimate or from_history.get(id(job.inputs), known)
        if estimate is known:
            estimate = from_history[id(job.inputs)] = policy.history_estimate(
                job.inputs, settings)
        if estimate is None:
            key = (job.name, id(job.inputs), job.expected_runtime, tuple(
                row.id for row in matching_policies(job.inputs.policies, job.name, job.host)))
            estimate = known.get(key)
            if estimate is None:
                estimate = known[key] = planning.job_estimate(job, settings)
        problem = planning.runtime_problem(estimate.seconds)
        if problem:
            said.setdefault((job.name, "%s (%s)" % (problem, estimate.source)), []).append(
                job.host)
        else:
            believed_jobs.append(job._replace(estimate=estimate))     # (worked out once)
    for flight in flights:
        problem = planning.runtime_problem((flight.expected_end - flight.started_at)
                                           .total_seconds())
        if problem:
            said.setdefault((flight.name, "its run in flight since %s: %s" % (
                format_time(flight.started_at), problem)), []).append(flight.host)
        else:
            believed_flights.append(flight)
    for (name, why), hosts in sorted(said.items()):
        if warn is not None:
            warn("%s on %s left out: %s" % (name, _hosts_named(hosts), why))
    return believed_jobs, believed_flights


def _hosts_named(hosts, shown=3):
    hosts = sorted(hosts)
    if len(hosts) <= shown:
        return ", ".join(hosts)
    return "%s and %d more hosts" % (", ".join(hosts[:shown]), len(hosts) - shown)


def declarations(declared):
    """A function of (name, host): the runtime the script declares (seconds,
    or None), from ``declared`` (Reader.declared_runtimes): its latest
    start on that host that decided with its declaration (a later one may
    have decided with a policy row or its history, which say nothing of
    it), else its latest on any host (a host whose crontab is registered
    and that has not run it yet)."""
    anywhere = {}
    for (name, host), (seconds, started_at) in declared.items():
        if name not in anywhere or (started_at, host) > anywhere[name][1:]:
            anywhere[name] = (seconds, started_at, host)

    def declared_runtime(name, host):
        found = declared.get((name, host)) or anywhere.get(name)
        return found[0] if found else None
    return declared_runtime


def _rollout_start(text, now):
    at = parse_time(text, now)
    if at < now - datetime.timedelta(minutes=1):
        raise UsageError("the rollout time %s is in the past (the database says now is %s)"
                         % (format_time(at), format_time(now)))
    return max(at, now)


def plan(settings, at, duration, host="*", script="*", service=None, warn=None):
    """What a rollout starting at ``at`` (text: ISO time or +D) for
    ``duration`` seconds would mean, changing nothing (a dict)."""
    parse_time(at, _EPOCH)
    inputs, jobs, flights, live, _ = gather(settings, host, script, warn)
    now = inputs.now
    at_time = _rollout_start(at, now)
    rollout = planning.Rollout(at_time, duration, host, script, service)
    window = planning.rollout_window(rollout)
    # (Starts from the rollout's own neighbourhood only: a plan a year
    # ahead need not walk a year of a per-minute job.)
    planner = planning.Planner(jobs, flights, settings, now, window.ends_at, since=at_time)
    cost = planner.cost(rollout)
    # Per script, decided as on "some host" the host pattern covers: no
    # host-specific policy row, the planned window covering it.
    policy_host = host if not is_pattern(host) else "*"
    first = {}
    for job in jobs:
        first.setdefault(job.name, job)
    scripts = [_planned(first[name], policy_host, settings,
                        window._replace(host=policy_host), at_time) for name in sorted(first)
               if planner.covers(rollout._replace(host="*"), first[name])]
    flown = {flight.run_id: flight for flight in flights}
    waits = {flight.run_id: wait for flight, wait in planner.in_flight(rollout)}
    for run in live:
        flight = flown.get(run["id"])
        run["expected_end"] = flight.expected_end if flight else run["predicted_finish"]
        run["interruptible"] = bool(flight and flight.interruptible)
        run["running_at"] = run["expected_end"] is None or run["expected_end"] > at_time
        run["wait_seconds"] = waits.get(run["id"], 0.0)
    return {"now": now, "at": at_time, "duration_seconds": duration,
            "ends_at": window.ends_at, "host": host, "script": script, "service": service,
            "cutoff_margin": settings.cutoff_margin, "skipped": scripts,
            "default_runtime": planner.default_runtime(),
            "skipped_starts": [start._asdict() for start in cost.skipped],
            "running": live, "wait_seconds": cost.wait,
            "starving": [{"name": name, "host": on, "rollouts_in_a_row": next(
                job.starving for job in jobs if (job.name, job.host) == (name, on)) + 1}
                for name, on in cost.starved]}


def _planned(job, host, settings, window, at_time):
    """A script's row of the plan: from when its starts are skipped (the
    cut-off before the rollout) and what a start now would be told."""
    inputs = job.inputs._replace(windows=list(job.inputs.windows) + [window])
    verdict = policy.decide(inputs, planning.job_facts(job)._replace(host=host), settings)
    exempt = policy.rollout_exempt(inputs.policies, job.name, host)
    cutoff = policy.cutoff_at(at_time, verdict.estimate.seconds, settings.cutoff_margin)
    return {"name": job.name, "estimate_seconds": verdict.estimate.seconds,
            "source": verdict.estimate.source, "runs_considered": len(inputs.recent_runtimes),
            "cutoff_at": max(cutoff, inputs.now) if not exempt else None,
            "already": cutoff <= inputs.now and not exempt,
            "decision": verdict.code, "disabled": verdict.code == policy.DISABLED,
            "exempt": exempt}


#: How far ahead `deploy slot` looks at most, and how many times it weighs
#: at most (every 5 minutes, or every within/MAX_CANDIDATES when longer).
MAX_WITHIN = 14 * 86400.0
MAX_CANDIDATES = 288


def slots(settings, duration, within, host="*", script="*", service=None, count=5, step=300.0,
          warn=None):
    """The ``count`` best times to start a rollout of ``duration`` seconds
    within ``within`` seconds (a dict: ``candidates`` best first, each with
    its cost and reasons, and ``jobs`` for the timeline).  Jobs that run
    alike on many hosts are weighed once, times their number of hosts."""
    if within > MAX_WITHIN:
        raise UsageError("--within: at most %s" % format_duration(MAX_WITHIN))
    inputs, jobs, flights, _, _ = gather(settings, host, script, warn)
    return propose(settings, jobs, flights, inputs.now, duration, within, host, script,
                   service, count, step)


def propose(settings, jobs, flights, now, duration, within, host="*", script="*",
            service=None, count=5, step=300.0):
    """What ``slots`` answers, for a fleet already gathered: ``jobs`` and
    ``flights`` as of ``now`` (pure)."""
    step = max(step, within / MAX_CANDIDATES)
    until = now + datetime.timedelta(seconds=within + duration + TIMELINE_SPAN)
    ranking = planning.Planner(_alike(jobs), flights, settings, now, until)
    planner = planning.Planner(jobs, flights, settings, now, until)
    candidates = []
    for start, _ in ranking.best_slots(duration, within, step, host, script, count, service):
        rollout = planning.Rollout(start, duration, host, script, service)
        cost = planner.cost(rollout)
        near = {(job.name, job.host): planner.runs_near(job, rollout, TIMELINE_SPAN)
                for job in planner.jobs}
        candidates.append({
            "starts_at": start, "ends_at": planning.ends_at(rollout),
            "wait_seconds": cost.wait, "skip_weight_seconds": cost.weight,
            "skipped_starts": [skipped._asdict() for skipped in cost.skipped],
            "waits": [{"name": flight.name, "host": flight.host,
                       "expected_end": flight.expected_end, "seconds": seconds}
                      for flight, seconds in cost.waits],
            "starving": [{"name": name, "host": on} for name, on in cost.starved],
            "reasons": reasons(planner, rollout, cost, near),
            "timeline": timeline(planner, rollout, cost, near)})
    return {"now": now, "duration_seconds": duration, "within_seconds": within,
            "host": host, "script": script, "service": service,
            "default_runtime": planner.default_runtime(), "candidates": candidates}


def _alike(jobs):
    """``jobs`` with those alike on several hosts (same script, schedule,
    declarations, history, policy rows and standing windows over them)
    made one Job with its copies."""
    groups = {}
    for job in jobs:
        groups.setdefault(planning.alike_key(job), []).append(job)
    return [group[0]._replace(copies=sum(job.copies for job in group))
            for group in groups.values()]


#: How long before and after a rollout the reasons and the timeline look.
TIMELINE_SPAN = 2 * 3600.0


def reasons(planner, rollout, cost, near=None):
    """Why this slot, in words people check: what it waits for, what it
    skips, and the long runs it fits between.  ``near``: {(name, host):
    planner.runs_near(job, rollout, TIMELINE_SPAN)}, when the caller has
    it (the timeline draws the same runs)."""
    said = ["waits %s for %s on %s (cannot be interrupted; expected to end %s)" % (
        format_duration(seconds), flight.name, flight.host, format_time(flight.expected_end))
        for flight, seconds in cost.waits]
    said += ["skips %s on %s at %s (%s)" % (start.name, start.host, format_time(start.at),
                                             _every(planner, start))
             for start in cost.skipped[:5]]
    if len(cost.skipped) > 5:
        said.append("and %d more skipped starts" % (len(cost.skipped) - 5))
    said += ["starves %s on %s (skipped by %d rollouts in a row)" % (
        name, on, planning.STARVING_AFTER) for name, on in cost.starved]
    window = planning.rollout_window(rollout)
    hour = datetime.timedelta(hours=1)
    avoided = []
    for job in planner.jobs:
        if planner.estimate(job) < 60 or not planner.covers(rollout, job):
            continue
        runs = planner.runs_near(job, rollout, 3600.0) if near is None else [
            (start, end) for start, end in near[job.name, job.host]
            if window.starts_at - hour <= start < window.ends_at + hour]
        for start, end in runs:
            if end <= window.starts_at or start >= window.ends_at:
                gap = min(abs((window.starts_at - end).total_seconds()),
                          abs((start - window.ends_at).total_seconds()))
                avoided.append((gap, -planner.estimate(job), job.name, start, end))
    named = {}
    for _, _, name, start, end in sorted(avoided):     # each job once: its nearest run
        named.setdefault(name, (start, end))
        if len(named) == 3:
            break
    for name, (start, end) in named.items():
        said.append("avoids %s %s-%s" % (name, start.strftime("%H:%M"), end.strftime("%H:%M")))
    return said or ["nothing scheduled near it"]


def _every(planner, start):
    job = next(job for job in planner.jobs if (job.name, job.host) == (start.name, start.host))
    return "runs every %s" % format_duration(planner.skip_weight(job))


def timeline(planner, rollout, cost=None, near=None, width=48):
    """A small picture, one line per script the slot affects: '#' where it
    runs, 'x' a start the rollout skips, and the rollout itself as '='.
    ``cost`` and ``near`` (see reasons), when the caller has them."""
    window = planning.rollout_window(rollout)
    begin = window.starts_at - datetime.timedelta(seconds=TIMELINE_SPAN)
    end = window.ends_at + datetime.timedelta(seconds=TIMELINE_SPAN)
    column = (end - begin).total_seconds() / width

    def cell(moment):
        return min(width - 1, max(0, int((moment - begin).total_seconds() // column)))
    lines = [("rollout", "".join("=" if window.starts_at <= begin + datetime.timedelta(
        seconds=(index + 0.5) * column) < window.ends_at else "." for index in range(width)))]
    marked = {}
    for start in (cost or planner.cost(rollout)).skipped:
        marked.setdefault((start.name, start.host), []).append(start)
    for job in sorted(planner.jobs, key=lambda job: (job.name, job.host)):
        runs = planner.runs_near(job, rollout, TIMELINE_SPAN) if near is None \
            else near[job.name, job.host]
        marks = marked.get((job.name, job.host), [])
        if not runs and not marks:
            continue
        row = ["."] * width
        for start, stop in runs:
            for index in range(cell(start), cell(min(stop, end)) + 1):
                row[index] = "#"
        for mark in marks:
            row[cell(mark.at)] = "x"
        lines.append(("%s@%s" % (job.name, job.host), "".join(row)))
    axis = "%s%s%s" % (format_time(begin)[11:16], " " * (width - 10), format_time(end)[11:16])
    return {"from": begin, "to": end, "axis": axis, "lines": lines}
