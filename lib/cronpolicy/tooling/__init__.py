"""Operator tooling: the ``cronpolicy`` command and the Python API behind it.

Everything people and release tooling do (flip the deploy switch, schedule
windows, wait for the fleet to be quiet, plan, read history, audit, metrics,
retention, enable and disable) lives here and talks to the database through
SQLAlchemy Core (``database.py``, ``tables.py``), except the read commands
(status, check, history, estimate, why: fleet.py, history.py, explain.py),
which read through ``cronpolicy.store.reads`` because importing SQLAlchemy
costs more than their whole answer should.  None of it is on a cron
job's start path: the gate (the modules one level up) uses the drivers
directly.  Decisions are never re-derived here; they are asked of
``cronpolicy.policy``.

Modules (a test keeps this list complete):

    cli               main(argv) -> int: command words to their modules, the parser built of them
    output            JSON (its format version), tables, the live table, one-line summaries
    schema_commands   schema upgrade / roles
    fleet_commands    status, disable, enable
    window_commands   window add / list / cancel
    deploy_commands   deploy begin / end / wait / plan / slot
    audit_commands    audit, why
    watch_commands    overdue, metrics
    maintenance_commands  flush, prune
    history_commands  history, estimate, check
    database          SQLAlchemy engines and transactions
    tables            the schema's contract for SQLAlchemy
    run_command       `cronpolicy run`: any command behind the gate
    relay             cronpolicy relay: one connection, stop verdicts and leases for many scripts
    deploy            rollouts: deploy wait, and rollout_rows' begin and end
    rollout_rows      rollouts begun, renewed and ended, in plain SQL (store.writes)
    deploy_run        deploy run: a rollout around one command
    rollouts          the rollouts as operators read them
    rollout_plans     deploy plan, deploy slot: reading the fleet for the planner
    planning          a rollout against the schedules: skipped starts, waits, cost, slots (pure)
    schedules         registered schedules: import, the fleet's, their sources
    schedule_commands schedule import / list
    catch_up          cronpolicy catch-up
    windows           rollout windows
    fleet             status: rollouts, the switch, windows, policies, running runs
    policy_edits      enable / disable
    history           history and estimates
    explain           why, and reading the audit's row documents
    audit             the audit trail
    overdue           jobs that have not succeeded in time
    metrics           Prometheus text
    manual            shell completion and the manual page, from the parser
    retention         prune
    simulate          (package) cronpolicy simulate: fleets read, plays run in a pool, the report
    simulation        the simulator's play of one strategy (pure)
    simulation_fleet  the simulator's fleet: strategies, kinds, knobs, jobs, runtimes, warm-up
    simulation_starts the simulator's starts: made or skipped as the gate would, runs, overdue
    simulation_strategy  the simulator's rollouts under a strategy: windows, slots, stops
    simulation_figures  the simulator's figures: summary, records
    simulation_picture  simulate --svg
    crontab           (package) crontab wrap / unwrap / names
    web               (package) cronpolicy serve
"""
