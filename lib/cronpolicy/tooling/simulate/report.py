"""What `cronpolicy simulate` says of its plays: the table of each
strategy's figures (medians over the seeds and their ranges), the lines
README.txt quotes, the JSON document, and the picture (--svg, drawn by
simulation_picture)."""

import collections

from cronpolicy.errors import UsageError
from cronpolicy.tooling import simulation
from cronpolicy.tooling.simulation import short_duration as _short

#: What the report reads of a simulation: the job instances, the plays
#: (play.Played, one a seed), the simulated days (begin, end, how many),
#: --seed, the warm-up played (seconds), the jobs still cold after it,
#: --code-share, the services a code-only rollout restarts, the Knobs.
Play = collections.namedtuple(
    "Play", "instances plays begin end days seed warm_up cold code_share restart knobs")


def print_json_report(play):
    """The JSON document of `simulate --json`."""
    from cronpolicy.tooling.output import print_json
    instances, plays = play.instances, play.plays
    by_seed = [{name: simulation.summary(state) for name, state in played.states.items()}
               for played in plays]
    affected = next(iter(plays[0].states.values())).affected
    print_json({"instances": len(instances),
                "hosts": len({instance.host for instance in instances}),
                "begin": play.begin, "end": play.end, "seed": play.seed,
                "seeds": [played.seed for played in plays],
                "warm_up_seconds": play.warm_up, "cold_jobs": play.cold,
                "code_share": play.code_share, "restart": list(play.restart),
                "knobs": play.knobs._asdict(), "ready_times": plays[0].readies,
                "strategies": combine(by_seed, statistics_median),
                "ranges": {"min": combine(by_seed, min), "max": combine(by_seed, max)},
                "longest_needing_p95_seconds": max(
                    [instance.model.p95 for instance, stops in zip(instances, affected)
                     if stops], default=None),
                "plays": [{"seed": played.seed, "strategies": figures_of_seed,
                           "longest_needing_run_seconds": longest_needing_run(played),
                           "rollouts": rollout_records(played)}
                          for played, figures_of_seed in zip(plays, by_seed)]})


def print_text_report(play):
    """What `simulate` prints: a line of what was played, the table, the
    lines README.txt quotes."""
    instances, plays, knobs = play.instances, play.plays, play.knobs
    by_seed = [{name: simulation.summary(state) for name, state in played.states.items()}
               for played in plays]
    kinds = plays[0].kinds
    print("%s on %s, %s from %s, %s of %s (%d full, %d code-only restarting %s), %s; "
          "warm-up %s, announce %s, max-wait %s" % (
              _count(len(instances), "job instance"),
              _count(len({instance.host for instance in instances}), "host"),
              _count(play.days, "day"), play.begin.strftime("%Y-%m-%d %H:%M UTC"),
              _count(len(plays[0].readies), "rollout"), _short(knobs.duration),
              kinds.count(simulation.FULL), kinds.count(simulation.CODE),
              ", ".join(play.restart) or "nothing",
              "seed %s" % plays[0].seed if len(plays) == 1 else "seeds %s to %s" % (
                  plays[0].seed, plays[-1].seed),
              _days(play.warm_up), _days(knobs.announce), _short(knobs.max_wait)))
    if len(plays) > 1:
        print("each figure: the median of the %d seeds [lowest to highest]" % len(plays))
    print()
    print_figures(by_seed)
    print()
    print("\n".join(quote_lines(combine(by_seed, statistics_median), kinds)))

#: The strategies' labels, as the table heads them.
LABELS = {"all-stop": "a. all-stop", "all-stop-no-kills": "a0. all-stop, no kills",
          "on-off": "b. on/off", "on-off-no-kills": "b0. on/off, no kills",
          "cronpolicy": "c. cronpolicy", "cronpolicy-slot": "d. cronpolicy+slot"}
def statistics_median(values):
    import statistics
    return statistics.median(values)


def combine(by_seed, how):
    """The figures of several seeds ([{strategy: summary}]) as one, each
    number combined with ``how`` (median, min, max); the rest as the first's."""
    def merge(values):
        first = values[0]
        if isinstance(first, dict):
            return {key: merge([value[key] for value in values]) for key in first}
        numbers = [value for value in values if isinstance(value, (int, float))
                   and not isinstance(value, bool)]
        if len(numbers) == len(values) and numbers:
            found = how(numbers)
            return round(found, 6) if isinstance(found, float) else found
        return first if all(value == first for value in values) else None
    return merge(by_seed)


def longest_needing_run(played):
    """The longest runtime drawn in the play (seconds) of a job that a
    code-only rollout stops (needing a restarted service), or None."""
    state = next(iter(played.states.values()))
    fleet = state.fleet
    return max([max(durations, default=0.0) for durations, stops
                in zip(fleet.durations, state.affected) if stops], default=None)


def rollout_records(played):
    """One record a rollout of one seed: its ready time and kind, and per
    strategy what it cost (simulation.records), or that it was not played
    (queued past the end of the play)."""
    per_strategy = {name: simulation.records(state) for name, state in played.states.items()}
    return [{"ready": ready, "kind": kind,
             "strategies": {name: {key: value for key, value in found[position].items()
                                   if key not in ("ready", "kind")}
                            if position < len(found) else {"not_played": True}
                            for name, found in per_strategy.items()}}
            for position, (ready, kind) in enumerate(zip(played.readies, played.kinds))]


def write_picture(path, states, knobs, at=None):
    from cronpolicy.safety import write_atomically
    from cronpolicy.tooling import simulation_picture
    text = simulation_picture.render(states, knobs, at)
    try:
        write_atomically(path, lambda handle: handle.write(text), 0o644, durable=True)
    except OSError as error:
        raise UsageError("cannot write %s: %s" % (path, error.strerror)) from None


