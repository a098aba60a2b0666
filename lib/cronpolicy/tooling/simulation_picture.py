"""The picture of a simulation (SVG): a typical rollout under each
strategy, job by job, and a panel of every rollout's stall per strategy
with the kills and the work lost beside it.

Plain SVG text, no drawing library: a person opens the file in a browser.
It is meant to be read at 100%: no text under 12 px, job names whole
(wrapped when long), a time axis with ticks.  The rollout shown is a
typical one: the one with cronpolicy's median stall (or the first
strategy's), or the one ready nearest the moment asked for (``at``); its
rows are the jobs with the longest runs around it.  Figures are of the
play given (one seed).
"""

import datetime
import math
from xml.sax.saxutils import escape

from cronpolicy.tooling.simulation import CODE, FULL, percentile
from cronpolicy.tooling.simulation import short_duration as _short

WIDTH = 1280
LABEL = 440             # the width of the column of job names
RIGHT = 40
ROW = 18                # one line of a row
FONT = 12               # the smallest text
COLORS = {"succeeded": "#4c9a2a", "interrupted": "#e69500", "stopped": "#b07cc6",
          "killed": "#c0392b"}
PHASES = (("queued behind the deploy before", "#d7bde2"), ("crontabs off / switch on",
                                                           "#bbbbbb"),
          ("waiting for runs", "#f4c542"), ("deploy", "#3b7dd8"))
KIND_COLORS = {FULL: "#3b7dd8", CODE: "#e67e22"}
TITLES = {"all-stop": "a. all-stop (crontabs off a lead before)",
          "all-stop-no-kills": "a0. all-stop, awaiting what may not be stopped",
          "on-off": "b. on/off switch at rollout time",
          "on-off-no-kills": "b0. on/off, awaiting what may not be stopped",
          "cronpolicy": "c. cronpolicy (window ahead, safe points)",
          "cronpolicy-slot": "d. cronpolicy, moved to the best slot"}
#: The strategies' names where there is room for a few words only.
SHORT = {"all-stop": "a. all-stop", "all-stop-no-kills": "a0. all-stop, no kills",
         "on-off": "b. on/off", "on-off-no-kills": "b0. on/off, no kills",
         "cronpolicy": "c. cronpolicy", "cronpolicy-slot": "d. cronpolicy, best slot"}
MAX_ROWS = 8
#: How far past ready the rollout's timeline goes at most.
VIEW = datetime.timedelta(hours=4)
#: Characters of a job's label on one line (12 px sans-serif in LABEL px).
LINE_CHARACTERS = 60


def _printable(text):
    """``text`` with what XML cannot hold (control characters) as '?'."""
    return "".join(char if char.isprintable() else "?" for char in str(text))


def _text(x, y, text, size=FONT, anchor="start", weight="normal", color="black"):
    text = _printable(text)
    return ('<text x="%.1f" y="%.1f" font-size="%d" text-anchor="%s" font-weight="%s" '
            'font-family="sans-serif" fill="%s">%s</text>' % (
                x, y, max(size, FONT), anchor, weight, color, escape(text)))


def _rect(x, y, width, height, color, title=None):
    tip = "<title>%s</title>" % escape(_printable(title)) if title else ""
    return '<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s">%s</rect>' % (
        x, y, max(width, 1.0), height, color, tip)


def _line(x1, y1, x2, y2, color="black", width=1, title=None):
    tip = "<title>%s</title>" % escape(_printable(title)) if title else ""
    return ('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%g">'
            '%s</line>' % (x1, y1, x2, y2, color, width, tip))


def wrap(text, width=LINE_CHARACTERS):
    """``text`` in lines of at most ``width`` characters, broken after a
    space, '-', '_' or '.' where it can be, else anywhere: nothing cut off."""
    lines = []
    while len(text) > width:
        cut = max(text.rfind(mark, 0, width) for mark in " -_.")
        cut = cut + 1 if cut > width // 3 else width
        lines.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    return lines + [text]


