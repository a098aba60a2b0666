"""Fleet metrics in the Prometheus text exposition format.

``render(settings)`` returns the text; `cronpolicy metrics --output FILE` writes
it atomically, for the node exporter's textfile collector (name the file
*.prom).  Two kinds of families, each HELP saying which:

per host (labels script and host): last success time, last duration, runs
    by final status, skips by reason (the decision code), how many are
    running now, the latest runtime estimate next to the latest actual
    runtime, next scheduled start, missed starts, catch-up runs;
fleet-wide: whether a script is overdue (a success on any host counts),
    the open rollouts (by kind and service), those whose owner is lost or
    that are overdue, the stalls of the rollouts recorded (a histogram),
    deploy pending, and the last drain's duration and the script that held
    it up longest.

`metrics` exports both, for the whole fleet (run it on one host);
`metrics --host H` H's per-host families only, `metrics --fleet` the
fleet-wide ones only (every host the first, one host the second).  The
counters (*_total) count what the database tallied as runs ended
(run_tally, schema patch 0022), so deleting history never lowers them.
"""

import collections
import datetime

from cronpolicy import policy
from cronpolicy.rows import DeployState, from_mapping

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)

#: What each export holds (`metrics`, `metrics --host H`, `metrics --fleet`).
ALL, HOST, FLEET = "all", "host", "fleet"

#: HELP's first words: which host should export the family.
PER_HOST = "Per host (each host may export its own with --host): "
FLEET_WIDE = "Fleet-wide (export from one host only): "


def _escape(value):
    text = str(value)
    if "\\" in text or "\n" in text or '"' in text:
        return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return text


class _Exposition:

    def __init__(self):
        self.lines = []

    def family(self, name, kind, help_text, samples):
        """``samples``: [(labels dict, value)]."""
        self.lines.append("# HELP %s %s" % (name, help_text))
        self.lines.append("# TYPE %s %s" % (name, kind))
        labelled, bare, append = name + "{%s} %r", name + " %r", self.lines.append
        for labels, value in samples:
            # (labels: a dict, or its text already: a fleet's families have
            # tens of thousands of samples, mostly of the same pairs)
            label_text = labels if type(labels) is str else ",".join(
                '%s="%s"' % (key, _escape(labels[key])) for key in labels)
            append(labelled % (label_text, float(value)) if label_text
                   else bare % float(value))

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


#: A run as the per-host families read it.
_Run = collections.namedtuple("_Run", "name host id started_at finished_at estimate_seconds")


def _latest(reader, host):
    """(last runs, latest estimates): per script and host, the finished run
    that finished last and the run with an estimate that started last, as
    metrics_latest_runs picks each (by time, then the higher id): _Run rows.
    A run whose times (a last run) or estimate (a latest estimate) cannot
    be read, as plain SQL may write run_tally, gives none."""
    from cronpolicy.rows import to_int, to_seconds, to_time
    last_runs, estimates = [], []
    for name, where, run_id, started_at, finished_at, estimate, last_run, latest_estimate \
            in reader.tuples("metrics_latest_runs", {"host": host}):
        run_id = to_int(run_id)
        if run_id is None:      # (text in a SQLite id column: no run to name)
            continue
        run = _Run(name, where, run_id, to_time(started_at), to_time(finished_at),
                   to_seconds(estimate))
        if last_run and run.started_at is not None and run.finished_at is not None:
            last_runs.append(run)
        if latest_estimate and run.estimate_seconds is not None:
            estimates.append(run)
    return last_runs, estimates


#: The stall histogram's buckets (seconds): from moments to hours.
STALL_BUCKETS = (1, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)


