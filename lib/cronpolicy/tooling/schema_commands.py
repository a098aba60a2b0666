"""`cronpolicy schema upgrade|roles`: each a plain ``cmd_x(args, settings) -> int``."""

from cronpolicy import exitcodes
from cronpolicy.config import SQLITE
from cronpolicy.errors import CronPolicyError, SchemaError


def add_arguments(parsers):
    """The parsers of schema upgrade and schema roles (see cli.CommandParsers)."""
    add, group = parsers.add, parsers.group
    schema_commands = group("schema", "schema_command")
    add("upgrade", "cmd_schema_upgrade", "apply the schema patches the database lacks",
        subparsers=schema_commands)
    add("roles", "cmd_schema_roles", "create the cronpolicy_* group roles and grant their rights "
                                   "(PostgreSQL, as a superuser; idempotent)",
        subparsers=schema_commands)


def _schema_connection(settings):
    """A plain psycopg2 connection without a statement timeout: an index on a
    long history may take a while."""
    from cronpolicy.store import pgdriver
    return pgdriver.connect(settings.dsn, settings.connect_timeout, "cronpolicy-schema",
                            settings.dsn_source, statement_timeout=False,
                            network=settings.network)


def cmd_schema_upgrade(args, settings):
    from cronpolicy import schema
    from cronpolicy.store.pgdriver import translating
    with translating("upgrade the schema", settings.dsn):
        if settings.backend == SQLITE:
            from cronpolicy.config import sqlite_path
            from cronpolicy.store.sqlite import connect_sqlite
            connection = connect_sqlite(sqlite_path(settings.dsn), settings.connect_timeout,
                                        create_directory=settings.dsn_source == "default")
            try:
                applied = schema.upgrade_sqlite(connection)
                version = schema.sqlite_version(connection)
            finally:
                connection.close()
        else:
            connection = _schema_connection(settings)
            try:
                applied = schema.upgrade_postgres(connection)
                version = schema.postgres_version(connection)
            finally:
                connection.close()
    for filename in applied:
        print("applied %s" % filename)
    print("schema of %s is at version %d%s" % (
        settings.masked_dsn, version, "" if applied else " (already up to date)"))
    return exitcodes.OK


def cmd_schema_roles(args, settings):
    from cronpolicy import schema
    if settings.backend == SQLITE:
        raise CronPolicyError("roles are a PostgreSQL feature; the SQLite database has one user")
    from cronpolicy.store.pgdriver import translating
    connection = _schema_connection(settings)
    try:
        with translating("read the schema version", settings.dsn):
            version = schema.postgres_version(connection)
        if version is None or version < schema.SCHEMA_VERSION:
            raise SchemaError(schema.needs_upgrade_message(version, settings.masked_dsn))
        schema.apply_roles(connection)
    finally:
        connection.close()
    print("roles cronpolicy_script, cronpolicy_rollout, cronpolicy_admin, "
          "cronpolicy_reader and cronpolicy_relay are in place "
          "with their rights in %s" % settings.masked_dsn)
    return exitcodes.OK