def chosen_rollout(states, at=None):
    """The index of the rollout to draw: the one ready nearest ``at``, else
    the one with cronpolicy's median stall (the first strategy's when
    cronpolicy was not played), among those every strategy played."""
    count = min(len(state.outcomes) for state in states.values())
    if not count:
        return None
    first = next(iter(states.values()))
    if at is not None:
        return min(range(count), key=lambda index: (
            abs((first.outcomes[index].ready - at).total_seconds()), index))
    judge = states.get("cronpolicy", first)
    order = sorted(range(count), key=lambda index: (judge.outcomes[index].stall, index))
    return order[(len(order) - 1) // 2]


def _rows(states, begin, end):
    """The instances to draw: the longest runs around the rollout, any strategy."""
    longest = {}
    for state in states.values():
        for run in state.runs or ():
            if run.start < end and run.end > begin:
                seconds = (min(run.end, end) - max(run.start, begin)).total_seconds()
                longest[run.index] = max(longest.get(run.index, 0.0), seconds)
    return sorted(longest, key=lambda index: (-longest[index], index))[:MAX_ROWS]


def _tick_step(span):
    """Seconds between time ticks: about 6 to 12 over ``span`` seconds."""
    for step in (300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400):
        if span / step <= 12:
            return step
    return 86400 * math.ceil(span / 86400 / 12)


def _time_axis(parts, x, begin, end, y):
    """A time axis under a timeline: a tick and an HH:MM label every step."""
    parts.append(_line(x(begin), y, x(end), y, "#555555"))
    step = _tick_step((end - begin).total_seconds())
    epoch = datetime.datetime(2000, 1, 1, tzinfo=begin.tzinfo)
    offset = (begin - epoch).total_seconds()
    moment = begin + datetime.timedelta(seconds=(-offset) % step)
    while moment <= end:
        parts.append(_line(x(moment), y, x(moment), y + 5, "#555555"))
        parts.append(_text(x(moment), y + 18, moment.strftime("%H:%M"), anchor="middle"))
        moment += datetime.timedelta(seconds=step)


def render(states, knobs, at=None):
    """The SVG text for ``states`` ({strategy: simulation state} of one seed)."""
    parts, y = [], 28
    chosen = chosen_rollout(states, at)
    if chosen is not None:
        y = _rollout_panel(parts, states, knobs, chosen, y, at)
    y = _stalls_panel(parts, states, y + 20)
    height = y + 20
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
            'viewBox="0 0 %d %d"><rect width="100%%" height="100%%" fill="white"/>%s</svg>\n'
            % (WIDTH, height, WIDTH, height, "".join(parts)))


def _rollout_panel(parts, states, knobs, chosen, y, at=None):
    first = next(iter(states.values()))
    outcome = first.outcomes[chosen]
    parts.append(_text(10, y, "One typical rollout under each strategy: #%d, %s, ready %s "
                              "(seed %s)" % (chosen + 1, outcome.kind,
                                             outcome.ready.strftime("%Y-%m-%d %H:%M UTC"),
                                             first.fleet.seed), 18, weight="bold"))
    y += 20
    parts.append(_text(10, y, "(%s; the rows are the jobs with the longest runs around it)" % (
        "the rollout ready nearest %s" % at.strftime("%Y-%m-%d %H:%M UTC") if at is not None
        else "the rollout with cronpolicy's median stall")))
    ready = outcome.ready
    last_end = max(state.outcomes[chosen].deploy_end for state in states.values())
    begin = ready - datetime.timedelta(seconds=knobs.lead + 1800)
    # At most VIEW past ready: a strategy waiting longer goes off the edge
    # (its title says how long).
    end = min(last_end + datetime.timedelta(minutes=30), ready + VIEW)
    span = (end - begin).total_seconds()

    def x(moment):
        seconds = (min(max(moment, begin), end) - begin).total_seconds()
        return LABEL + (WIDTH - LABEL - RIGHT) * seconds / span
    rows = _rows(states, begin, end)
    fleet = first.fleet
    labels = {index: wrap("%s on %s" % (fleet.instances[index].name,
                                        fleet.instances[index].host)) for index in rows}
    for strategy, state in states.items():
        found = state.outcomes[chosen]
        y += 34
        parts.append(_text(10, y, "%s: stall %s%s; %d killed (%d unsafe), %d stopped, %d at "
                                  "a safe point" % (
                                      TITLES.get(strategy, strategy), _short(found.stall),
                                      " (%s of it queued)" % _short(found.queued)
                                      if found.queued else "", found.killed,
                                      found.killed_unsafe, found.stopped, found.interrupted),
                           14, weight="bold"))
        y += 8
        played_from = found.ready + datetime.timedelta(seconds=found.queued)
        blocked_from = played_from - datetime.timedelta(seconds=knobs.lead) \
            if strategy in ("all-stop", "all-stop-no-kills") else found.start
        for (label, color), (start, stop) in zip(PHASES, (
                (found.ready, played_from), (max(blocked_from, played_from)
                                             if found.queued else blocked_from, found.start),
                (found.start, found.quiet), (found.quiet, found.deploy_end))):
            if stop > start:
                parts.append(_rect(x(start), y, x(stop) - x(start), ROW - 4, color,
                                   "%s %s to %s" % (label, start, stop)))
        parts.append(_text(LABEL - 8, y + 13, "the rollout", anchor="end"))
        top = y
        # The runs and skips in view, by row, in their order: one pass over
        # the strategy's (some 400000 a week), not one a row.
        runs, skips = {index: [] for index in rows}, {index: [] for index in rows}
        for run in state.runs or ():
            if run.index in runs and run.start < end and run.end > begin:
                runs[run.index].append(run)
        for skip in state.skips or ():
            if skip[0] in skips and begin <= skip[1] < end:
                skips[skip[0]].append(skip)
        for index in rows:
            y += ROW * max(1, len(labels[index])) + 4
            for number, line in enumerate(labels[index]):
                parts.append(_text(LABEL - 8, y - ROW * (len(labels[index]) - 1 - number) + 13,
                                   line, anchor="end"))
            for run in runs[index]:
                parts.append(_rect(x(run.start), y + 2, x(run.end) - x(run.start), ROW - 6,
                                   COLORS.get(run.outcome, "#777777"),
                                   "%s %s to %s" % (run.outcome, run.start, run.end)))
            for _, moment, code, _ in skips[index]:
                parts.append(_line(x(moment), y + 2, x(moment), y + ROW - 4, "#555555",
                                   1, "skipped (%s) %s" % (code, moment)))
        parts.append(_line(x(ready), top - 4, x(ready), y + ROW, "black", 2, "ready"))
        if found.deploy_end > end:
            parts.append(_text(WIDTH - RIGHT, top + 13, "deploy ends %s >" % (
                found.deploy_end.strftime("%m-%d %H:%M")), anchor="end"))
        y += ROW + 6
        _time_axis(parts, x, begin, end, y)
        parts.append(_text(x(ready), y + 34, "ready", anchor="middle", weight="bold"))
        y += 36
    y += 16
    legend = [("ran", COLORS["succeeded"]), ("stopped at a safe point", COLORS["interrupted"]),
              ("stopped at once", COLORS["stopped"]), ("killed", COLORS["killed"])] \
        + list(PHASES)
    position = 10
    for label, color in legend:
        parts.append(_rect(position, y - 11, 12, 12, color))
        parts.append(_text(position + 16, y, label))
        position += 22 + 7 * len(label)
    parts.append(_text(position, y, "| a skipped start"))
    return y + 10