def _rollout_families(out, settings, now, open_rows, stalls):
    from cronpolicy.tooling.rollouts import describe
    found = [describe(row, now, settings.default_rollout_expect) for row in open_rows]
    counts = {}
    for row in found:
        for service in row["services"] or [""]:
            key = (row["kind"], service)
            counts[key] = counts.get(key, 0) + 1
    out.family("cronpolicy_rollouts_open", "gauge",
               FLEET_WIDE + "rollouts open now, by kind (full, services) and service (\"\" "
               "for full).",
               [({"kind": kind, "service": service}, count)
                for (kind, service), count in sorted(counts.items())])
    out.family("cronpolicy_rollouts_owner_lost", "gauge",
               FLEET_WIDE + "open rollouts whose owning process's lease ran out (`deploy run` "
               "killed).",
               [({}, sum(row["owner_lost"] for row in found))])
    out.family("cronpolicy_rollouts_overdue", "gauge",
               FLEET_WIDE + "open rollouts open longer than expected (--expect, else "
               "default_rollout_expect).",
               [({}, sum(row["overdue"] for row in found))])
    out.histogram("cronpolicy_rollout_stall_seconds",
                  FLEET_WIDE + "from a rollout's beginning until deploy wait first saw "
                  "nothing in its way, over the rollouts recorded.", STALL_BUCKETS, stalls)



def _per_host(rows):
    """{(name, host, *rest): count} from (name, host, *rest, count) rows, summed."""
    counts = {}
    for row in rows:
        key = tuple(row[:-1])
        counts[key] = counts.get(key, 0) + row[-1]
    return counts


def render(settings, warn=None, host=None, scope=ALL):
    """The metrics text; what the fleet's rows leave out (a schedule that
    cannot be read, a runtime no plan believes) is said through ``warn``.

    ``scope``: ALL, every family; HOST, the per-host families of ``host``
    only; FLEET, the fleet-wide ones only.  Counters are what the database
    tallied as runs ended (run_tally, schema patch 0022; with what prune
    deleted before it, pruned_runs): deleting history never lowers them.

    One session for the whole scrape (every host may be scraped every few
    seconds): dead runs recorded first, in a transaction of their own, then
    every family read in one transaction, one snapshot, in plain SQL
    (store.reads: the statements metrics_* of its files; through
    SQLAlchemy its import alone cost a scrape about 100 ms of CPU, and the
    runs were counted in five passes over the history, not one)."""
    from cronpolicy.store.reads import reap_if_free, session, transaction
    with session(settings) as reader:
        reader.doing = "record dead runs"
        reap_if_free(reader, settings.connect_timeout)
        with transaction(reader, "read the metrics"):
            return _render(reader, settings, warn, host, scope)


def _render(reader, settings, warn, host, scope):
    """render's reads and families, in ``reader``'s transaction."""
    from cronpolicy.tooling.overdue import overdue_of
    out = _Exposition()
    now = reader.now()
    if scope != FLEET:
        # (The fleet-wide families count no runs: --fleet reads none, where
        # it read every pair's counts and latest runs to show none of them.)
        runs = _read_runs(reader, host)
        if runs["uncounted"] and warn is not None:
            warn("%d rows of cronpolicy.run_tally hold no count of runs (written around its "
                 "checks): left out of the counters" % runs["uncounted"])
        _host_families(out, reader, settings, warn, host, now, runs)
    if scope != HOST:
        _, reports = overdue_of(reader, include_all=True, details=False)
        _fleet_families(out, settings, now, reports, *_read_fleet(reader))
    out.family("cronpolicy_metrics_timestamp_seconds", "gauge",
               "When these metrics were read (database clock).", [({}, _seconds(now))])
    return out.text()


