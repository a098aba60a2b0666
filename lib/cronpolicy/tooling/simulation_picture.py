"""The picture of a simulation (SVG): one rollout under each strategy, and
the distribution of the stalls of all of them.

Plain SVG text, no drawing library: a person opens the file in a browser.
The rollout shown is the one whose stall differs most between strategies;
its rows are the jobs with the longest runs around it.
"""

import datetime
from xml.sax.saxutils import escape

from cronpolicy.simulation import percentile

WIDTH = 1000
LABEL = 230
ROW = 14
COLORS = {"succeeded": "#4c9a2a", "interrupted": "#e69500", "stopped": "#b07cc6",
          "killed": "#c0392b"}
PHASES = (("blocked", "#bbbbbb"), ("waiting", "#f4c542"), ("deploy", "#3b7dd8"))
TITLES = {"all-stop": "a. all-stop (crontabs off a lead before)",
          "all-stop-no-kills": "a0. all-stop, awaiting what may not be stopped",
          "on-off": "b. on/off switch at rollout time",
          "on-off-no-kills": "b0. on/off, awaiting what may not be stopped",
          "cronpolicy": "c. cronpolicy (window ahead, safe points)",
          "cronpolicy-slot": "d. cronpolicy, moved to the best slot"}
#: The strategies' names where there is room for a few words only.
SHORT = {"all-stop": "a. all-stop", "all-stop-no-kills": "a0. all-stop, no kills",
         "on-off": "b. on/off", "on-off-no-kills": "b0. on/off, no kills",
         "cronpolicy": "c. cronpolicy",
         "cronpolicy-slot": "d. cronpolicy, best slot"}
MAX_ROWS = 12


def _printable(text):
    """``text`` with what XML cannot hold (control characters) as '?'."""
    return "".join(char if char.isprintable() else "?" for char in str(text))


def _text(x, y, text, size=11, anchor="start", weight="normal"):
    text = _printable(text)
    return ('<text x="%.1f" y="%.1f" font-size="%d" text-anchor="%s" font-weight="%s" '
            'font-family="sans-serif">%s</text>' % (x, y, size, anchor, weight, escape(text)))


def _rect(x, y, width, height, color, title=None):
    tip = "<title>%s</title>" % escape(title) if title else ""
    return '<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s">%s</rect>' % (
        x, y, max(width, 1.0), height, color, tip)


def _chosen_rollout(states):
    """The index of the rollout whose stalls differ most between strategies."""
    count = min(len(state.outcomes) for state in states.values())
    if not count:
        return None
    spread = [max(state.outcomes[index].stall for state in states.values())
              - min(state.outcomes[index].stall for state in states.values())
              for index in range(count)]
    return max(range(count), key=lambda index: (spread[index], -index))


def _rows(states, begin, end):
    """The instances to draw: the longest runs around the rollout, any strategy."""
    longest = {}
    for state in states.values():
        for run in state.runs:
            if run.start < end and run.end > begin:
                seconds = (min(run.end, end) - max(run.start, begin)).total_seconds()
                longest[run.index] = max(longest.get(run.index, 0.0), seconds)
    return sorted(longest, key=lambda index: -longest[index])[:MAX_ROWS]