def _stall_x(seconds, most):
    """Where a stall goes on the panel's scale (logarithmic in minutes)."""
    return LABEL + (WIDTH - LABEL - RIGHT - 250) * math.log1p(seconds / 60.0) \
        / math.log1p(most / 60.0)


def _stalls_panel(parts, states, y):
    y += 24
    parts.append(_text(10, y, "Every rollout's stall, from ready until the fleet is quiet "
                              "(queue included), by strategy and kind (seed %s)"
                       % next(iter(states.values())).fleet.seed, 18, weight="bold"))
    y += 20
    parts.append(_text(10, y, "a0, b0, c and d never kill: compare them at equal safety; a "
                              "and b kill what is still running at --max-wait. Logarithmic "
                              "scale; black: p50, red: p95 of all."))
    stalls = {strategy: [(outcome.stall, outcome.kind) for outcome in state.outcomes]
              for strategy, state in states.items()}
    most = max([3600.0] + [value for values in stalls.values() for value, _ in values])
    right = WIDTH - RIGHT - 240
    parts.append(_text(right + 20, y + 30, "unsafe kills, job-minutes lost", weight="bold"))
    for strategy, values in stalls.items():
        y += 40
        state = states[strategy]
        parts.append(_text(LABEL - 8, y + 4, SHORT.get(strategy, strategy), 13, "end"))
        for value, kind in values:
            parts.append('<circle cx="%.1f" cy="%.1f" r="4" fill="%s" fill-opacity="0.45">'
                         '<title>%s %s</title></circle>' % (
                             _stall_x(value, most), y + (-5 if kind == FULL else 5),
                             KIND_COLORS[kind], kind, _short(value)))
        for quantile, color in ((0.5, "black"), (0.95, "#c0392b")):
            if values:
                mark = percentile([value for value, _ in values], quantile)
                cx = _stall_x(mark, most)
                parts.append(_line(cx, y - 12, cx, y + 12, color, 2,
                                   "p%d %s" % (quantile * 100, _short(mark))))
        unsafe = sum(outcome.killed_unsafe for outcome in state.outcomes)
        lost = sum(outcome.lost for outcome in state.outcomes) / 60.0
        parts.append(_text(right + 20, y + 5, "%d unsafe kills, %.0f job-min lost" % (
            unsafe, lost), 13, color="#c0392b" if unsafe else "black"))
    y += 24
    ticks = [(0, "0"), (60, "1m"), (300, "5m"), (900, "15m"), (1800, "30m"), (3600, "1h"),
             (7200, "2h"), (14400, "4h"), (28800, "8h"), (86400, "1d"), (172800, "2d"),
             (345600, "4d"), (691200, "8d")]
    parts.append(_line(_stall_x(0, most), y, _stall_x(most, most), y, "#555555"))
    for tick, label in [(tick, label) for tick, label in ticks if tick <= most]:
        parts.append(_line(_stall_x(tick, most), y, _stall_x(tick, most), y + 5, "#555555"))
        parts.append(_text(_stall_x(tick, most), y + 19, label, anchor="middle"))
    y += 40
    for position, (kind, color) in enumerate(KIND_COLORS.items()):
        parts.append('<circle cx="%d" cy="%d" r="5" fill="%s"/>' % (
            LABEL + 10 + position * 260, y - 4, color))
        parts.append(_text(LABEL + 20 + position * 260, y, "%s rollouts" % kind))
    return y