def _read_runs(reader, host):
    """What the per-host families count, of ``host`` (None: every host),
    from run_tally and the running runs (metrics_runs): the counts by
    status, by skip decision, of starts rollouts skipped and of catch-up
    runs, and each pair's last success (rows of run_tally with no count
    left out, how many in "uncounted"); besides, each pair's last finished
    run and latest estimate."""
    by_status, skips, missed, caught_up, last_success = {}, {}, {}, {}, {}
    success_starts, uncounted = {}, 0
    from cronpolicy.rows import to_time
    for name, where, status, decision, blocked, count, finished_at, started_at in \
            reader.tuples("metrics_runs", {"host": host}):
        if not isinstance(count, int) or count < 0:
            uncounted += 1
            continue
        key = (name, where, status)
        by_status[key] = by_status.get(key, 0) + count
        if status == "skipped":
            key = (name, where, decision)
            skips[key] = skips.get(key, 0) + count
            if blocked:
                missed[name, where] = missed.get((name, where), 0) + count
        if decision == policy.CATCH_UP:
            caught_up[name, where] = caught_up.get((name, where), 0) + count
        if status == "succeeded":
            moment, known = to_time(finished_at), last_success.get((name, where))
            last_success[name, where] = moment if known is None or (
                moment is not None and moment > known) else known
            moment, known = to_time(started_at), success_starts.get((name, where))
            success_starts[name, where] = moment if known is None or moment > known else known
    last_runs, latest_estimates = _latest(reader, host)
    return {
        "by_status": [key + (count,) for key, count in by_status.items()],
        "uncounted": uncounted,
        "skips": [key + (count,) for key, count in skips.items()],
        "last_success": [key + (moment,) for key, moment in last_success.items()],
        "last_runs": last_runs,
        "latest_estimates": latest_estimates,
        "missed": [key + (count,) for key, count in missed.items()],
        "caught_up": [key + (count,) for key, count in caught_up.items()],
        # (when each pair's newest success started: the scheduled reports' last successes)
        "last_success_starts": success_starts,
    }


def _read_fleet(reader):
    """(open rollouts, stalls, deploy_state, the last drain): what the
    fleet-wide families show besides the overdue scripts."""
    stalls = [max(0.0, (quiet_at - began_at).total_seconds())
              for quiet_at, began_at in ((row["quiet_at"], row["began_at"]) for row in
                                         reader.rows("rollout_stalls", kinds={
                                             "quiet_at": "time", "began_at": "time"}))]
    deploy = reader.rows("deploy_state")
    last_drain = reader.rows("last_drain", kinds={
        "started_at": "time", "finished_at": "time", "longest_blocker_seconds": "seconds"})
    return (reader.open_rollouts(), stalls,
            deploy[0] if deploy else None,
            last_drain[0] if last_drain else None)


