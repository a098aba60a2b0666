"""SQLAlchemy engines for the CLI and rollout tooling.

The gate itself uses ``store.py``; everything that people and tooling do
through the ``cronpolicy`` command (toggle policies, schedule windows, read
history) goes through SQLAlchemy Core with the tables of ``tables.py``.
Connections are made by the same functions as the store's, so timeouts,
password masking and SQLite's schema-on-first-use behave identically.
"""

import contextlib

from sqlalchemy import create_engine, event, exc, text
from sqlalchemy.pool import NullPool

from cronpolicy import config, schema, store
from cronpolicy.errors import DatabaseError, SchemaError
from cronpolicy.timeutil import from_sqlite


class Database:
    """One policy database: an engine plus the helpers every command needs."""

    def __init__(self, settings, application_name="cronpolicy-cli"):
        self.settings = settings
        self.backend = settings.backend
        self.masked_dsn = settings.masked_dsn
        if self.backend == config.SQLITE:
            path = config.sqlite_path(settings.dsn)
            self.engine = create_engine(
                "sqlite://", poolclass=NullPool,
                creator=lambda: store.open_sqlite(
                    path, settings.connect_timeout, settings.dsn_source == "default"))

            # The sqlite3 connection is in autocommit mode; give SQLAlchemy's
            # transactions a real BEGIN, taking the write lock up front.
            @event.listens_for(self.engine, "begin")
            def _begin(connection):
                connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            self.engine = create_engine(
                "postgresql+psycopg2://", poolclass=NullPool,
                creator=lambda: store.connect_postgres(
                    settings.dsn, settings.connect_timeout, application_name,
                    settings.dsn_source))

    @contextlib.contextmanager
    def begin(self, doing="use the policy database", reason=None):
        """A transaction on a schema known to be current; driver errors
        become DatabaseError, naming what failed.  ``reason`` goes into the
        policy_audit entries of the changes made in the transaction."""
        try:
            with self.engine.begin() as connection:
                self.check_schema(connection)
                if reason and self.backend == config.POSTGRESQL:
                    # Read by the audit trigger; local to this transaction.
                    connection.execute(text("SELECT set_config('cronpolicy.reason', :reason, true)"),
                                       {"reason": reason})
                    yield connection
                elif reason:
                    before = connection.execute(text(
                        "SELECT coalesce(max(id), 0) FROM cronpolicy.policy_audit")).scalar_one()
                    yield connection
                    connection.execute(text(
                        "UPDATE cronpolicy.policy_audit SET reason = :reason"
                        " WHERE id > :before AND reason IS NULL"),
                        {"reason": reason, "before": before})
                else:
                    yield connection
        except exc.DBAPIError as error:
            orig = error.orig if error.orig is not None else error
            raise DatabaseError("cannot %s in %s: %s" % (
                doing, self.masked_dsn,
                config.scrub(store.first_line(orig), self.settings.dsn))) from error

    def check_schema(self, connection):
        """Raise SchemaError unless the schema is present and new enough."""
        if self.backend == config.SQLITE:
            return  # created and upgraded on connect
        version = schema.postgres_version(connection.connection.dbapi_connection)
        if version is None or version < schema.SCHEMA_VERSION:
            raise SchemaError(schema.needs_upgrade_message(version, self.masked_dsn))

    def now(self, connection):
        """The database clock (aware UTC): the only clock hosts agree on."""
        if self.backend == config.SQLITE:
            return from_sqlite(connection.execute(
                text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")).scalar_one())
        return connection.execute(text("SELECT now()")).scalar_one()

    def who(self):
        """What to record as changed_by/created_by on SQLite (PostgreSQL uses session_user)."""
        import getpass
        try:
            return getpass.getuser()
        except Exception:
            return "unknown"

    def dispose(self):
        self.engine.dispose()
