"""cronpolicy: a policy gate for cron scripts.

    from cronpolicy import CronScript

    class PublishDistro(CronScript):
        name = "publish-distro"
        expected_runtime = 20 * 60

        def main(self):
            ...

    if __name__ == "__main__":
        PublishDistro().run()

See README.txt, ``cronpolicy.script`` (the base class) and ``cronpolicy.policy``
(the decision rules).

Modules (the start path and the vocabulary every layer shares; a test
keeps this list complete; the operators' tools are in ``tooling``, the
database providers in ``store``):

    script        CronScript, the base class (options, logging, main)
    gate          the gate protocol: decide, record, hold, record the end
    policy        the decision: the rule registry and the verdict (pure)
    causes        what a run recorded of its decision, and where why looks for its cause
    matching      globs, names, services and the precedence of policy rows (pure)
    estimate      the runtime estimate (pure)
    schedule      schedules: cron expressions through cronsim, and where each comes from
    catchup       the host's catch-up tickets
    release       pinning a run to the release it started in
    rows          row shapes: the one place rows become objects
    shapes        the named-tuple maker rows and the planners use (cheap to import)
    fallback      the database with its fallbacks: cache and spool
    cache         the host's copy of the last policy fetched
    spool         run records waiting for the database
    watcher       the thread that watches a running script
    relayed       a running script's side of a relay (relay = HOST:PORT)
    interruption  stopping main() at safe points only
    locking       the per-host lock file, fleet-wide slots on one machine
    safety        which directories are safe to write into, and how
    nesting       a gated command that runs another CronScript is gated once
    options       the options every CronScript takes
    arguments     option values that start with '-', counts (both parsers)
    log           log lines: stderr, a file, the journal, syslog
    config        settings: where each comes from, their defaults and checks
    config_file   reading the config file: who wrote it, its sections and keys
    ini           INI text as configparser reads it, without configparser for plain files
    dsns          DSNs: the backend one names, the SQLite default, masking secrets
    timeutil      times and durations, read and shown
    errors        the one exception root and its kinds
    exitcodes     every exit status, documented
    written       --dry-run's and --help's output that cannot be written, said
    schema        finding and applying the schema/ patches
    interfaces    zope.interface contracts of the providers (checked in tests)
    __main__      ``python -m cronpolicy``
"""

from cronpolicy.errors import CronPolicyError, Interrupted

#: The release, in one place: the package metadata (pyproject.toml reads it),
#: ``cronpolicy --version`` and CHANGELOG.txt's newest entry (a test checks
#: they agree).  How it is bumped: CHANGELOG.txt.
__version__ = "0.2.0"

__all__ = ["CronScript", "CronPolicyError", "Interrupted", "__version__"]


def __getattr__(name):
    # CronScript is loaded when asked for: the `cronpolicy` command imports
    # this package for its modules, and its read commands answer in less
    # time than loading the gate, the watcher and the interruption takes.
    if name == "CronScript":
        return _import_the_gate()
    raise AttributeError("module 'cronpolicy' has no attribute %r" % name)


def _import_the_gate():
    """cronpolicy.script's CronScript, imported with the collector paused,
    and what exists then frozen, once (kept here, so later look-ups do not
    come back; issue 32.1).  What an import makes lives until the exit
    (modules, classes, functions): the collections it would set off find
    nothing to free, and frozen, neither the collections during main() nor
    the interpreter's last one at exit walk it again.  Together about 10
    million instructions of a gated no-op's 103 million (a cron job's
    start is mostly imports).  Objects made later, main()'s among them,
    are collected as always; cyclic garbage among what existed at the
    import (the script's earlier imports) is neither freed nor finalized,
    which the interpreter does not promise at exit either.  A collector
    the script turned off stays off, and nothing is frozen then."""
    import gc
    enabled = gc.isenabled()
    gc.disable()
    try:
        from cronpolicy.script import CronScript
    finally:
        if enabled:
            gc.enable()
            gc.freeze()
    globals()["CronScript"] = CronScript
    return CronScript
