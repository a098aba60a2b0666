"""The policy database as the gate sees it: one provider per backend.

* ``postgresql.PostgresStore``: the fleet-wide store;
* ``sqlite.SQLiteStore``: the embedded default for one machine;
* ``memory.MemoryStore``: a database in memory, for tests and library users.

Each provides ``cronpolicy.interfaces.IPolicyStore``; ``open_store`` picks
the one the settings name.  The statements live in postgresql.sql and
sqlite.sql beside this file.
"""

from cronpolicy import config


def open_store(settings, application_name="cronpolicy"):
    """The IPolicyStore provider for ``settings.dsn`` (not yet connected)."""
    if settings.backend == config.SQLITE:
        from cronpolicy.store.sqlite import SQLiteStore
        return SQLiteStore(config.sqlite_path(settings.dsn),
                           timeout=min(settings.connect_timeout, settings.decision_timeout),
                           create_directory=settings.dsn_source == "default",
                           lease_ttl=settings.lease_ttl)
    from cronpolicy.store.postgresql import PostgresStore
    return PostgresStore(settings.dsn, connect_timeout=settings.connect_timeout,
                         timeout=settings.decision_timeout, application_name=application_name,
                         source=settings.dsn_source, network=settings.network,
                         lease_ttl=settings.lease_ttl,
                         hold_connection=settings.watch != config.WATCH_POLL)
