"""SQLAlchemy engines for the CLI and rollout tooling.

Connections are made by the same functions as the gate's stores, so
timeouts, password masking and SQLite's schema-on-first-use behave
identically, and driver errors are translated by the same code.
"""

import contextlib

from sqlalchemy import create_engine, event, exc
from sqlalchemy.pool import NullPool

from cronpolicy import config, schema
from cronpolicy.errors import SchemaError
from cronpolicy.store import pgdriver
from cronpolicy.store.reads import BRIEF_WAIT
from cronpolicy.store.sqlite import open_sqlite


def _reading_texts(connection):
    """A SQLite connection whose rows read a BLOB in a text column as text
    (store.reads.row_as_text, as the commands read them)."""
    from cronpolicy.store.reads import row_as_text
    connection.row_factory = row_as_text
    return connection


class Database:
    """One policy database: an engine plus the helpers every command needs."""

    #: How long a read command's best-effort write (recording dead runs)
    #: waits for SQLite's write lock before doing without (store.reads').
    BRIEF_WAIT = BRIEF_WAIT

    def __init__(self, settings, application_name="cronpolicy-cli"):
        self.settings = settings
        self.backend = settings.backend
        self.masked_dsn = settings.masked_dsn
        # How the next SQLite transaction begins: (BEGIN statement, busy timeout ms).
        self._sqlite_begin = None
        if self.backend == config.SQLITE:
            path = config.sqlite_path(settings.dsn)
            self.engine = create_engine(
                "sqlite://", poolclass=NullPool,
                creator=lambda: _reading_texts(open_sqlite(
                    path, settings.connect_timeout, settings.dsn_source == "default")))

            # The sqlite3 connection is in autocommit mode; give SQLAlchemy's
            # transactions a real BEGIN: writers take the write lock up
            # front, readers none (a writer holding it never stalls them).
            @event.listens_for(self.engine, "begin")
            def _begin(connection):
                statement, wait_ms = self._sqlite_begin or ("BEGIN IMMEDIATE", None)
                if wait_ms is not None:
                    connection.exec_driver_sql("PRAGMA busy_timeout = %d" % wait_ms)
                connection.exec_driver_sql(statement)
        else:
            self.engine = create_engine(
                "postgresql+psycopg2://", poolclass=NullPool,
                creator=lambda: pgdriver.connect(
                    settings.dsn, settings.connect_timeout, application_name,
                    settings.dsn_source, network=settings.network))

    @contextlib.contextmanager
    def read(self, doing="read the policy database", held=None):
        """A transaction that only reads: on SQLite it takes no write lock,
        so a writer holding one (a DBA's open transaction) does not stall it."""
        with self._begun(("BEGIN", None)), self.begin(doing, held=held) as connection:
            yield connection

    @contextlib.contextmanager
    def writing(self, doing, reason="", held=None):
        """A store.writes.Writer beneath a transaction of this Database (the
        audit signed by ``begin``): what is written in plain SQL
        (tooling.rollout_rows, deploy wait) takes this or store.writes.Plain
        alike."""
        from cronpolicy.store.writes import Writer
        with self.begin(doing, reason=reason, held=held) as connection:
            writer = Writer.of(connection, self)
            writer.doing = doing
            yield writer

    @contextlib.contextmanager
    def reading(self, doing, held=None):
        """A store.reads.Reader beneath a transaction that only reads."""
        from cronpolicy.store.reads import Reader
        with self.read(doing, held=held) as connection:
            reader = Reader.of(connection, self)
            reader.doing = doing
            yield reader

    @staticmethod
    def raw(held):
        """The DB-API connection beneath ``held`` (from open_held)."""
        return held.connection.dbapi_connection

    @contextlib.contextmanager
    def briefly(self, doing):
        """A write that may be done without: on SQLite it waits BRIEF_WAIT
        for the write lock, not the whole connect timeout."""
        with self._begun(("BEGIN IMMEDIATE", int(self.BRIEF_WAIT * 1000))), \
                self.begin(doing) as connection:
            yield connection

    @contextlib.contextmanager
    def _begun(self, how):
        self._sqlite_begin = how
        try:
            yield
        finally:
            self._sqlite_begin = None

    def open_held(self, doing="connect to the policy database"):
        """One connection for a series of transactions (``begin(held=...)``):
        deploy wait holds one while it waits.  Close it with close_held()."""
        with self._translated(doing):
            return self.engine.connect()

    def checked(self, held, doing):
        """``held`` (from open_held), its schema checked, for work on its
        DB-API connection beneath any transaction of this class
        (store.reads.reap_if_free, as `metrics` records dead runs)."""
        with self._translated(doing):
            self.check_schema(held)
        return held

    @staticmethod
    def close_held(connection):
        try:
            connection.close()
        except exc.DBAPIError:
            pass        # a connection lost meanwhile closes as it can

    def _translated(self, doing):
        """Driver errors, SQLAlchemy's or the driver's own (the schema check
        reads through the raw connection), become DatabaseError."""
        return pgdriver.translating(doing, self.settings.dsn)

    @contextlib.contextmanager
    def _transaction(self, held):
        if held is None:
            with self.engine.begin() as connection:
                yield connection
        else:
            with held.begin():
                yield held

    @contextlib.contextmanager
    def begin(self, doing="use the policy database", reason=None, held=None):
        """A transaction on a schema known to be current; driver errors
        become DatabaseError, naming what failed.  ``reason`` goes into the
        policy_audit entries of the changes made in the transaction;
        ``held``: on that connection (from hold()) instead of a new one."""
        with self._translated(doing), self._transaction(held) as connection:
            if held is None or not held.info.get("schema checked"):
                self.check_schema(connection)
                if held is not None:
                    # Once per held connection: a schema only grows, and
                    # deploy wait's look and record after the last run's
                    # end are two round trips each shorter (issue 32.2).
                    held.info["schema checked"] = True
            if self._sqlite_begin is not None and self._sqlite_begin[0] == "BEGIN":
                yield connection        # a read (read()): nothing to audit
            else:
                # The reason to the audit (PostgreSQL); on SQLite, whose
                # triggers know no user, the user and the reason to the
                # entries this transaction wrote (store.writes.signed).
                # (A DBA's own change in the sqlite3 shell stays unsigned.)
                from cronpolicy.store.writes import Writer, signed
                with signed(Writer.of(connection, self), reason):
                    yield connection

    def check_schema(self, connection):
        """Raise SchemaError unless the schema is present and new enough."""
        if self.backend == config.SQLITE:
            return  # created and upgraded on connect
        version = schema.postgres_version(connection.connection.dbapi_connection)
        if version is None or version < schema.SCHEMA_VERSION:
            raise SchemaError(schema.needs_upgrade_message(version, self.masked_dsn))

    def inputs(self, connection):
        """The decision inputs (rows.Inputs) as the tooling reads them: every
        policy row, the deploy state and the standing windows, no history."""
        return self._reader(connection).inputs()

    def _reader(self, connection):
        from cronpolicy.store.reads import Reader
        return Reader.of(connection, self)

    def dispose(self):
        self.engine.dispose()
