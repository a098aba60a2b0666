"""The pictures of the page as geometry: what the templates draw as SVG.

Only numbers and fixed class names are made here; every text (names,
hosts, reasons) goes to the template as it is, and Jinja2 escapes it.
Nothing is drawn by script, so the pictures need no JavaScript, and the
page's Content-Security-Policy needs no inline style (SVG attributes are
not styles).
"""

import datetime

WIDTH = 1100
LABEL = 300
ROW = 18
TOP = 28
#: The statuses runs are drawn in; anything else is drawn as "other".
STATUSES = ("running", "succeeded", "failed", "skipped", "interrupted", "abandoned", "lost")


def _scale(start, end, left, width):
    span = max(1.0, (end - start).total_seconds())

    def x(moment):
        seconds = (moment - start).total_seconds()
        return round(left + width * min(max(seconds, 0.0), span) / span, 1)
    return x


def _ticks(start, end):
    """Hour marks (every 1, 2, 3, 6 or 12 hours: at most 13 of them)."""
    hours = (end - start).total_seconds() / 3600
    step = next((s for s in (1, 2, 3, 6, 12) if hours / s <= 12), 24)
    tick = start.replace(minute=0, second=0, microsecond=0)
    found = []
    while tick <= end:
        if tick >= start and tick.hour % step == 0:
            found.append(tick)
        tick += datetime.timedelta(hours=1)
    return found


def timeline(data):
    """The timeline of ``data`` (views.overview): a row per script and
    host with its runs (bars, a running one's predicted end dashed past
    now), skipped starts (marks) and scheduled starts (ticks), under the
    windows and open rollouts drawn across every row."""
    start, end, now = data["from"], data["until"], data["now"]
    x = _scale(start, end, LABEL, WIDTH - LABEL - 10)
    rows = []
    for index, row in enumerate(data["rows"]):
        y = TOP + index * ROW
        runs, marks = [], []
        for run in row["runs"]:
            status = run["status"] if run["status"] in STATUSES else "other"
            begin = run["started_at"]
            if status == "skipped":
                marks.append({"x": x(begin), "run": run})
                continue
            finish = run["finished_at"] or now
            runs.append({"x": x(begin), "width": max(2.0, x(finish) - x(begin)),
                         "status": status, "run": run})
            predicted = run.get("predicted_finish")
            if status == "running" and predicted is not None and predicted > now:
                runs.append({"x": x(now), "width": max(2.0, x(predicted) - x(now)),
                             "status": "predicted", "run": run})
        rows.append({"y": y, "row": row, "runs": runs, "skips": marks,
                     "starts": " ".join("M%s %sV%s" % (x(moment), y + 2, y + ROW - 2)
                                        for moment in row["starts"])})
    height = TOP + max(1, len(rows)) * ROW + 6
    spans = []
    for window in data["windows"]:
        left = x(window["starts_at"])
        spans.append({"kind": "window", "x": left,
                      "width": max(2.0, x(window["ends_at"]) - left), "item": window})
    for rollout in data["rollouts"]:
        left = x(rollout["began_at"])
        until = max(now, rollout["quiet_eta"] or now)
        spans.append({"kind": "rollout", "x": left, "width": max(3.0, x(until) - left),
                      "item": rollout})
    return {"width": WIDTH, "height": height, "label": LABEL, "rows": rows, "spans": spans,
            "now": x(now), "ticks": [{"x": x(tick), "at": tick} for tick in _ticks(start, end)],
            "row": ROW, "top": TOP}


def slot(data, candidate):
    """One `deploy slot` candidate: the rollout's span among the next
    hours, and the scheduled starts it skips."""
    now = data["now"]
    end = max(candidate["ends_at"], now + datetime.timedelta(hours=1))
    x = _scale(now, end, 10, 580)
    return {"width": 600, "height": 40, "x": x(candidate["starts_at"]),
            "span": max(3.0, x(candidate["ends_at"]) - x(candidate["starts_at"])),
            "skips": [x(start["at"]) for start in candidate["skipped_starts"][:200]
                      if start.get("at") is not None],
            "ticks": [{"x": x(tick), "at": tick} for tick in _ticks(now, end)]}
