"""The fleet at a glance: the open rollouts, the switch, windows, policies
that stop scripts, what is running now, and recording dead runs as abandoned.

``status`` is a read command: it reads through ``cronpolicy.store.reads``
on a connection of its own, without SQLAlchemy; the dashboard reads the
same through the Reader beneath its own transaction (``status_of``).
Recording dead runs is the Reader's (``reap_dead_runs``).
"""

from cronpolicy.store.reads import reading, window_dict


def status(settings, warn=None, brief=False):
    """What a release manager needs at a glance, as one dict.  The next
    starts worked out are kept in the state directory for the next command
    (schedule.load_kept_starts: a fleet's few hundred expressions).
    ``brief``: as status_of's."""
    from cronpolicy import schedule

    def read():
        with reading(settings, "read the status", reap=True) as reader:
            return status_of(reader, settings, warn, brief=brief)
    return schedule.with_kept_starts(settings.state_dir, read)


def status_of(reader, settings, warn=None, host="*", script="*", schedules=None,
              brief=False):
    """``status`` as ``reader`` (store.reads.Reader) reads it, in its
    transaction, recording nothing (`cronpolicy serve` reads through a
    login that may only read); running runs and schedules on ``host`` of
    ``script`` (globs).  ``schedules``: {(name, host): Schedule} already
    known (`serve` keeps them), instead of reading them.  ``brief``: what
    status's text shows of the schedules instead of all of them:
    "scheduled_count", how many, and "scheduled_next", the first three in
    the order of "scheduled" (dicts of name, host and next_start)."""
    from cronpolicy.matching import glob_matches
    from cronpolicy.tooling import rollouts
    from cronpolicy.tooling.schedules import describe, fleet_schedules, fleet_starts
    inputs = reader.inputs()
    now = inputs.now
    windows = [window_dict(window, now) for window in inputs.windows]
    # (only the rows status shows, out of a fleet's hundreds)
    policies = [row._asdict() for row in inputs.policies
                if not row.enabled or row.rollout_exempt]
    if brief and schedules is None:
        starts = fleet_starts(reader, inputs, warn, host, script)
    else:
        found = (fleet_schedules(reader, inputs, warn, host, script, scheduled_only=True,
                                 first_after=now)
                 if schedules is None else schedules)
    for row in reader.owners_without_roles() if warn is not None else ():
        warn("%s #%d gives %s %s to database role %s, which does not exist: the row lets "
             "no one write for it (create the role again, or change the row)" % (
                 row["table_name"], row["id"],
                 "script" if row["table_name"] == "script_owner" else "host",
                 row["owned"], row["db_role"]))
    if brief and schedules is None:
        count, first = starts
        shown = {"scheduled_count": count, "scheduled_next": [
            {"name": name, "host": on, "next_start": start} for start, name, on in first]}
    else:
        shown = {"scheduled": sorted(
            (dict({"name": name, "host": on}, **describe(schedule, now))
             for (name, on), schedule in found.items() if schedule is not None),
            key=lambda row: (row["next_start"] is None, row["next_start"] or now,
                             row["name"], row["host"]))}
    return dict({
        "now": now,
        "deploy": reader.deploy_state(),
        "active_windows": [w for w in windows if w["state"] == "active"],
        "upcoming_windows": [w for w in windows if w["state"] == "upcoming"],
        "disabled_policies": [row for row in policies if not row["enabled"]],
        "exempt_policies": [row for row in policies
                            if row["enabled"] and row["rollout_exempt"]],
        "services": [row._asdict() for row in inputs.services],
        "rollouts": [dict(found, problem=rollouts.problem(found, now)) for found in (
            rollouts.describe(row, now, settings.default_rollout_expect)
            for row in inputs.rollouts)],
        "running": [run for run in reader.live_runs(now, host)
                    if glob_matches(script, run["name"])],
    }, **shown)
