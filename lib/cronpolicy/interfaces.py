"""The contracts with more than one provider, and who provides them.

* IPolicySource: where a decision's inputs come from.  Providers: every
  store, ``cache.PolicyCache`` (the host's last read) and
  ``fallback.FallbackSource`` (the store, else the cache).
* IRunRecorder: where run records go.  Providers: every store,
  ``spool.Spool`` (records waiting for the database) and
  ``fallback.FallbackRecorder`` (the store, else the spool).
* IPolicyStore: a policy database as the gate sees it (both of the above,
  plus holding a run).  Providers: ``store.postgresql.PostgresStore`` (the
  production, fleet-wide store), ``store.sqlite.SQLiteStore`` (the embedded
  one-machine default) and ``store.memory.MemoryStore`` (in memory, for
  tests and library users).
* ICronScript: what a script author defines on a CronScript subclass.
* IInterruptible: the optional ``is_safe_to_interrupt()`` hook.  A CronScript
  subclass that defines the method provides it automatically; one that does
  not counts as never safe to interrupt.

The providers are declared at the bottom of this module, so importing a
provider never imports zope.interface (a cron job's start path never
does); the tests and the tooling import this module, and the tests check
each provider with ``zope.interface.verify.verifyObject``.
"""

from zope.interface import Attribute, Interface, classImplements


class IPolicySource(Interface):
    """Answers: what does the decision for a script need to know now?"""

    def load_inputs(name, history_runs):
        """A ``rows.Inputs`` for script ``name``: the database clock, the deploy
        state, every policy row, the windows neither cancelled nor over, and
        the runtimes of its last ``history_runs`` succeeded runs, newest first.
        A source with nothing to offer (a cache with nothing fresh) returns
        None; a store raises ``errors.DatabaseError`` (``transient`` when
        trying again may help) or ``errors.SchemaError``."""


class IRunRecorder(Interface):
    """Takes the records of starts, skips and ends (``rows.RunRecord``, ``rows.RunEnd``)."""

    def record_skip(record):
        """Record a skipped start; return a ``rows.RunHandle``."""

    def record_start(record):
        """Record a start; return the ``rows.RunHandle`` of the running run.
        Its id is None when the recorder cannot give the run a row yet (the
        spool writes the whole run at its end)."""

    def record_finish(run, end):
        """Record how ``run`` (a RunHandle) ended."""


class IPolicyStore(IPolicySource, IRunRecorder):
    """A policy database as the gate sees it: one read, run records, and a
    running run held until ``close()``.

    Every operation is bounded by the store's own ``timeout`` and raises
    ``errors.DatabaseError`` (or ``SchemaError``), never a driver exception.
    A store owns at most one connection (one session), opened lazily."""

    backend = Attribute("'postgresql', 'sqlite' or 'memory'.")
    masked_dsn = Attribute("Where the store is, with any password replaced by ***.")

    def heartbeat(run, safe_to_interrupt):
        """Renew the running run's lease (and its fleet-wide slot's, if it
        holds one) and record its current safety.  False when the lease could
        not be kept: the run was ended, or its slot went to another run."""

    def claim_slot(record, limit):
        """Take one of the ``limit`` fleet-wide slots of script ``record.name``
        for the run keyed ``record.spool_id`` (a lease, renewed by heartbeats and
        given back by ``close()``); False when live runs hold them all."""

    def listen():
        """Ask to be told of policy, window and deploy-state changes."""

    def fileno():
        """A file descriptor that becomes readable when a change is announced,
        or None where changes must be polled for (SQLite)."""

    def policy_version():
        """A number that moves whenever a change that ``listen()`` would
        announce is committed (one small read, for a watcher that polls), or
        None where the store keeps none: then poll with ``load_inputs``."""

    def take_notifications():
        """How many change announcements arrived since the last call (0 if none)."""

    def release():
        """Nothing more will be asked for a while: let go of the connection
        if the store was told not to hold one between uses (``watch =
        poll``, for a pooler in transaction mode).  The next call reconnects."""

    def apply_spooled(entry):
        """Write one ``spool.SpoolEntry``; writing the same entry again changes nothing."""

    def close():
        """End the session: give back the fleet-wide slot, release the
        connection.  A run not recorded as ended lives on until its lease
        runs out.  Safe to call twice."""


class ICronScript(Interface):
    """What a script author defines (see ``cronpolicy.script.CronScript``)."""

    name = Attribute("The script's name in policies and history.")
    expected_runtime = Attribute(
        "Seconds to assume while there is too little run history, or None.")

    def main():
        """Do the job.  Called only when the policy says run."""

    def add_my_options():
        """Add script-specific options to ``self.parser`` (argparse)."""


class IInterruptible(Interface):
    """A script that can tell when stopping it would leave no mess."""

    def is_safe_to_interrupt():
        """True when the job may be stopped right now without harm."""


def _declare_script(cls):
    """CronScript subclasses that define is_safe_to_interrupt provide IInterruptible."""
    if callable(getattr(cls, "is_safe_to_interrupt", None)):
        classImplements(cls, IInterruptible)


def _declare_providers():
    from cronpolicy.cache import PolicyCache
    from cronpolicy.fallback import FallbackRecorder, FallbackSource
    from cronpolicy.spool import Spool
    from cronpolicy.store.memory import MemoryStore
    from cronpolicy.store.postgresql import PostgresStore
    from cronpolicy.store.sqlite import SQLiteStore
    for store in (PostgresStore, SQLiteStore, MemoryStore):
        classImplements(store, IPolicyStore)
    classImplements(PolicyCache, IPolicySource)
    classImplements(FallbackSource, IPolicySource)
    classImplements(Spool, IRunRecorder)
    classImplements(FallbackRecorder, IRunRecorder)

    from cronpolicy.script import CronScript
    classImplements(CronScript, ICronScript)
    pending = list(CronScript.__subclasses__())
    while pending:
        subclass = pending.pop()
        _declare_script(subclass)
        pending.extend(subclass.__subclasses__())
    CronScript._declare_interfaces = staticmethod(_declare_script)


_declare_providers()
