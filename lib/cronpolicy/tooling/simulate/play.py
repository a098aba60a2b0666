"""The plays of a simulation: each seed's fleet under each strategy, in a
pool of processes (one per CPU) that Ctrl-C and SIGTERM stop whole, and
that dies with its parent.  The play of one strategy is
cronpolicy.tooling.simulation's."""

import bisect
import collections
import datetime
import os

from cronpolicy.errors import CronPolicyError, UsageError
from cronpolicy.timeutil import UTC
from cronpolicy.tooling import simulation

#: Where the simulated days begin unless told: a Monday, so that weekly
#: jobs fall as they would.
DEFAULT_BEGIN = datetime.datetime(2026, 1, 5, tzinfo=UTC)


#: The strategies, costliest first: a pool hands them out in this order.
COSTLIEST_FIRST = ("cronpolicy-slot", "cronpolicy", "on-off-no-kills", "on-off",
                   "all-stop-no-kills", "all-stop")


#: One seed's play: its seed, ready times, kinds, and {strategy: state}.
Played = collections.namedtuple("Played", "seed readies kinds states")


def seeds_from(seed, count):
    """``count`` seeds from --seed: consecutive numbers from a number
    (1, 2, 3...), else the seed and "SEED/2", "SEED/3"..."""
    seed = str(seed)
    if seed.isdigit() and len(seed) < 30:
        return [str(int(seed) + offset) for offset in range(count)]
    return [seed] + ["%s/%d" % (seed, offset + 1) for offset in range(1, count)]


def needed_services(instances, policies=()):
    """Every service some job needs (its model's, or its policy row's), sorted."""
    from cronpolicy import policy
    from cronpolicy.rows import Inputs
    found = set()
    for instance in instances:
        facts = policy.ScriptFacts(instance.name, instance.host, needs=instance.model.needs)
        found.update(policy.effective_needs(Inputs(None, None, None, list(policies), [], ()), facts)
                     if policies else instance.model.needs)
    return tuple(sorted(found))


def run(instances, settings, days=7.0, rollouts=10, at=(), strategies=simulation.STRATEGIES,
        seed="1", begin=DEFAULT_BEGIN, knobs=simulation.Knobs(), workers=None, detail=True,
        policies=(), warm_up=0.0, code_share=0.0, restart=None):
    """({strategy: simulation state}, ready times) of one seed: run_seeds' first."""
    played = run_seeds(instances, settings, days, rollouts, at, strategies, seed, begin, knobs,
                       workers, detail, policies, 1, warm_up, code_share, restart)[0]
    return played.states, played.readies


def run_seeds(instances, settings, days=7.0, rollouts=10, at=(),
              strategies=simulation.STRATEGIES, seed="1", begin=DEFAULT_BEGIN,
              knobs=simulation.Knobs(), workers=None, detail=True, policies=(), seeds=1,
              warm_up=None, code_share=0.0, restart=None):
    """[Played], one a seed (seeds_from(seed, seeds)).  The plays of each
    seed and strategy go to ``workers`` processes (default: one per CPU):
    each plays alone on its seed's fleet, so the figures do not depend on
    it.  ``detail`` False: a state played in another process comes back
    with its figures (simulation.summary) and rollouts but without its runs
    and skips, which only the picture reads (and it only the first seed's,
    which alone come back with ``detail``): sending those back (some
    400000 objects a strategy for a week of the reference fleet) takes
    longer than playing two of the strategies.  ``policies``: the rows the
    rules see (none for a fleet from files).  ``warm_up``: seconds played
    before ``begin`` to fill the jobs' histories (None: long enough for
    each job's estimate_min_runs, simulation.default_warm_up).
    ``code_share`` of the rollouts are code-only, restarting ``restart``
    (None: every service a job needs)."""
    end = begin + datetime.timedelta(days=days)
    if warm_up is None:
        warm_up = simulation.default_warm_up(instances, begin, settings.estimate_min_runs)
    if restart is None:
        restart = needed_services(instances, policies)
    schedules, plays = {}, []
    for text in seeds_from(seed, seeds):
        try:
            fleet = simulation.Fleet(instances, begin, end, text, policies, warm_up, settings,
                                     schedules)
        except simulation.TooLarge as error:
            raise UsageError(str(error)) from None
        readies = sorted(at) if at else random_readies(begin, end, rollouts, text, knobs)
        plays.append((fleet, readies, simulation.rollout_kinds(len(readies), code_share, text)))
    order = sorted(strategies, key=lambda name: COSTLIEST_FIRST.index(name))
    tasks = [(number, name) for name in order for number in range(len(plays))]
    workers = min(len(tasks), workers or len(os.sched_getaffinity(0)))
    import gc
    frozen = gc.get_freeze_count()
    try:
        if workers <= 1:
            states = {task: _play_one(plays[task[0]], task[1], knobs, settings, restart)
                      for task in tasks}
        else:
            states = _in_processes(plays, tasks, knobs, settings, restart, workers, detail)
    finally:
        # What _no_collection froze, collected as usual again; unless this
        # process had frozen objects of its own before (the CLI and a
        # CronScript's import freeze theirs on purpose): they stay frozen,
        # the plays' with them (their objects are freed when dropped, as
        # ever; only a cycle among them would wait).
        if not frozen:
            gc.unfreeze()
    return [Played(fleet.seed, readies, kinds,
                   {name: states[number, name] for name in strategies})
            for number, (fleet, readies, kinds) in enumerate(plays)]


