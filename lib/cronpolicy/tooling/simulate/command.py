"""`cronpolicy simulate`: days of a fleet under each rollout strategy; its
options checked, the fleet read (inputs), played (play), reported (report)."""

import copy
import datetime
import os

from cronpolicy.arguments import positive_int
from cronpolicy.errors import UsageError
from cronpolicy.timeutil import UTC
from cronpolicy.tooling import planning, simulation
from cronpolicy.tooling.simulate.inputs import (
    from_crontabs, from_database, is_utf8, load_fleet, note, seconds_of, service_problem)
from cronpolicy.tooling.simulate.play import (
    DEFAULT_BEGIN, needed_services, random_readies, run_seeds)
from cronpolicy.tooling.simulation import short_duration as _short

#: The longest play the command accepts: a week takes seconds, a quarter minutes.
MAX_DAYS = 92
MAX_ROLLOUTS = 10000
#: The slot search (strategy d) looks at most this far past the ready time,
#: as `deploy slot --within` does.
MAX_TOLERANCE = 14 * 86400.0
#: Slot search (strategy d): at most this many candidate slots over all
#: rollouts (the reference play weighs 700).
MAX_SLOTS = 20000
#: The most work one play may take, in units of about 13 microseconds here
#: (about two minutes; the estimate is high rather than low): each rollout
#: costs each instance about 12 (c: cut-offs, the wait, the overdue
#: count), and d about one more per slot and half hour of deploy (the
#: planner weighs each job's starts in each candidate), more when many
#: windows are announced at once (each start weighed is matched to each).
MAX_WORK = 10000000


def work(instances, readies, strategies, knobs):
    """The units of work (MAX_WORK) a play of the rollouts ready at
    ``readies`` (in order) over ``instances`` job instances takes."""
    per_instance = 12.0
    if "cronpolicy-slot" in strategies:
        slots = knobs.tolerance // knobs.step + 1
        per_instance += slots * (1 + knobs.duration / 1800.0) * (
            1 + _most_at_once(readies, knobs.announce + knobs.duration) / 5.5)
    return instances * len(readies) * per_instance


def _most_at_once(readies, span):
    """The most ready times within ``span`` seconds of one another (the
    windows announced at once)."""
    most, first = 0, 0
    for last, ready in enumerate(readies):
        while (ready - readies[first]).total_seconds() > span:
            first += 1
        most = max(most, last - first + 1)
    return most


#: The simulated days begin between these (every time a play reaches stays
#: within what datetime holds).
EARLIEST_START = datetime.datetime(1971, 1, 1, tzinfo=UTC)
LATEST_START = datetime.datetime(9000, 1, 1, tzinfo=UTC)
#: The most seeds one play takes.
MAX_SEEDS = 100


def strategies_from_words(text):
    """--strategies a,b0,c (letters or names) as a tuple of names, in the given order."""
    chosen = []
    for word in (part.strip() for part in text.split(",")):
        name = simulation.STRATEGY_LETTERS.get(word, word)
        if name not in simulation.STRATEGIES:
            raise UsageError("--strategies: no strategy %r (%s or %s)" % (
                word, ", ".join(simulation.STRATEGY_LETTERS), ", ".join(simulation.STRATEGIES)))
        if name not in chosen:
            chosen.append(name)
    return tuple(chosen)


def knobs_from_args(args):
    """simulation.Knobs from the command's options, each checked."""
    values = {}
    for field, option, least in (("duration", "--duration", None), ("lead", "--lead", 0.0),
                                 ("announce", "--announce", 0.0),
                                 ("max_wait", "--max-wait", None),
                                 ("tolerance", "--tolerance", 0.0), ("grace", "--grace", 0.0),
                                 ("step", "--step", 60.0)):
        seconds = seconds_of(getattr(args, field), option)
        if seconds != seconds or seconds > 365 * 86400:
            raise UsageError("%s: at most a year: %r" % (option, getattr(args, field)))
        if (least is None and seconds <= 0) or (least is not None and seconds < least):
            raise UsageError("%s must be %s: %r" % (
                option, "longer than 0" if least is None else "at least %gs" % least,
                getattr(args, field)))
        values[field] = seconds
    if values["duration"] > planning.MAX_ROLLOUT_DURATION:
        raise UsageError("--duration: at most a day: %r" % args.duration)
    if values["tolerance"] > MAX_TOLERANCE:
        raise UsageError("--tolerance: at most 14d (deploy slot looks no further)")
    return simulation.Knobs(**values)


