"""psycopg2, as cronpolicy uses it: connecting, waiting with a deadline, and
turning driver errors into cronpolicy's.

The gate's store connects asynchronously (libpq's non-blocking API) and
waits in select() until a deadline, so no call can outlast it, not even
against a server that accepts the connection and then says nothing (a host
name is looked up first, in a thread given the same deadline, as libpq's
own lookup would block); the
tooling connects synchronously (SQLAlchemy wants a plain connection).  Both
get the same options, and every psycopg2 error passes through
``translate`` on its way out, so messages are one line, never hold a
password, and say whether trying again may help.

Server settings (statement_timeout, the server's TCP keepalives) travel in
libpq's ``options`` startup parameter.  pgbouncer refuses it ("unsupported
startup parameter: options") unless told to ignore it: then the connection
is made again without it, and this process remembers not to send it to that
DSN again.  Behind a pooler those settings are the pooler's business anyway
(``query_timeout``, ``tcp_keepalive``); the client-side deadlines still hold.
"""

import functools
import math
import select
import time

from cronpolicy import config
from cronpolicy.errors import (  # noqa: F401
    ConfigError, DatabaseError, DeadlineExceeded, SchemaError, first_line)

#: A statement may not wait longer than this (lock waits included).
STATEMENT_TIMEOUT_SECONDS = 30

#: What pgbouncer says to a startup packet that carries ``options``.
_OPTIONS_REFUSED = "unsupported startup parameter: options"
#: DSNs whose server (a pooler) refused ``options`` in this process.
_refuses_options = set()


#: What the server says when a login, a database or the server is out of
#: connections (SQLSTATE 53300; libpq gives no SQLSTATE before a session):
#: "too many connections for role/database", "remaining connection slots
#: are reserved", "sorry, too many clients already" (max_connections), and
#: pgbouncer's "no more connections allowed (max_client_conn)".
_NO_CONNECTION_LEFT = ("too many connections", "remaining connection slots are reserved",
                       "too many clients already", "no more connections allowed")


# Connection failures worth waiting out, whatever else their message says
# ("too many connections for role ..." names a role, yet passes).
_TRANSIENT_CONNECT_ERRORS = _NO_CONNECTION_LEFT + ("the database system is starting up",
                                                   "the database system is shutting down",
                                                   "the database system is in recovery mode")
# Connection failures that say nothing will change by retrying.
_PERMANENT_CONNECT_ERRORS = ("password authentication failed", "does not exist",
                             "no pg_hba.conf entry", "role", "invalid dsn", "SSL")
# Server states worth waiting out: too many connections, starting or
# shutting down, connection failures.
TRANSIENT_SQLSTATES = frozenset(["53300", "53400", "57P01", "57P02", "57P03",
                                 "08000", "08001", "08003", "08004", "08006"])
# What the database refuses for the data itself, whatever the moment: class
# 22 (data exception: a number out of range, text that is no timestamp),
# 23 (integrity constraint violation: a CHECK, a guard trigger's
# check_violation, NOT NULL, UNIQUE) and 54 (program limit exceeded: a
# value too long for an index, "index row size exceeds btree maximum";
# psycopg2 raises class 54 as an OperationalError, yet no retry helps).
# And class P0: a trigger of the site's own (a DBA's) that refuses a row
# with plpgsql's RAISE EXCEPTION (P0001; ASSERT, P0004): taken for an
# outage, the job ran unseen and its spooled record failed every flush.
REFUSED_SQLSTATE_CLASSES = ("22", "23", "54", "P0")
# A race, not the data: a serialization failure, or a claim of a script or
# a host (claim_script, claim_host) that another transaction committed while
# this one waited for it, unseen by a snapshot taken before (a login whose
# default_transaction_isolation is repeatable read): the same statement sent
# again sees the claim.  Taken for a refusal of the data, it stopped the
# first starts of a new script by the same login at once (exit 4).
RACED_SQLSTATES = frozenset(["40001"])
# The database answers, and will not let this login write what was asked,
# whatever the moment: a missing privilege (42501), or a database that only
# reads (25006: a hot standby, default_transaction_read_only).  Taken for an
# outage, a start on a standby ran unseen by `deploy wait`, decided on a
# policy that may lag the primary's (a rollout begun there unseen).
DENIED_SQLSTATES = frozenset(["42501", "25006"])
READ_ONLY_SQLSTATE = "25006"
CLAIM_KEYS = frozenset(["script_owner_name_role_key", "script_owner_first_claim_key",
                        "host_login_host_role_key", "host_login_first_claim_key"])