def _play_one(play, strategy, knobs, settings, restart):
    fleet, readies, kinds = play
    with _no_collection():
        state = simulation.simulate(fleet, strategy, readies, knobs, settings, kinds, restart)
        state.figures = simulation.summary(state)
    return state


class _no_collection:
    """Without the cyclic garbage collector, enabled again after (if it
    was): a play makes some 400000 runs and skips that live until it ends,
    and its collections (every 700 of them, all to be kept) cost a tenth
    of the play; it makes little cyclic garbage (a play of d, none),
    collected once the plays are over (run_seeds).  What it made is frozen
    (gc.freeze) before the collector is enabled again: else the first
    collections after it go through all of it, young as it is, again and
    again (about 5% of the README play); run_seeds unfreezes it when the
    plays are over, if nothing was frozen before (a worker's dies with it)."""

    def __enter__(self):
        import gc
        self.collecting = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        import gc
        if self.collecting:
            gc.freeze()
            gc.enable()
        return False


def random_readies(begin, end, rollouts, seed, knobs):
    try:
        return simulation.rollout_times(begin, end, rollouts, seed, knobs)
    except ValueError as error:
        raise UsageError(str(error)) from None


#: What the worker processes play (set before they fork: nothing is pickled to them).
_PLAY = {}


def _play(task):
    number, strategy = task
    state = _play_one(_PLAY["plays"][number], strategy, _PLAY["knobs"], _PLAY["settings"],
                      _PLAY["restart"])
    fleet, state.fleet = state.fleet, None      # the parent has it; only what was played goes back
    if _PLAY["detail"] and not number:      # (the picture draws the first seed's)
        with _no_collection():
            state.packed = _pack(state, fleet)
    state.runs = state.skips = None
    return state


def _pack(state, fleet):
    """``state``'s runs and skips as the parent can rebuild them from its
    own copy of ``fleet``: a run of a scheduled start that ended as drawn,
    and a skip, as the start's (instance, position) in two arrays; the
    other runs (stopped, killed, caught up...) whole.  Pickling the
    400000 runs and skips of a strategy's week as objects, each with its
    datetimes, cost more CPU than playing it."""
    import array
    # (Fields by unpacking and the appends bound once: some 400000 items.)
    runs_at, others = (array.array("q"), array.array("q")), []
    run_indexes, run_positions = runs_at[0].append, runs_at[1].append
    all_starts, all_ends, find = fleet.starts, fleet.ends, bisect.bisect_left
    for run in state.runs:
        index, start, natural_end, end, outcome, lost = run
        starts = all_starts[index]
        position = find(starts, start)
        if position < len(starts) and starts[position] == start and outcome == \
                "succeeded" and lost == 0.0 and end == natural_end == all_ends[index][position]:
            run_indexes(index)
            run_positions(position)
        else:
            run_indexes(-1)
            run_positions(len(others))
            others.append(run)
    skips_at, codes = (array.array("q"), array.array("q")), []
    skip_indexes, skip_positions, add_code = skips_at[0].append, skips_at[1].append, \
        codes.append
    for skip in state.skips:
        index, moment, code, cause = skip
        starts = all_starts[index]
        position = find(starts, moment)
        if position < len(starts) and starts[position] == moment:
            skip_indexes(index)
            skip_positions(position)
            add_code((code, cause))
        else:           # (every skip is of a scheduled start; whole, should one not be)
            skip_indexes(-1)
            skip_positions(len(others))
            others.append(skip)
    return runs_at, others, skips_at, codes