def instances_from_args(args, settings):
    sources = [bool(args.fleet), bool(args.crontab), args.from_database]
    if sum(sources) != 1:
        raise UsageError("give the fleet one way: a FLEET file, --crontab files, or "
                         "--from-database")
    if (args.model or args.default_model) and not args.crontab:
        raise UsageError("--model and --default-model go with --crontab (a fleet file has "
                         "its models; the database, its history)")
    if args.fleet:
        return load_fleet(args.fleet), ()
    if args.crontab:
        if any(word.rpartition("=")[2] in ("", "-") for word in args.crontab):
            raise UsageError("--crontab: name a file ([HOST=]FILE; not standard input)")
        return from_crontabs(args.crontab, args.model, args.default_model, args.system), ()
    return from_database(settings)


def add_arguments(parsers):
    """The parser of simulate (see cli.CommandParsers)."""
    add, common, reader = parsers.add, parsers.common, parsers.reader
    sub = add("simulate", "cmd_simulate", parents=(common, reader))
    sub.add_argument("fleet", nargs="?", metavar="FLEET",
                     help="a fleet file: hosts, their crontabs, a runtime model per job "
                          "(benchmarks/workload/fleet.json is the reference)")
    sub.add_argument("--crontab", action="append", default=[], metavar="[HOST=]FILE",
                     help="a crontab file of a host (repeat; host: the file's name)")
    sub.add_argument("--model", action="append", default=[],
                     metavar="NAME=MEDIAN,P95[,true|false|safe:EVERY]",
                     help="a job's runtimes (lognormal) and whether it may be interrupted")
    sub.add_argument("--default-model", metavar="MEDIAN,P95[,...]",
                     help="the model of the jobs --model does not name")
    sub.add_argument("--from-database", action="store_true",
                     help="the schedules the policy database knows, models from their history")
    sub.add_argument("--days", type=float, default=7.0, help="how long to play (default 7)")
    sub.add_argument("--rollouts", type=int, default=10,
                     help="how many rollouts, at random times (default 10)")
    sub.add_argument("--at", action="append", metavar="TIME",
                     help="a rollout ready at this time instead (ISO 8601, or +D from --start; "
                          "repeat)")
    sub.add_argument("--start", metavar="TIME", help="when the play begins, ISO 8601 (default "
                                                     "2026-01-05T00:00Z, a Monday)")
    sub.add_argument("--seed", default="1", help="runtimes and rollout times follow from it")
    sub.add_argument("--seeds", type=int, default=1, metavar="N",
                     help="play N seeds from --seed on; each figure is their median and range")
    sub.add_argument("--warm-up", metavar="D",
                     help="play this long before --start with no rollout, to fill the jobs' "
                          "histories (default: long enough for every job's estimate)")
    sub.add_argument("--code-share", type=float, default=0.0, metavar="F",
                     help="this fraction of the rollouts are code-only (default 0)")
    sub.add_argument("--restart", metavar="S[,S...]",
                     help="the services a code-only rollout restarts (default: every service "
                          "a job needs)")
    sub.add_argument("--system", action="store_true",
                     help="--crontab files have a user field (system crontabs), whatever "
                          "their path")
    sub.add_argument("--picture-at", metavar="TIME",
                     help="--svg draws the rollout ready nearest this time (default: the one "
                          "with cronpolicy's median stall)")
    for option, default, text in (
            ("--duration", "30m", "how long a deploy takes once the fleet is quiet"),
            ("--lead", "1h", "a: how long before the rollout the crontabs are disabled"),
            ("--announce", "1d", "c, d: how long ahead the rollout window is announced"),
            ("--max-wait", "30m", "a, b: how long runs are awaited before they are killed"),
            ("--tolerance", "1h", "d: how far past ready the rollout may move"),
            ("--step", "10m", "d: the slots tried, this far apart"),
            ("--grace", "10m", "what a run is allowed beyond its estimate before it is "
                               "overdue")):
        sub.add_argument(option, default=default,
                         help="%s (default %s)" % (text, default))
    sub.add_argument("--margin", metavar="D", help="the cut-off margin (default: the "
                                                   "configured cutoff_margin)")
    sub.add_argument("--strategies", default="a,a0,b,b0,c,d",
                     help="which to play (default a,a0,b,b0,c,d; a0 and b0: a and b "
                          "awaiting what may not be stopped, never killing)")
    sub.add_argument("--workers", type=positive_int, help="processes (default: one per CPU)")
    sub.add_argument("--svg", metavar="FILE",
                     help="also draw one rollout under each strategy and every stall here")