def _count(number, what):
    return "%g %s%s" % (number, what, "" if number == 1 else "s")


def _days(seconds):
    """Whole days as 21d, else as _short has it."""
    if seconds and seconds % 86400 == 0:
        return "%dd" % (seconds // 86400)
    return _short(seconds)


def _percent(share):
    return "-" if share is None else "%.2f%%" % (100.0 * share)


def _number(value):
    return "-" if value is None else "%g" % value


#: The rows of the text table for one kind of rollout: (label, the figure
#: in simulation._figures' dict, how it reads).
KIND_ROWS = (
    ("stall p50 (from ready, queue included)", lambda f: f["stall_seconds"]["p50"], _short),
    ("stall p95", lambda f: f["stall_seconds"]["p95"], _short),
    ("stall max", lambda f: f["stall_seconds"]["max"], _short),
    ("  of it queued behind the deploy before, p95", lambda f: f["queued_seconds"]["p95"],
     _short),
    ("  its own wait (stall less the queue), p95", lambda f: f["wait_seconds"]["p95"], _short),
    ("  of it moved to the slot (d), p50", lambda f: f["moved_seconds"]["p50"], _short),
    ("scheduled starts skipped", lambda f: f["skipped_starts"], _number),
    ("  share of all scheduled starts", lambda f: f["skipped_share"], _percent),
) + tuple(("  jobs run %s" % label, lambda f, label=label: f["skipped_by_frequency"][label],
           _number) for label, _ in simulation.FREQUENCIES) + (
    ("runs interrupted at safe points", lambda f: f["interrupted_at_safe_points"], _number),
    ("runs stopped at once (interruptible)", lambda f: f["stopped_at_once"], _number),
    ("runs killed", lambda f: f["killed"], _number),
    ("  of them while unsafe", lambda f: f["killed_while_unsafe"], _number),
    ("job-minutes lost", lambda f: f["job_minutes_lost"], _number),
    ("jobs left overdue (HORIZON after each ready, summed)", lambda f: f["left_overdue"],
     _number),
)
#: The rows about the play as a whole.
PLAY_ROWS = (
    ("rollouts played", lambda f: f["rollouts"], _number),
    ("  queued behind the deploy before", lambda f: f["queued"], _number),
    ("not played (queued past the end)", lambda f: f["not_played"], _number),
    ("catch-up runs (catch_up = once)", lambda f: f["catch_up_runs"], _number),
)
KIND_TITLES = {simulation.FULL: "full rollouts (database patches: everything stops)",
               simulation.CODE: "code-only rollouts (under c and d only the jobs needing a "
                                "restarted service stop)"}


def _cell(by_seed, name, figure, shown):
    values = [figure(figures[name]) for figures in by_seed]
    numbers = [value for value in values if value is not None]
    if len(numbers) != len(values) or not numbers:
        return shown(None) if not numbers else "-"
    import statistics
    middle = statistics.median(numbers)
    text = shown(middle)
    if len(values) > 1 and min(numbers) != max(numbers):
        text += " [%s-%s]" % (shown(min(numbers)), shown(max(numbers)))
    return text


def print_figures(by_seed):
    """The figures of each strategy, a column each: each kind's, then the
    play's ([{strategy: summary}], one a seed: medians and ranges)."""
    names = list(by_seed[0])
    horizon = _short(by_seed[0][names[0]]["overdue_horizon_seconds"])
    cells = [[""] + [LABELS[name] for name in names]]
    for kind in simulation.KINDS:
        count = by_seed[0][names[0]]["kinds"][kind]["rollouts"]
        if not any(figures[names[0]]["kinds"][kind]["rollouts"] for figures in by_seed):
            continue
        cells.append(["%s: %s" % (KIND_TITLES[kind], count)] + [""] * len(names))
        for label, figure, shown in KIND_ROWS:
            if "(d)" in label and "cronpolicy-slot" not in names:
                continue
            cells.append(["  " + label.replace("HORIZON", horizon)] + [
                _cell(by_seed, name, lambda f, figure=figure, kind=kind: figure(
                    f["kinds"][kind]), shown) for name in names])
    cells.append(["the play"] + [""] * len(names))
    cells += [["  " + label] + [_cell(by_seed, name, figure, shown) for name in names]
              for label, figure, shown in PLAY_ROWS]
    widths = [max(len(line[column]) for line in cells) for column in range(len(names) + 1)]
    for line in cells:
        print("  ".join([line[0].ljust(widths[0])] + [cell.rjust(width) for cell, width
                                                       in zip(line[1:], widths[1:])]).rstrip())


#: The headline's figures of each kind: (what, the figure, how it reads).
HEADLINE = (
    ("stall p95", lambda f: f["stall_seconds"]["p95"], _short),
    ("runs killed while unsafe", lambda f: f["killed_while_unsafe"], _number),
    ("job-minutes lost", lambda f: f["job_minutes_lost"], lambda value: "%.0f" % value),
    ("starts skipped (of all)", lambda f: f["skipped_share"], _percent),
    ("jobs left overdue", lambda f: f["left_overdue"], _number),
)


def quote_lines(figures, kinds=(simulation.FULL,)):
    """The lines README.txt quotes: for each kind played, its headline
    figures per strategy (by letter; the medians over the seeds played)."""
    letters = {name: letter for letter, name in simulation.STRATEGY_LETTERS.items()}
    lines = []
    for kind in simulation.KINDS:
        if kind not in kinds:
            continue
        for what, figure, shown in HEADLINE:
            lines.append("%-45s %s" % ("%s rollouts, %s:" % (kind, what), ", ".join(
                "%s %s" % (letters[name], shown(figure(found["kinds"][kind])))
                for name, found in figures.items())))
    return lines
