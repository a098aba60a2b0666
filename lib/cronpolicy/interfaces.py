"""The contracts with more than one provider.

* IPolicyStore: what the gate needs from the policy database.  Providers:
  ``store.PostgresStore`` (the production, fleet-wide store) and
  ``store.SQLiteStore`` (the embedded, one-machine default).
* ICronScript: what a script author defines on a CronScript subclass.
* IInterruptible: the optional ``is_safe_to_interrupt()`` hook.  A CronScript
  subclass that defines the method provides it automatically; one that does
  not counts as never safe to interrupt.

Each provider is checked with ``zope.interface.verify.verifyObject`` in the
tests.
"""

from zope.interface import Attribute, Interface


class IPolicyStore(Interface):
    """The policy database as the gate sees it: one read, then history writes.

    A store owns at most one connection, opened lazily and closed by
    ``close()``; every method raises ``cronpolicy.errors.DatabaseError`` (or
    ``SchemaError``) rather than a driver exception.
    """

    backend = Attribute("'postgresql' or 'sqlite'.")
    masked_dsn = Attribute("The DSN with any password replaced by ***, for messages.")

    def load_inputs(name, history_runs):
        """Everything the decision for script ``name`` needs, in one round trip.

        Returns a ``store.DecisionInputs``: the database's current time, the
        deploy state (None if its row is missing), every policy row, the
        rollout windows that are neither cancelled nor over, and the
        runtimes (seconds) of the last ``history_runs`` succeeded runs of
        ``name``, newest first.  Raises SchemaError when the schema is
        missing or older than this code.
        """

    def record_start(name, host, pid, estimate, skip_reason=None, policy_ignored=False,
                     decision=None, expected_interval=None):
        """Insert a ``running`` row stamped with the database clock; return its id.

        On PostgreSQL the store's session holds an advisory lock keyed on
        the run id from then until it closes, so a dead process is seen at
        once; everywhere the heartbeat is the fallback."""

    def record_skip(name, host, pid, estimate, skip_reason, decision=None,
                    expected_interval=None):
        """Insert a finished ``skipped`` row with its reason; return its id.

        ``decision`` (a policy.Decision, or a bare code such as "locked") and
        ``expected_interval`` (seconds) are recorded with the row, as for
        record_start."""

    def record_finish(run_id, status, exit_code, stop_reason=None):
        """Mark run ``run_id`` finished (database clock) with ``status``,
        ``exit_code`` and, for interrupted runs, the ``stop_reason``."""

    def apply_spooled(entry):
        """Write one entry of a host's spool (see cronpolicy.spool); writing
        the same entry again changes nothing."""

    def heartbeat(run_id, safe_to_interrupt):
        """Refresh the running run's heartbeat and its current safety."""

    def try_fleet_lock(name):
        """Take the fleet-wide single-instance lock of ``name`` for this
        store's lifetime; False if another live run holds it."""

    def listen():
        """Ask to be told of policy, window and deploy-state changes."""

    def fileno():
        """A file descriptor that becomes readable when a change is announced,
        or None where changes must be polled for (SQLite)."""

    def take_notifications():
        """How many change announcements arrived since the last call (0 if none)."""

    def close():
        """Release the connection, if any.  Safe to call twice."""


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