def render(states, knobs, at=None):
    """The SVG text for ``states`` ({strategy: simulation state})."""
    parts, y = [], 20
    parts.append(_text(10, y, "cronpolicy simulate: one rollout under each strategy", 14,
                       weight="bold"))
    y += 10
    chosen = _chosen_rollout(states)
    if chosen is not None:
        ready = next(iter(states.values())).outcomes[chosen].ready
        last_end = max(state.outcomes[chosen].deploy_end for state in states.values())
        begin = ready - datetime.timedelta(seconds=knobs.lead + 1800)
        end = last_end + datetime.timedelta(minutes=30)
        span = (end - begin).total_seconds()

        def x(moment):
            seconds = (min(max(moment, begin), end) - begin).total_seconds()
            return LABEL + (WIDTH - LABEL - 20) * seconds / span
        rows = _rows(states, begin, end)
        fleet = next(iter(states.values())).fleet
        for strategy, state in states.items():
            outcome = state.outcomes[chosen]
            y += 24
            parts.append(_text(10, y, "%s: stall %s" % (
                TITLES.get(strategy, strategy), _minutes(outcome.stall)), 12, weight="bold"))
            y += 6
            blocked_from = outcome.ready - datetime.timedelta(seconds=knobs.lead) \
                if strategy == "all-stop" else outcome.start
            for (label, color), (start, stop) in zip(PHASES, (
                    (blocked_from, outcome.start), (outcome.start, outcome.quiet),
                    (outcome.quiet, outcome.deploy_end))):
                if stop > start:
                    parts.append(_rect(x(start), y, x(stop) - x(start), ROW - 3, color,
                                       "%s %s to %s" % (label, start, stop)))
            parts.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>' % (
                x(outcome.ready), y - 4, x(outcome.ready), y + ROW * (len(rows) + 1)))
            parts.append(_text(LABEL - 6, y + 9, "rollout", 10, "end"))
            for index in rows:
                y += ROW
                instance = fleet.instances[index]
                parts.append(_text(LABEL - 6, y + 9, "%s@%s" % (instance.name[:24],
                                                                instance.host[:14]), 9, "end"))
                for run in state.runs:
                    if run.index == index and run.start < end and run.end > begin:
                        parts.append(_rect(x(run.start), y + 1, x(run.end) - x(run.start),
                                           ROW - 4, COLORS.get(run.outcome, "#777777"),
                                           "%s %s" % (run.outcome, run.start)))
                for skipped_index, moment, code, _ in state.skips:
                    if skipped_index == index and begin <= moment < end:
                        parts.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" '
                                     'stroke="#555555"><title>%s</title></line>' % (
                                         x(moment), y + 2, x(moment), y + ROW - 2,
                                         escape("skipped (%s) %s" % (code, moment))))
            y += ROW
        y += 6
        parts.append(_text(LABEL, y + 10, begin.strftime("%Y-%m-%d %H:%M"), 9))
        parts.append(_text(WIDTH - 20, y + 10, end.strftime("%H:%M UTC"), 9, "end"))
        y += 24
        legend = [("ran", COLORS["succeeded"]), ("at a safe point", COLORS["interrupted"]),
                  ("stopped at once", COLORS["stopped"]),
                  ("killed", COLORS["killed"])] + list(PHASES)
        for position, (label, color) in enumerate(legend):
            parts.append(_rect(10 + position * 135, y, 10, 10, color))
            parts.append(_text(24 + position * 135, y + 9, label, 10))
        y += 20
    y += 24
    parts.append(_text(10, y, "the stall of every rollout (ready to deploy until the fleet "
                              "is quiet), by strategy", 14, weight="bold"))
    stalls = {strategy: [outcome.stall for outcome in state.outcomes]
              for strategy, state in states.items()}
    most = max([1.0] + [value for values in stalls.values() for value in values])
    for strategy, values in stalls.items():
        y += 28
        parts.append(_text(LABEL - 6, y + 4, SHORT.get(strategy, strategy), 10, "end"))
        for value in values:
            parts.append('<circle cx="%.1f" cy="%.1f" r="3" fill="#3b7dd8" '
                         'fill-opacity="0.4"/>' % (LABEL + (WIDTH - LABEL - 20) * value / most,
                                                   y))
        for quantile, color in ((0.5, "black"), (0.95, "#c0392b")):
            if values:
                mark = percentile(values, quantile)     # as the figures have it
                cx = LABEL + (WIDTH - LABEL - 20) * mark / most
                parts.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" '
                             'stroke-width="2"><title>p%d %s</title></line>' % (
                                 cx, y - 8, cx, y + 8, color, quantile * 100, _minutes(mark)))
    y += 24
    parts.append(_text(LABEL, y, "0", 9))
    parts.append(_text(WIDTH - 20, y, _minutes(most), 9, "end"))
    parts.append(_text(LABEL + 200, y, "black: p50, red: p95", 9))
    height = y + 20
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
            'viewBox="0 0 %d %d"><rect width="100%%" height="100%%" fill="white"/>%s</svg>\n'
            % (WIDTH, height, WIDTH, height, "".join(parts)))


def _minutes(seconds):
    if seconds is None:
        return "-"
    return "%.1f min" % (seconds / 60.0)