# Undefined table, column, schema, function: the schema is missing or old.
SCHEMA_SQLSTATES = frozenset(["42P01", "42703", "3F000", "42883"])
# libpq's words for a DSN it cannot parse: configuration, not connectivity.
_DSN_SYNTAX_ERRORS = ("invalid integer value", "invalid connection option", 'missing "="',
                      "unterminated quoted string", "invalid sslmode value",
                      "invalid URI", "invalid port number")


def _dsn_has_options(dsn):
    """Whether the DSN sets libpq's ``options`` itself (then it is left alone)."""
    from psycopg2.extensions import parse_dsn
    try:
        return "options" in parse_dsn(dsn)
    except Exception:
        return False  # connecting reports the unparsable DSN


def options(connect_timeout, application_name, statement_timeout, dsn, network=None):
    """libpq's connection parameters.  ``network`` = (keepalive, user timeout)
    in seconds: both this host and the server probe idle connections and give
    up on unacknowledged data that soon, so a half-open connection fails in
    seconds on either side instead of lingering for TCP's two hours."""
    keepalive, user_timeout = network or (config.DEFAULT_TCP_KEEPALIVE,
                                          config.DEFAULT_TCP_USER_TIMEOUT)
    idle, interval = max(1, int(keepalive)), max(1, int(keepalive // 3))
    found = {
        "connect_timeout": max(1, int(math.ceil(connect_timeout))),
        "application_name": application_name[:63],
        "keepalives": 1, "keepalives_idle": idle, "keepalives_interval": interval,
        "keepalives_count": 3, "tcp_user_timeout": int(user_timeout * 1000),
    }
    if not _dsn_has_options(dsn) and dsn not in _refuses_options:
        settings = ["-c tcp_keepalives_idle=%d" % idle, "-c tcp_keepalives_interval=%d" % interval,
                    "-c tcp_keepalives_count=3", "-c tcp_user_timeout=%d" % (user_timeout * 1000)]
        if statement_timeout:
            settings.append("-c statement_timeout=%d" % (STATEMENT_TIMEOUT_SECONDS * 1000))
        found["options"] = " ".join(settings)
    return found


def out_of_connections(error):
    """Whether ``error`` (a cronpolicy DatabaseError) says no connection was left."""
    message = str(error)
    return any(marker in message for marker in _NO_CONNECTION_LEFT)


def connect_failure(error, dsn, source=None):
    """The cronpolicy error for a failed connection attempt."""
    import psycopg2
    message = first_line(error)
    if isinstance(error, psycopg2.ProgrammingError) or any(
            marker in message for marker in _DSN_SYNTAX_ERRORS):
        return ConfigError("invalid PostgreSQL DSN %s%s: %s" % (
            config.mask_dsn(dsn), " (from %s)" % source if source else "",
            config.scrub(message, dsn)))
    transient = (getattr(error, "pgcode", None) in TRANSIENT_SQLSTATES
                 or any(marker in message for marker in _TRANSIENT_CONNECT_ERRORS)
                 or not any(marker in message for marker in _PERMANENT_CONNECT_ERRORS))
    return DatabaseError("cannot connect to %s: %s" % (
        config.mask_dsn(dsn), config.scrub(message, dsn)), transient=transient)


def translate(error, doing, dsn, found_version=None):
    """The cronpolicy error for a driver error raised while ``doing`` something.

    ``found_version()`` is asked for the schema version when the error says
    a table or column is missing (the schema is absent or older)."""
    import psycopg2
    from cronpolicy import schema
    if getattr(error, "pgcode", None) in SCHEMA_SQLSTATES:
        version = found_version() if found_version is not None else None
        return SchemaError(schema.needs_upgrade_message(version, config.mask_dsn(dsn)))
    code = getattr(error, "pgcode", None) or ""
    diag = getattr(error, "diag", None)
    raced = code in RACED_SQLSTATES or (
        code == "23505" and getattr(diag, "constraint_name", None) in CLAIM_KEYS)
    refused = code[:2] in REFUSED_SQLSTATE_CLASSES and not raced
    transient = raced or not refused and (
        isinstance(error, (psycopg2.OperationalError, psycopg2.InterfaceError))
        or code in TRANSIENT_SQLSTATES)
    hint = ("; the database only reads (a standby, or default_transaction_read_only): point "
            "the DSN at the primary" if code == READ_ONLY_SQLSTATE else "")
    return DatabaseError("cannot %s in %s: %s%s" % (
        doing, config.mask_dsn(dsn), config.scrub(first_line(error), dsn), hint),
        transient=transient, refused=refused, denied=code in DENIED_SQLSTATES, raced=raced)


def translated(error, doing, dsn):
    """The cronpolicy error for ``error`` when a database driver raised it
    (psycopg2 or sqlite3, also inside SQLAlchemy's wrapper), else None.

    The one place driver errors of every backend are turned into
    cronpolicy's, for the tooling's engine (tooling/database.py), the read
    commands (store/reads.py) and the schema commands alike.  The drivers
    are looked up, never imported: an error of one was raised by it."""
    import sys
    unwrapped = type(error).__module__.startswith("sqlalchemy") and hasattr(error, "orig")
    if unwrapped and error.orig is not None:        # SQLAlchemy's DBAPIError
        error = error.orig
    psycopg2 = sys.modules.get("psycopg2")
    if psycopg2 is not None and isinstance(error, psycopg2.Error):
        return translate(error, doing, dsn)
    sqlite3 = sys.modules.get("sqlite3")
    if unwrapped or (sqlite3 is not None and isinstance(error, sqlite3.Error)):
        return DatabaseError("cannot %s in %s: %s" % (doing, config.mask_dsn(dsn),
                                                      config.scrub(first_line(error), dsn)))
    return None


class translating:
    """A block whose database driver errors leave it as cronpolicy's
    (``translated``): one line, exit 4, never a driver's traceback."""

    def __init__(self, doing, dsn):
        self.doing, self.dsn = doing, dsn

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        found = translated(error, self.doing, self.dsn) if isinstance(error, Exception) else None
        if found is not None:
            raise found from error
        return False


def _refused_options(error, dsn, sent):
    """Whether ``error`` is a pooler refusing the ``options`` just ``sent``;
    if so, they are not sent to ``dsn`` again."""
    if "options" in sent and _OPTIONS_REFUSED in str(error):
        _refuses_options.add(dsn)
        return True
    return False


def tolerate_far_times(connection):
    """Have ``connection`` read timestamps Python cannot hold ('infinity',
    year 200000: PostgreSQL accepts them) as the bounds rows.to_time clamps
    to, with its warning, instead of failing the whole read."""
    from psycopg2 import extensions
    for caster in _clamping_casters():
        extensions.register_type(caster, connection)
    return connection


@functools.lru_cache(maxsize=None)
def _clamping_casters():
    """The casters, made once per process (watch = poll connects every second)."""
    from psycopg2 import extensions
    from cronpolicy.rows import to_time

    def clamping(default):
        def cast(value, cursor):
            try:
                return default(value, cursor)
            except (ValueError, OverflowError):
                return to_time(value)
        return cast
    return tuple(extensions.new_type(default.values, "CRONPOLICY_" + default.name,
                                     clamping(default))
                 for default in (extensions.PYDATETIMETZ, extensions.PYDATETIME))


def connect(dsn, connect_timeout=config.DEFAULT_CONNECT_TIMEOUT,
            application_name="cronpolicy", source=None, statement_timeout=True, network=None):
    """A synchronous psycopg2 connection (tooling, schema upgrades)."""
    import psycopg2
    while True:
        sent = options(connect_timeout, application_name, statement_timeout, dsn, network)
        try:
            return tolerate_far_times(psycopg2.connect(dsn, **sent))
        except psycopg2.Error as error:
            if not _refused_options(error, dsn, sent):
                raise connect_failure(error, dsn, source) from error


def _is_address(host):
    import _socket          # socket's C half: the address check needs no more
    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            _socket.inet_pton(family, host)
            return True
        except (OSError, ValueError):
            continue
    return False


def _resolve_within(host, port, deadline):
    """The addresses of ``host``, looked up in a thread that is abandoned at
    ``deadline``: name lookups cannot be given a timeout any other way."""
    import socket
    import threading
    outcome = {}

    def look_up():
        try:
            outcome["addresses"] = [found[4][0] for found in socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM)]
        except Exception as error:      # handed to the caller, whatever it is
            outcome["error"] = error
    lookup = threading.Thread(target=look_up, name="cronpolicy-resolve", daemon=True)
    lookup.start()
    lookup.join(max(0.0, deadline - time.monotonic()))
    if lookup.is_alive():
        raise DeadlineExceeded("looking up %s took longer than the time allowed" % host)
    if "error" in outcome:
        raise DatabaseError("cannot look up %s: %s" % (host, outcome["error"]), transient=True)
    return list(dict.fromkeys(outcome["addresses"]))


def with_addresses(dsn, deadline):
    """``dsn`` with its host name resolved by ``deadline``: libpq looks names up
    synchronously even when it connects asynchronously.  The name stays in
    ``host`` (for TLS and .pgpass); ``hostaddr`` gets every address, so
    libpq still tries them in turn."""
    from psycopg2.extensions import make_dsn, parse_dsn
    params = parse_dsn(dsn)
    host = params.get("host")
    if (not host or "hostaddr" in params or host.startswith("/") or "," in host
            or _is_address(host)):
        return dsn
    addresses = _resolve_within(host, params.get("port") or 5432, deadline)
    params.update(host=",".join([host] * len(addresses)), hostaddr=",".join(addresses))
    return make_dsn(**params)


def connect_async(dsn, deadline, connect_timeout, application_name, source=None, network=None,
                  wake=None):
    """An asynchronous (always autocommit) connection, ready by ``deadline``
    (time.monotonic()) or DeadlineExceeded; the name lookup included.
    ``wake``: see ``wait``."""
    import psycopg2
    deadline = min(deadline, time.monotonic() + connect_timeout)
    try:
        resolved = with_addresses(dsn, deadline)
    except psycopg2.Error as error:
        raise connect_failure(error, dsn, source) from error
    while True:
        sent = options(connect_timeout, application_name, True, dsn, network)
        try:
            connection = psycopg2.connect(resolved, async_=True, **sent)
        except psycopg2.Error as error:
            raise connect_failure(error, dsn, source) from error
        try:
            wait(connection, deadline, "connect to %s" % config.mask_dsn(dsn), wake)
            return tolerate_far_times(connection)
        except DeadlineExceeded:
            connection.close()
            raise
        except psycopg2.Error as error:
            connection.close()
            if not _refused_options(error, dsn, sent):
                raise connect_failure(error, dsn, source) from error


def wait(connection, deadline, doing, wake=None):
    """Drive an asynchronous connection until its current operation is done.

    ``wake``: a descriptor that, once readable, ends the wait at once
    (DeadlineExceeded): a relay asked to stop does not first wait out a
    database that does not answer."""
    from psycopg2 import extensions
    woken = [] if wake is None else [wake]
    while True:
        state = connection.poll()
        if state == extensions.POLL_OK:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded("the database did not answer in time to %s" % doing)
        if state == extensions.POLL_READ:
            ready = select.select([connection.fileno()] + woken, [], [], remaining)[0]
        elif state == extensions.POLL_WRITE:
            ready = select.select(woken, [connection.fileno()], [], remaining)[0]
        else:
            raise DatabaseError("unexpected state %r from psycopg2 while trying to %s"
                                % (state, doing))
        if woken and wake in ready:
            raise DeadlineExceeded("stopped while waiting to %s" % doing)
