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
"""
