"""What the operator commands write, in plain SQL on a DB-API connection.

`deploy begin` and `deploy end` imported SQLAlchemy (about 0.2 s of CPU)
to write one row: what they write is here instead, named statements in
postgresql-writes.sql and sqlite-writes.sql run by a ``Writer`` (a
store.reads.Reader that may also write), in one write transaction.

Two ways to a Writer, for one body of code (tooling.rollout_rows):

* ``Plain(settings).writing(doing, reason)``: a connection of its own
  (store.reads.connect), as the commands use it;
* ``Database.writing(doing, reason)`` (tooling.database): beneath a
  SQLAlchemy transaction, for the Python API and `deploy run`.

Either signs the audit the same way (``signed``): on PostgreSQL the reason
goes to the audit trigger through a setting local to the transaction; on
SQLite, whose triggers know neither the user nor the reason, the entries
the transaction wrote get both when its work is done.
"""

import contextlib
import datetime

from cronpolicy import config
from cronpolicy.store import queries
from cronpolicy.store.reads import Reader, _transaction, connect


def who():
    """What to record as the user on SQLite (PostgreSQL uses session_user)."""
    import getpass
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


class Writer(Reader):
    """Reads and writes on one DB-API ``connection``, in the write
    transaction its owner holds; driver errors become DatabaseError."""

    def __init__(self, connection, backend, masked_dsn, dsn=None, host=None):
        super().__init__(connection, backend, masked_dsn, dsn, host)
        self._sql.update(queries(backend + "-writes"))

    def count(self, query, parameters=None):
        """How many rows statement ``query`` changed."""
        cursor = self.connection.cursor()
        try:
            cursor.execute(self._sql[query], parameters or {})
            return cursor.rowcount
        except Exception as error:
            raise self._translated(error) from error
        finally:
            cursor.close()

    def seconds(self, value):
        """A parameter for a duration column: an interval on PostgreSQL,
        seconds on SQLite."""
        if value is None:
            return None
        if self.backend == config.SQLITE:
            return float(value)
        return datetime.timedelta(seconds=value)



@contextlib.contextmanager
def signed(writer, reason):
    """The audit entries written in the block carry ``reason`` (and, on
    SQLite, the user)."""
    if writer.backend == config.POSTGRESQL:
        if reason:
            writer.rows("set_reason", {"reason": reason})
        yield
        return
    [row] = writer.rows("audit_high_water")
    yield
    writer.count("sign_audit", {"who": who(), "reason": reason or None,
                                "before": row["high_water"]})


class Plain:
    """The policy database of ``settings`` for code written against a
    Writer: each ``writing`` or ``reading`` block a connection of its own,
    or the one ``open_held`` gave (deploy wait holds one while it waits)."""

    def __init__(self, settings, application_name="cronpolicy-cli"):
        self.settings = settings
        self.backend = settings.backend
        self.application_name = application_name

    def open_held(self, doing="connect to the policy database"):
        """A DB-API connection on a current schema, for a series of
        transactions (``held=``); close it with close_held()."""
        return connect(self.settings, self.application_name)

    @staticmethod
    def close_held(held):
        try:
            held.close()
        except Exception:
            pass        # a connection lost meanwhile closes as it can

    @staticmethod
    def raw(held):
        """The DB-API connection of ``held`` (its notifications, its socket)."""
        return held

    @contextlib.contextmanager
    def writing(self, doing, reason="", held=None):
        """A Writer in one write transaction (SQLite: the write lock at once)."""
        with self._on(held) as connection:
            writer = Writer.on(connection, self.settings, doing)
            with _transaction(writer, write=True), signed(writer, reason):
                yield writer

    @contextlib.contextmanager
    def reading(self, doing, held=None):
        """A Reader in one transaction that only reads (SQLite: no lock)."""
        with self._on(held) as connection:
            reader = Reader.on(connection, self.settings, doing)
            with _transaction(reader):
                yield reader

    @contextlib.contextmanager
    def _on(self, held):
        if held is not None:
            yield held
            return
        connection = connect(self.settings, self.application_name)
        try:
            yield connection
        finally:
            connection.close()
