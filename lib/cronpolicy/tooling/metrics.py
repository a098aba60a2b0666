"""Fleet metrics in the Prometheus text exposition format.

``render(db)`` returns the text; `cronpolicy metrics --output FILE` writes
it atomically, for the node exporter's textfile collector (name the file
*.prom).  Per script: last success time, last duration, runs by status,
skips by reason (the decision code), how many are running now, the latest
runtime estimate next to the latest actual runtime, and whether it is
overdue; for the fleet: the open rollouts (by kind and service), those
whose owner is lost or that are overdue, the stalls of the rollouts
recorded (a histogram), deploy pending, and the last drain's duration and
the script that held it up longest.
"""

import datetime

from sqlalchemy import and_, func, select

from cronpolicy import policy
from cronpolicy.rows import DeployState, from_mapping
from cronpolicy.tooling.tables import deploy_state, drain, rollout, script_run

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def _escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Exposition:

    def __init__(self):
        self.lines = []

    def family(self, name, kind, help_text, samples):
        """``samples``: [(labels dict, value)]."""
        self.lines.append("# HELP %s %s" % (name, help_text))
        self.lines.append("# TYPE %s %s" % (name, kind))
        for labels, value in samples:
            label_text = ",".join('%s="%s"' % (key, _escape(labels[key])) for key in labels)
            self.lines.append("%s%s %s" % (name, "{%s}" % label_text if label_text else "",
                                           repr(float(value))))

    def histogram(self, name, help_text, buckets, values):
        """A histogram of ``values`` (cumulative buckets, then +Inf, sum and count)."""
        self.lines.append("# HELP %s %s" % (name, help_text))
        self.lines.append("# TYPE %s histogram" % name)
        for bound in buckets:
            self.lines.append('%s_bucket{le="%s"} %s' % (
                name, repr(float(bound)), repr(float(sum(value <= bound for value in values)))))
        self.lines.append('%s_bucket{le="+Inf"} %s' % (name, repr(float(len(values)))))
        self.lines.append("%s_sum %s" % (name, repr(float(sum(values)))))
        self.lines.append("%s_count %s" % (name, repr(float(len(values)))))

    def text(self):
        return "\n".join(self.lines) + "\n"


def _seconds(moment):
    return (moment - _EPOCH).total_seconds()


def _latest(connection, column, condition):
    """Per script, the run matching ``condition`` that is latest by
    ``column`` (ties: the higher id): (name, id, started_at, finished_at,
    estimate_seconds) rows."""
    newest = (select(script_run.c.name.label("name"), func.max(column).label("moment"))
              .where(condition).group_by(script_run.c.name).subquery())
    rows = connection.execute(
        select(script_run.c.name, script_run.c.id, script_run.c.started_at,
               script_run.c.finished_at, script_run.c.estimate_seconds)
        .join(newest, and_(script_run.c.name == newest.c.name, column == newest.c.moment))
        .where(condition)).all()
    chosen = {}
    for row in rows:
        if row.name not in chosen or row.id > chosen[row.name].id:
            chosen[row.name] = row
    return list(chosen.values())


#: The stall histogram's buckets (seconds): from moments to hours.
STALL_BUCKETS = (1, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)


def _rollout_families(out, settings, now, open_rows, stalls):
    from cronpolicy.rows import Rollout, from_mapping
    from cronpolicy.tooling.rollouts import describe
    found = [describe(from_mapping(Rollout, row), now, settings.default_rollout_expect)
             for row in open_rows]
    counts = {}
    for row in found:
        for service in row["services"] or [""]:
            key = (row["kind"], service)
            counts[key] = counts.get(key, 0) + 1
    out.family("cronpolicy_rollouts_open", "gauge",
               "Rollouts open now, by kind (full, services) and service (\"\" for full).",
               [({"kind": kind, "service": service}, count)
                for (kind, service), count in sorted(counts.items())])
    out.family("cronpolicy_rollouts_owner_lost", "gauge",
               "Open rollouts whose owning process's lease ran out (`deploy run` killed).",
               [({}, sum(row["owner_lost"] for row in found))])
    out.family("cronpolicy_rollouts_overdue", "gauge",
               "Open rollouts open longer than expected (--expect, else default_rollout_expect).",
               [({}, sum(row["overdue"] for row in found))])
    out.histogram("cronpolicy_rollout_stall_seconds",
                  "From a rollout's beginning until deploy wait first saw nothing in its way, "
                  "over the rollouts recorded.", STALL_BUCKETS, stalls)