def cmd_simulate(args, settings):
    from cronpolicy import exitcodes
    from cronpolicy.timeutil import parse_time
    from cronpolicy.tooling.simulate import report
    restart, warm_up = _checked_numbers(args)
    knobs = knobs_from_args(args)
    strategies = strategies_from_words(args.strategies)
    begin, end, at = _days_and_times(args)
    settings = _with_margin(args, settings)
    _check_picture_and_slots(args, strategies, knobs, at)
    instances, policies = instances_from_args(args, settings)
    _check_restart(args.code_share, restart, needed_services(instances, policies))
    readies = at or random_readies(begin, end, args.rollouts, args.seed, knobs)
    units = work(len(instances), readies, strategies, knobs) * args.seeds
    if units > MAX_WORK:
        raise UsageError("a play of %d job instances and %d rollouts is too long (up to %d "
                         "minutes): fewer rollouts, seeds, jobs or d's slots" % (
                             len(instances), len(readies), units * 13e-6 / 60 + 1))
    at_picture = parse_time(args.picture_at, begin) if args.picture_at is not None \
        else at[0] if len(at) == 1 else None
    plays = run_seeds(instances, settings, args.days, args.rollouts, at, strategies,
                      args.seed, begin, knobs, args.workers, detail=bool(args.svg),
                      policies=policies, seeds=args.seeds, warm_up=warm_up,
                      code_share=args.code_share, restart=restart)
    first = plays[0].states[strategies[0]]
    warm_up = first.fleet.warm_up
    restart = restart if restart is not None else needed_services(instances, policies)
    cold = first.fleet.cold(settings.estimate_min_runs)
    if cold:
        note("%d job%s had fewer than %d runs after the warm-up of %s (estimated from the "
             "runtime they declare, their model's p95): %s%s" % (
                 len(cold), "" if len(cold) == 1 else "s", settings.estimate_min_runs,
                 _short(warm_up), ", ".join(cold[:5]), ", ..." if len(cold) > 5 else ""))
    if args.svg:
        report.write_picture(args.svg, plays[0].states, knobs, at_picture)
    play = report.Play(instances, plays, begin, end, args.days, args.seed, warm_up, cold,
                       args.code_share, restart, knobs)
    if args.json:
        report.print_json_report(play)
    else:
        report.print_text_report(play)
    return exitcodes.OK