def _host_families(out, reader, settings, warn, host, now, read):
    """The families of runs on hosts: labelled script and host.  ``read``:
    what _read_runs read (run_tally's rows with a count only: the counts
    of what prune deleted are in them, schema patch 0022)."""
    from cronpolicy.tooling.overdue import scheduled_reports_of
    by_status, last_success, last_runs, latest_estimates = (
        read["by_status"], read["last_success"], read["last_runs"], read["latest_estimates"])
    runs = _per_host([row for row in by_status if row[2] != "running"])
    skipped = _per_host(read["skips"])
    missed = _per_host(read["missed"])
    caught_up = _per_host(read["caught_up"])
    pairs = sorted({(row[0], row[1]) for row in by_status} | {key[:2] for key in runs})
    # By their leases, as every reader tells live runs from dead ones: a
    # login that may only read leaves dead runs unrecorded.
    running = {}
    for run in reader.live_runs(now, "*" if host is None else host):
        if host is None or run["host"] == host:
            key = run["name"], run["host"]
            running[key] = running.get(key, 0) + 1

    pair_labels = _PairLabels()

    def labels(name, where, **more):
        """The label text of {"script": name, "host": where, **more}."""
        text = pair_labels[name, where]
        for key, value in more.items():
            text += ',%s="%s"' % (key, _escape(value))
        return text

    out.family("cronpolicy_last_success_timestamp_seconds", "gauge",
               PER_HOST + "when the script last succeeded there (Unix time, database clock).",
               [(pair_labels[name, where], _seconds(moment))
                for name, where, moment in sorted(last_success)])
    out.family("cronpolicy_last_duration_seconds", "gauge",
               PER_HOST + "how long the script's last finished run there took.",
               [(pair_labels[row.name, row.host],
                 (row.finished_at - row.started_at).total_seconds())
                for row in sorted(last_runs, key=_name_host)])
    out.family("cronpolicy_runs_total", "counter",
               PER_HOST + "runs that ended, by final status (runs prune deleted included).",
               [(labels(name, where, status=status), count)
                for (name, where, status), count in sorted(runs.items())])
    out.family("cronpolicy_skips_total", "counter",
               PER_HOST + "skipped starts, by the decision that skipped them.",
               [(labels(name, where, reason=reason or "unknown"), count)
                for (name, where, reason), count in sorted(skipped.items())])
    out.family("cronpolicy_running", "gauge",
               PER_HOST + "live runs of the script there now (dead ones excluded).",
               [(pair_labels[name, where], running.get((name, where), 0))
                for name, where in pairs])
    out.family("cronpolicy_estimate_seconds", "gauge",
               PER_HOST + "the runtime estimate the script's latest decision there used.",
               [(pair_labels[row.name, row.host], row.estimate_seconds)
                for row in sorted(latest_estimates, key=_name_host)])
    out.family("cronpolicy_last_runtime_vs_estimate_ratio", "gauge",
               PER_HOST + "the last finished run's duration divided by the estimate it "
               "started with.",
               [(pair_labels[row.name, row.host],
                 (row.finished_at - row.started_at).total_seconds() / row.estimate_seconds)
                for row in sorted(last_runs, key=_name_host) if row.estimate_seconds])
    # Gathered for the host as a glob, then kept exactly (a name may hold * or ?).
    _, scheduled = scheduled_reports_of(reader, settings, include_all=True, warn=warn,
                                        host="*" if host is None else host,
                                        last_successes=read["last_success_starts"],
                                        details=False)
    scheduled = [report for report in scheduled if host is None or report["host"] == host]
    out.family("cronpolicy_next_start_timestamp_seconds", "gauge",
               PER_HOST + "when the script is next scheduled to start there (Unix time).",
               [(pair_labels[report["name"], report["host"]], _seconds(report["next_start"]))
                for report in scheduled if report["next_start"] is not None])
    out.family("cronpolicy_schedule_overdue", "gauge",
               PER_HOST + "1 when the script has not succeeded there since its last "
               "scheduled start (plus its estimate and a grace).",
               [(pair_labels[report["name"], report["host"]], 1 if report["overdue"] else 0)
                for report in scheduled])
    out.family("cronpolicy_starved_rollouts", "gauge",
               PER_HOST + "how many rollouts in a row skipped the script there.",
               [(pair_labels[report["name"], report["host"]], report["skipped_by"])
                for report in scheduled])
    out.family("cronpolicy_missed_starts_total", "counter",
               PER_HOST + "starts skipped by rollouts (deploy pending, windows; runs prune "
               "deleted included).",
               [(pair_labels[name, where], count)
                for (name, where), count in sorted(missed.items())])
    out.family("cronpolicy_catch_up_runs_total", "counter",
               PER_HOST + "runs that caught up a start a rollout skipped (catch_up = once).",
               [(pair_labels[name, where], count)
                for (name, where), count in sorted(caught_up.items())])


class _PairLabels(dict):
    """{(name, host): the label text of script name on host}, each made once."""

    def __missing__(self, key):
        text = self[key] = 'script="%s",host="%s"' % (_escape(key[0]), _escape(key[1]))
        return text


def _name_host(row):
    return row.name, row.host


def _fleet_families(out, settings, now, reports, open_rollouts, stalls, deploy, last_drain):
    """The families of the fleet as a whole."""
    out.family("cronpolicy_overdue", "gauge",
               FLEET_WIDE + "1 when the script has not succeeded on any host within its "
               "expected interval (x tolerance).",
               [({"script": report["name"]}, 1 if report["overdue"] else 0)
                for report in reports])
    _rollout_families(out, settings, now, open_rollouts, stalls)
    out.family("cronpolicy_deploy_pending", "gauge",
               FLEET_WIDE + "1 while a full rollout is open.",
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
               FLEET_WIDE + "how long the last `cronpolicy deploy wait` took.", drain_samples)
    out.family("cronpolicy_last_drain_longest_blocker_seconds", "gauge",
               FLEET_WIDE + "the script that held up the last drain longest, and for how long.",
               blocker_samples)
