"""The exceptions cronpolicy raises.

Everything derives from CronPolicyError, so callers (the CLI, the script base
class, rollout tooling) can catch one class and turn it into one line and an
exit code.  Driver errors are wrapped with ``raise ... from`` so the cause is
kept for debugging, while ``str()`` stays a single readable line that never
contains a password.
"""

from cronpolicy import exitcodes


class CronPolicyError(Exception):
    """Root of every error cronpolicy raises on purpose."""

    exit_code = exitcodes.GATE_ERROR


class UsageError(CronPolicyError):
    """Bad input from a person: an unparsable time, an unknown id, a bad option."""

    exit_code = exitcodes.USAGE


class ConfigError(CronPolicyError):
    """The configuration (file, environment, DSN) cannot be used."""


class DatabaseError(CronPolicyError):
    """The policy database could not be reached or refused a statement.

    ``transient`` is true when trying again later may well succeed (the
    server is unreachable, restarting, or out of connections), false when
    it will not (bad credentials, an unknown database, a bad statement).
    ``refused`` is true when the database refused the data itself (a
    constraint, an impossible value): sending the same again never helps,
    unlike a missing privilege, which an administrator may grant.
    ``denied`` is true for a missing privilege, including a script whose
    name belongs to other database roles (script_owner): a run that cannot
    be recorded for that reason must not start.
    ``raced`` is true when the statement lost a race with a transaction it
    could not see (a serialization failure, or a claim of a script or host
    committed while it waited): the same statement, sent again, sees it.
    """

    def __init__(self, message, transient=False, refused=False, denied=False, raced=False):
        super().__init__(message)
        self.transient = transient
        self.refused = refused
        self.denied = denied
        self.raced = raced


class DeadlineExceeded(DatabaseError):
    """The database did not answer within the time allowed."""

    def __init__(self, message):
        super().__init__(message, transient=True)


class SchemaError(DatabaseError):
    """The database has no cronpolicy schema, or one older than this code."""


class NotAPlainFile(UsageError, OSError):
    """A file cronpolicy will not replace: it exists and is not a plain file
    (a device, a FIFO, a socket, a directory or a symbolic link; see
    ``safety.replace_problem``).  Also an OSError, so that every writer's
    handling of a failed write applies to it: one line, exit 2 where a
    person named the path, a warning for a state file."""

    def __str__(self):
        return "refusing %s: %s" % (self.filename, self.strerror)


class NotFound(UsageError):
    """The thing named on the command line does not exist (a window id...)."""


class Interrupted(BaseException):
    """Raised inside a running main() to stop it at a safe point.

    Not an error and not a CronPolicyError: like KeyboardInterrupt it derives
    from BaseException, so a script's ``except Exception:`` does not swallow
    it, while its ``finally:`` blocks and context managers still run.
    ``reason`` says why (deploy pending, a window began, SIGTERM...);
    ``forced`` is true when a second SIGTERM/SIGINT forced it while the
    script was not safe to interrupt; ``stop`` is the stop verdict
    (``cronpolicy.policy.Verdict``: its code, policy and window ids), when
    cronpolicy raised it.
    """

    def __init__(self, reason, forced=False, stop=None):
        super().__init__(reason)
        self.reason = reason
        self.forced = forced
        self.stop = stop


def first_line(error):
    """The first line of a driver error, without libpq's ERROR:/FATAL: prefix
    (store.pgdriver's errors, and schema's, which pgdriver imports)."""
    text = (getattr(error, "pgerror", None) or str(error) or type(error).__name__).strip()
    line = text.splitlines()[0].strip() if text else type(error).__name__
    for prefix in ("ERROR:", "FATAL:"):
        if line.startswith(prefix):
            line = line[len(prefix):].strip()
    return line