def _checked_numbers(args):
    """(--restart's services or None, --warm-up's seconds or None), once
    --days, --rollouts, --seeds, --seed and --code-share are checked."""
    if not 0 < args.days <= MAX_DAYS:
        raise UsageError("--days: more than 0 and at most %d: %g" % (MAX_DAYS, args.days))
    if not 0 <= args.rollouts <= MAX_ROLLOUTS:
        raise UsageError("--rollouts: from 0 to %d: %d" % (MAX_ROLLOUTS, args.rollouts))
    if not 1 <= args.seeds <= MAX_SEEDS:
        raise UsageError("--seeds: from 1 to %d: %d" % (MAX_SEEDS, args.seeds))
    if not (args.seed.isprintable() and is_utf8(args.seed) and len(args.seed) <= 200):
        raise UsageError("--seed: printable text of at most 200 characters: %r" % args.seed)
    if not (args.code_share == args.code_share and 0 <= args.code_share <= 1):
        raise UsageError("--code-share: a fraction from 0 to 1: %r" % args.code_share)
    restart = None
    if args.restart is not None:
        restart = tuple(sorted({word.strip() for word in args.restart.split(",")}))
        bad = [word for word in restart if service_problem(word)]
        if bad:
            raise UsageError("--restart: %s" % service_problem(bad[0]))
    warm_up = None
    if args.warm_up is not None:
        warm_up = seconds_of(args.warm_up, "--warm-up") if args.warm_up != "0" else 0.0
        if not 0 <= warm_up <= simulation.MAX_WARM_UP:
            raise UsageError("--warm-up: from 0 to %dd: %r" % (
                simulation.MAX_WARM_UP // 86400, args.warm_up))
    if args.system and not args.crontab:
        raise UsageError("--system goes with --crontab (a fleet file's crontabs are read as "
                         "their paths say)")
    return restart, warm_up


def _days_and_times(args):
    """(begin, end, the --at times in order) of the simulated days."""
    from cronpolicy.timeutil import parse_time
    begin = _start(args.start) if args.start else DEFAULT_BEGIN
    end = begin + datetime.timedelta(days=args.days)
    if len(args.at or ()) > MAX_ROLLOUTS:
        raise UsageError("--at: at most %d rollouts: %d" % (MAX_ROLLOUTS, len(args.at)))
    at = sorted(parse_time(text, begin) for text in args.at or ())
    outside = [moment for moment in at if not begin <= moment < end]
    if outside:
        raise UsageError("--at %s is not within the simulated days (%s to %s)" % (
            outside[0].isoformat(), begin.isoformat(), end.isoformat()))
    return begin, end, at


def _with_margin(args, settings):
    """``settings``, with --margin's cutoff margin if it is given."""
    if args.margin is None:
        return settings
    settings = copy.copy(settings)
    settings.cutoff_margin = seconds_of(args.margin, "--margin")
    if not 0 <= settings.cutoff_margin <= 86400:
        raise UsageError("--margin: from 0 to a day: %r" % args.margin)
    return settings


def _check_restart(code_share, restart, needed):
    """A code-only rollout must stop some job under c and d: one restarting
    only services no job needs would stop nothing there (and everything
    under a and b), making cronpolicy's stall and skips 0 for a typo."""
    if not code_share:
        return
    if not needed:
        raise UsageError("--code-share: no job needs a service, so a code-only rollout would "
                         "stop no job (give the models \"needs\")")
    unknown = sorted(set(restart or ()) - set(needed))
    if unknown:
        raise UsageError("--restart: no job needs %s, so restarting it stops no job (the "
                         "services jobs need: %s)" % (", ".join(unknown), ", ".join(needed)))


def _check_picture_and_slots(args, strategies, knobs, at):
    """Before the play: --svg names a file that may be written, and strategy
    d has no more slots to weigh than MAX_SLOTS."""
    if args.svg is not None:
        if not args.svg or args.svg.endswith(os.sep) \
                or not os.path.isdir(os.path.dirname(os.path.abspath(args.svg))):
            raise UsageError("--svg %s: not a file in a directory" % args.svg)
        from cronpolicy.safety import check_replaceable
        check_replaceable(args.svg)
    if "cronpolicy-slot" in strategies:
        slots = (len(at) or args.rollouts) * (knobs.tolerance // knobs.step + 1) * args.seeds
        if slots > MAX_SLOTS:
            raise UsageError("%d slots to weigh (rollouts times --tolerance over --step, times "
                             "--seeds): at most %d" % (slots, MAX_SLOTS))


def _start(text):
    """--start: an ISO 8601 time (no `now`: a play is not about today)."""
    from cronpolicy.timeutil import parse_time
    if text.strip().lower().startswith(("now", "+", "-")):
        raise UsageError("--start: an ISO 8601 time such as 2026-01-05T00:00Z: %r" % text)
    begin = parse_time(text, DEFAULT_BEGIN)
    if not EARLIEST_START <= begin <= LATEST_START:
        raise UsageError("--start: from %s to %s: %r" % (
            EARLIEST_START.year, LATEST_START.year, text))
    return begin