def render(db, warn=None):
    """The metrics text; what the fleet's rows leave out (a schedule that
    cannot be read, a runtime no plan believes) is said through ``warn``."""
    from cronpolicy.tooling.fleet import reap_if_free
    from cronpolicy.tooling.overdue import overdue_scripts, scheduled_reports
    out = _Exposition()
    reap_if_free(db)
    with db.read("read the metrics") as connection:
        now = db.now(connection)
        by_status = connection.execute(
            select(script_run.c.name, script_run.c.status, func.count())
            .group_by(script_run.c.name, script_run.c.status)).all()
        skips = connection.execute(
            select(script_run.c.name, func.coalesce(script_run.c.decision, "unknown"), func.count())
            .where(script_run.c.status == "skipped")
            .group_by(script_run.c.name, func.coalesce(script_run.c.decision, "unknown"))).all()
        last_success = connection.execute(
            select(script_run.c.name, func.max(script_run.c.finished_at))
            .where(script_run.c.status == "succeeded").group_by(script_run.c.name)).all()
        # The latest by the clock, not by id: an imported or late-flushed
        # old run has a high id.
        last_runs = _latest(connection, script_run.c.finished_at, and_(
            script_run.c.finished_at.is_not(None), script_run.c.status != "skipped"))
        latest_estimates = _latest(connection, script_run.c.started_at,
                                   script_run.c.estimate_seconds.is_not(None))
        deploy = connection.execute(select(deploy_state)).mappings().first()
        # Starts rollouts skipped (their block is named), and catch-up runs.
        missed = connection.execute(
            select(script_run.c.name, func.count())
            .where(and_(script_run.c.status == "skipped", script_run.c.block.is_not(None)))
            .group_by(script_run.c.name)).all()
        caught_up = connection.execute(
            select(script_run.c.name, func.count())
            .where(script_run.c.decision == policy.CATCH_UP)
            .group_by(script_run.c.name)).all()
        last_drain = connection.execute(
            select(drain).order_by(drain.c.finished_at.desc(), drain.c.id.desc()).limit(1)
        ).mappings().first()
        open_rollouts = connection.execute(
            select(rollout).where(rollout.c.ended_at.is_(None))).mappings().all()
        stalls = [max(0.0, (quiet_at - began_at).total_seconds())
                  for quiet_at, began_at in connection.execute(
                      select(rollout.c.quiet_at, rollout.c.began_at)
                      .where(rollout.c.quiet_at.is_not(None))).all()]
    names = sorted({row[0] for row in by_status})
    latest_estimates = [(row.name, row.estimate_seconds) for row in latest_estimates]
    running = {row[0]: row[2] for row in by_status if row[1] == "running"}
    _, reports = overdue_scripts(db.settings, include_all=True, details=False)
    _, scheduled = scheduled_reports(db.settings, include_all=True, warn=warn)

    out.family("cronpolicy_last_success_timestamp_seconds", "gauge",
               "When the script last succeeded (Unix time, database clock).",
               [({"script": name}, _seconds(moment)) for name, moment in sorted(last_success)])
    out.family("cronpolicy_last_duration_seconds", "gauge",
               "How long the script's last finished run took.",
               [({"script": row.name}, (row.finished_at - row.started_at).total_seconds())
                for row in sorted(last_runs)])
    out.family("cronpolicy_runs_total", "counter",
               "Runs recorded, by final status (history kept by prune).",
               [({"script": name, "status": status}, count)
                for name, status, count in sorted(by_status)])
    out.family("cronpolicy_skips_total", "counter",
               "Skipped starts, by the decision that skipped them.",
               [({"script": name, "reason": reason}, count) for name, reason, count in sorted(skips)])
    out.family("cronpolicy_running", "gauge", "Live runs of the script now (dead ones excluded).",
               [({"script": name}, running.get(name, 0)) for name in names])
    out.family("cronpolicy_estimate_seconds", "gauge",
               "The runtime estimate the script's latest decision used.",
               [({"script": name}, value) for name, value in sorted(latest_estimates)])
    out.family("cronpolicy_last_runtime_vs_estimate_ratio", "gauge",
               "The last finished run's duration divided by the estimate it started with.",
               [({"script": row.name},
                 (row.finished_at - row.started_at).total_seconds() / row.estimate_seconds)
                for row in sorted(last_runs) if row.estimate_seconds])
    out.family("cronpolicy_overdue", "gauge",
               "1 when the script has not succeeded within its expected interval (x tolerance).",
               [({"script": report["name"]}, 1 if report["overdue"] else 0)
                for report in reports])
    out.family("cronpolicy_next_start_timestamp_seconds", "gauge",
               "When the script is next scheduled to start on the host (Unix time).",
               [({"script": report["name"], "host": report["host"]},
                 _seconds(report["next_start"])) for report in scheduled
                if report["next_start"] is not None])
    out.family("cronpolicy_schedule_overdue", "gauge",
               "1 when the script has not succeeded on the host since its last scheduled "
               "start (plus its estimate and a grace).",
               [({"script": report["name"], "host": report["host"]},
                 1 if report["overdue"] else 0) for report in scheduled])
    out.family("cronpolicy_starved_rollouts", "gauge",
               "How many rollouts in a row skipped the script on the host.",
               [({"script": report["name"], "host": report["host"]}, report["skipped_by"])
                for report in scheduled])
    out.family("cronpolicy_missed_starts_total", "counter",
               "Starts skipped by rollouts (deploy pending, windows; history kept by prune).",
               [({"script": name}, count) for name, count in sorted(missed)])
    out.family("cronpolicy_catch_up_runs_total", "counter",
               "Runs that caught up a start a rollout skipped (catch_up = once).",
               [({"script": name}, count) for name, count in sorted(caught_up)])
    _rollout_families(out, db.settings, now, open_rollouts, stalls)
    out.family("cronpolicy_deploy_pending", "gauge", "1 while a full rollout is open.",
               [({}, 1 if policy.is_deploy_pending(
                   None if deploy is None else from_mapping(DeployState, deploy)) else 0)])
    drain_samples, blocker_samples = [], []
    if last_drain is not None:
        drain_samples = [({}, (last_drain["finished_at"] - last_drain["started_at"])
                          .total_seconds())]
        if last_drain["longest_blocker"]:
            blocker_samples = [({"script": last_drain["longest_blocker"]},
                                last_drain["longest_blocker_seconds"] or 0.0)]
    out.family("cronpolicy_last_drain_seconds", "gauge",
               "How long the last `cronpolicy deploy wait` took.", drain_samples)
    out.family("cronpolicy_last_drain_longest_blocker_seconds", "gauge",
               "The script that held up the last drain longest, and for how long.",
               blocker_samples)
    out.family("cronpolicy_metrics_timestamp_seconds", "gauge",
               "When these metrics were read (database clock).", [({}, _seconds(now))])
    return out.text()