def _unpack(state, fleet):
    """The runs and skips _pack packed, rebuilt (equal to the played ones)."""
    (run_indexes, run_positions), others, (skip_indexes, skip_positions), codes \
        = state.__dict__.pop("packed")
    starts, ends, new = fleet.starts, fleet.ends, tuple.__new__
    state.runs = [others[position] if index < 0 else new(simulation.Run, (
        index, starts[index][position], ends[index][position], ends[index][position],
        "succeeded", 0.0)) for index, position in zip(run_indexes, run_positions)]
    codes = iter(codes)
    state.skips = [others[position] if index < 0 else (index, starts[index][position])
                   + next(codes) for index, position in zip(skip_indexes, skip_positions)]


def _in_processes(plays, tasks, knobs, settings, restart, workers, detail):
    # concurrent.futures, not multiprocessing.Pool: a worker that dies (the
    # OOM killer, kill -9) is an error here, where Pool would wait forever.
    # No `with`: leaving it waits for every play to end, and after Ctrl-C
    # or SIGTERM the workers are killed instead.  Either way the pool is
    # shut down whole before this returns (_shut_down).
    import multiprocessing
    import signal
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    _PLAY.update(plays=plays, knobs=knobs, settings=settings, restart=restart, detail=detail)
    others = set(multiprocessing.active_children())
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_worker_start, initargs=(os.getpid(),))
    stopping = {signal.SIGINT, signal.SIGTERM}
    try:
        with _terminated_as_interrupted():
            # The workers fork at the first submit: with Ctrl-C and SIGTERM
            # held until each has set its own handling (_worker_start), and
            # then delivered here.
            signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
            try:
                futures = [pool.submit(_play, task) for task in tasks]
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, stopping)
            played = [future.result() for future in futures]
    except BrokenProcessPool:
        raise CronPolicyError("a simulation process died before it finished (out of "
                              "memory? try fewer --days or --workers 1)") from None
    except BaseException:
        for worker in set(multiprocessing.active_children()) - others:
            worker.kill()
        raise
    finally:
        _shut_down(pool)
        _PLAY.clear()
    with _no_collection():          # (400000 runs and skips a strategy, all kept: see _play_one)
        for (number, _), state in zip(tasks, played):
            state.fleet = plays[number][0]
            if hasattr(state, "packed"):
                _unpack(state, state.fleet)
    return dict(zip(tasks, played))


#: How long the pool's manager thread gets to end once every play is over
#: or its workers were killed (it joins processes that are exiting or dead).
SHUTDOWN_TIMEOUT = 30.0


def _shut_down(pool):
    """Shut ``pool`` down and wait for its manager thread, within a bound.
    Not shutdown(wait=False) alone: the thread it leaves running closes its
    wake-up pipe while the interpreter's exit hook for concurrent.futures
    writes to it, and 1 exit in 10 to 20 printed "OSError: Bad file
    descriptor" (a traceback from a command that had succeeded)."""
    manager = getattr(pool, "_executor_manager_thread", None)    # CPython's
    pool.shutdown(wait=False, cancel_futures=True)
    if manager is not None:
        manager.join(SHUTDOWN_TIMEOUT)


def _worker_start(parent):
    """In each worker: Ctrl-C goes to the whole process group, and only the
    parent says so (no traceback of each worker); and a worker dies with
    its parent, however the parent dies (kill -9 included)."""
    import ctypes
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)     # PR_SET_PDEATHSIG
    except (OSError, AttributeError):   # not Linux: the parent kills them when it can
        pass
    if os.getppid() != parent:          # it died before prctl took effect
        os._exit(1)


class _terminated_as_interrupted:
    """SIGTERM in the parent while it plays is Ctrl-C (one line, exit 130,
    the workers killed), where Python's default would leave them playing."""

    def __enter__(self):
        import signal
        import threading
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._interrupt)

    @staticmethod
    def _interrupt(number, frame):
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        import signal
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False
