"""Where the policy database is, and the knobs of the gate.

The DSN is taken from, in order: ``--dsn``; the ``CRONPOLICY_DSN``
environment variable; the ``dsn`` key of the config file (``CRONPOLICY_CONFIG``
or ``/etc/cronpolicy.conf``); else the embedded SQLite database in the user's
state directory (``$XDG_STATE_HOME/cronpolicy/cronpolicy.sqlite``, by default
``~/.local/state/cronpolicy/cronpolicy.sqlite``).

The config file is INI with one ``[cronpolicy]`` section::

    [cronpolicy]
    dsn = postgresql://cron@db.example.com/cronpolicy
    connect_timeout = 5s
    cutoff_margin = 2m
    estimate_quantile = 0.95
    estimate_runs = 20
    estimate_min_runs = 3
    default_runtime = 30m
    lock_dir = /run/lock/cronpolicy
    host = web3
    heartbeat_interval = 5s
    lease_ttl = 30s
    poll_interval = 1s
    watch = listen
    relay = relay1.example.com:7447
    catch_up_at_once = 4

``watch`` says how a running script hears of stop requests on PostgreSQL:
``listen`` (LISTEN/NOTIFY on a connection held while the script runs: within
milliseconds) or ``poll`` (re-read every ``poll_interval`` on a connection
opened for each read and closed again, using no session state).  Behind a
pooler in transaction mode (pgbouncer's ``pool_mode = transaction``) LISTEN is
lost, so set ``poll`` there; session pooling and direct connections keep
``listen``.  ``CRONPOLICY_WATCH`` overrides the file.  SQLite always polls.

``relay`` (HOST:PORT of a ``cronpolicy relay``; ``CRONPOLICY_RELAY``
overrides the file, and an empty one turns it off) has a running script
watch through the relay, which holds one database connection for many
scripts, instead of on a connection of its own: see cronpolicy.relayed.
Only PostgreSQL databases have relays; with SQLite the key is unused.

What a DSN may look like, and how its secrets are kept out of sight, is
``cronpolicy.dsns``; how the file is read, ``cronpolicy.config_file``.
"""

import os

from cronpolicy import estimate, policy
# The DSN's names, also importable from here as they always were.
from cronpolicy.dsns import (  # noqa: F401
    POSTGRESQL, SECRET_PARAMETERS, SQLITE, backend_of, default_dsn, default_state_dir,
    dsn_secrets, mask_dsn, scrub, sqlite_path)
from cronpolicy.errors import ConfigError, UsageError
from cronpolicy.timeutil import parse_duration

DEFAULT_CONFIG_PATH = "/etc/cronpolicy.conf"
DEFAULT_CONNECT_TIMEOUT = 5.0
#: A running script renews its run's lease this often...
DEFAULT_HEARTBEAT_INTERVAL = 5.0
#: ...for this long: a run not heard from for longer is abandoned.
DEFAULT_LEASE_TTL = 30.0
#: SQLite has no notifications: running scripts re-read the policy this often.
DEFAULT_POLL_INTERVAL = 1.0
#: A start's decision (retries included) never takes longer than this.
DEFAULT_DECISION_TIMEOUT = 10.0
#: A policy cached locally is trusted this long while the database is unreachable.
DEFAULT_CACHE_MAX_AGE = 3600.0
#: A rollout begun without --expect is overdue once open this long.
DEFAULT_ROLLOUT_EXPECT = 3600.0
#: An idle connection is probed after this long (and then every third of it,
#: three times), so a dead peer is noticed within about twice this.
DEFAULT_TCP_KEEPALIVE = 5.0
#: `cronpolicy catch-up` starts at most this many runs at once (per host and
#: state directory): 60 tickets made 60 processes and connections at once.
DEFAULT_CATCH_UP_AT_ONCE = 4
#: Data unacknowledged this long fails the connection: a half-open one (packets
#: dropped, no FIN) is given up on within seconds, not after TCP's two hours.
DEFAULT_TCP_USER_TIMEOUT = 10.0

ON_DATABASE_ERROR_CHOICES = ("run", "skip")
#: How a running script hears of stop requests (see the module docstring).
WATCH_LISTEN, WATCH_POLL = "listen", "poll"
WATCH_CHOICES = (WATCH_LISTEN, WATCH_POLL)


def _watch(text):
    value = text.strip().lower()
    if value not in WATCH_CHOICES:
        raise ValueError("must be one of %s, not %r" % (" or ".join(WATCH_CHOICES), text))
    return value


def _relay(text):
    """HOST:PORT, checked (None: no relay)."""
    value = text.strip()
    if not value:
        return None
    from cronpolicy.relayed import parse_address
    parse_address(value)
    return value


def _on_database_error(text):
    value = text.strip().lower()
    if value not in ON_DATABASE_ERROR_CHOICES:
        raise ValueError("must be run or skip, not %r" % text)
    return value


#: The variables systemd sets from a unit's StateDirectory= and
#: RuntimeDirectory= (several directories are separated by ':'; the first
#: counts), and the settings they give when nothing else sets them.
SYSTEMD_DIRECTORIES = (("state_dir", "STATE_DIRECTORY"), ("lock_dir", "RUNTIME_DIRECTORY"))


class Settings:
    """The resolved configuration of one process."""

    _KEYS = {
        "dsn": str,
        "host": str,
        "lock_dir": str,
        "connect_timeout": parse_duration,
        "cutoff_margin": parse_duration,
        "default_runtime": parse_duration,
        "estimate_quantile": float,
        "estimate_runs": int,
        "estimate_min_runs": int,
        "heartbeat_interval": parse_duration,
        "lease_ttl": parse_duration,
        "dead_after": parse_duration,       # lease_ttl's name before leases
        "poll_interval": parse_duration,
        "decision_timeout": parse_duration,
        "cache_max_age": parse_duration,
        "default_rollout_expect": parse_duration,
        "on_database_error": _on_database_error,
        "state_dir": str,
        "tcp_keepalive": parse_duration,
        "tcp_user_timeout": parse_duration,
        "watch": _watch,
        "catch_up_at_once": int,
        "syslog": str,
        "relay": _relay,
    }
    #: Keys a ``[script:NAME]`` section may set, for that script only.
    _SCRIPT_KEYS = {"on_database_error": _on_database_error}

    def __init__(self, dsn=None, dsn_source="default", host=None, lock_dir=None,
                 connect_timeout=DEFAULT_CONNECT_TIMEOUT,
                 cutoff_margin=policy.DEFAULT_MARGIN,
                 default_runtime=estimate.DEFAULT_RUNTIME,
                 estimate_quantile=estimate.DEFAULT_QUANTILE,
                 estimate_runs=estimate.DEFAULT_HISTORY_RUNS,
                 estimate_min_runs=estimate.DEFAULT_MIN_HISTORY_RUNS,
                 heartbeat_interval=DEFAULT_HEARTBEAT_INTERVAL,
                 lease_ttl=None, dead_after=None,
                 poll_interval=DEFAULT_POLL_INTERVAL,
                 decision_timeout=DEFAULT_DECISION_TIMEOUT,
                 cache_max_age=DEFAULT_CACHE_MAX_AGE,
                 on_database_error=None, state_dir=None, scripts=None,
                 config_path=None, tcp_keepalive=DEFAULT_TCP_KEEPALIVE,
                 tcp_user_timeout=DEFAULT_TCP_USER_TIMEOUT, watch=WATCH_LISTEN,
                 default_rollout_expect=DEFAULT_ROLLOUT_EXPECT,
                 catch_up_at_once=DEFAULT_CATCH_UP_AT_ONCE, syslog=None, relay=None):
        self.state_dir = state_dir or default_state_dir()
        self.dsn = dsn or default_dsn(self.state_dir)
        self.dsn_source = dsn_source if dsn else "default"
        self.host = host or os.uname().nodename
        self.lock_dir = lock_dir or os.path.join(self.state_dir, "locks")
        self.connect_timeout = connect_timeout
        self.cutoff_margin = cutoff_margin
        self.default_runtime = default_runtime
        self.estimate_quantile = estimate_quantile
        self.estimate_runs = estimate_runs
        self.estimate_min_runs = estimate_min_runs
        self.heartbeat_interval = heartbeat_interval
        # dead_after is lease_ttl's old name; lease_ttl wins when both are set.
        self.lease_ttl = lease_ttl or dead_after or DEFAULT_LEASE_TTL
        self.poll_interval = poll_interval
        self.decision_timeout = decision_timeout
        self.cache_max_age = cache_max_age
        self.on_database_error = on_database_error
        self.scripts = scripts or {}
        self.config_path = config_path
        self.tcp_keepalive = tcp_keepalive
        self.tcp_user_timeout = tcp_user_timeout
        self.watch = watch
        self.default_rollout_expect = default_rollout_expect
        self.catch_up_at_once = catch_up_at_once
        #: The local syslog socket scripts log to (None: as the options say).
        self.syslog = syslog or None
        #: HOST:PORT of the relay running scripts watch through (None: none).
        self.relay = relay or None
        self.validate()

    def validate(self):
        if not 0 < self.estimate_quantile <= 1:
            raise ConfigError("estimate_quantile must be in (0, 1], got %r" % self.estimate_quantile)
        if self.estimate_runs < 1:
            raise ConfigError("estimate_runs must be at least 1, got %r" % self.estimate_runs)
        if self.estimate_min_runs < 1:
            raise ConfigError("estimate_min_runs must be at least 1, got %r" % self.estimate_min_runs)
        for key in ("connect_timeout", "heartbeat_interval", "poll_interval",
                    "decision_timeout", "tcp_keepalive", "tcp_user_timeout",
                    "default_rollout_expect"):
            if getattr(self, key) <= 0:
                raise ConfigError("%s must be positive" % key)
        if self.syslog is not None and not os.path.isabs(self.syslog):
            raise ConfigError("syslog must be the absolute path of a socket, such as /dev/log, "
                              "got %r" % self.syslog)
        if not 1 <= self.catch_up_at_once <= 1000:
            raise ConfigError("catch_up_at_once must be from 1 to 1000, got %r"
                              % self.catch_up_at_once)
        if self.lease_ttl <= 2 * self.heartbeat_interval:
            raise ConfigError("lease_ttl (%gs) must be more than twice heartbeat_interval (%gs)"
                              % (self.lease_ttl, self.heartbeat_interval))
        # Bytes that are not UTF-8 (from the environment or --dsn) are bad
        # input, exit 2: no database takes them.  A host name is held to
        # what a script name is (255 characters, no control character):
        # PostgreSQL refused the records of a host of 3,000 (too long for
        # the index of run_tally), which was taken for an outage.
        from cronpolicy.matching import name_problem, text_problem
        problem = name_problem(self.host, "host")
        if problem:
            raise UsageError("%s (CRONPOLICY_HOST, or this machine's name)" % problem)
        if text_problem(self.dsn, "DSN"):      # (not shown: it may hold a password)
            raise UsageError("the DSN from %s is not UTF-8 text" % self.dsn_source)
        if self.relay is not None:
            try:
                _relay(self.relay)
            except ValueError as error:
                raise ConfigError("relay must be %s" % error) from None
        if self.watch not in WATCH_CHOICES:
            raise ConfigError("watch must be one of %s, not %r" % (" or ".join(WATCH_CHOICES),
                                                                   self.watch))
        self.backend = backend_of(self.dsn)
        if self.backend == SQLITE:
            sqlite_path(self.dsn)

    @property
    def masked_dsn(self):
        return mask_dsn(self.dsn)

    @property
    def network(self):
        """What pgdriver needs to notice a dead connection: (keepalive, user timeout)."""
        return self.tcp_keepalive, self.tcp_user_timeout

    @property
    def spool_dir(self):
        """Run records waiting for the database (see cronpolicy.spool)."""
        return os.path.join(self.state_dir, "spool")

    @property
    def cache_path(self):
        """The last policy fetched from this database (see cronpolicy.cache)."""
        return os.path.join(self.state_dir, "policy-cache-%08x.json"
                            % _crc32(self.dsn.encode("utf-8")))

    def on_database_error_for(self, name, declared="skip"):
        """run or skip, when the database cannot be reached and no cached
        policy is fresh enough: a ``[script:NAME]`` section, else the
        script's own declaration, else the ``[cronpolicy]`` default."""
        specific = self.scripts.get(name, {}).get("on_database_error")
        if specific:
            return specific
        if declared:
            return declared
        return self.on_database_error or "skip"

    @classmethod
    def load(cls, dsn=None, environ=None):
        """Resolve settings from ``--dsn`` (``dsn``), the environment and the config file."""
        environ = os.environ if environ is None else environ
        values = {}
        from_file = {}
        config_path = environ.get("CRONPOLICY_CONFIG")
        if config_path:
            if not os.path.exists(config_path):
                raise ConfigError("config file %s (from CRONPOLICY_CONFIG) does not exist" % config_path)
        elif os.path.exists(DEFAULT_CONFIG_PATH):
            config_path = DEFAULT_CONFIG_PATH
        if config_path:
            from cronpolicy.config_file import read_config_file
            from_file = read_config_file(config_path, cls._KEYS, cls._SCRIPT_KEYS)
            values.update(from_file)
        # A systemd unit's StateDirectory= and RuntimeDirectory= (its user
        # may have no home for the default): they stand in for the defaults
        # only, so that a unit and a cron job on one host share what the
        # config file names (a lock, above all).
        for key, variable in SYSTEMD_DIRECTORIES:
            if environ.get(variable) and key not in from_file:
                values[key] = environ[variable].split(":")[0]
        for key, variable in (("host", "CRONPOLICY_HOST"), ("lock_dir", "CRONPOLICY_LOCK_DIR"),
                              ("state_dir", "CRONPOLICY_STATE_DIR")):
            if environ.get(variable):
                values[key] = environ[variable]
        if environ.get("CRONPOLICY_WATCH"):
            try:
                values["watch"] = _watch(environ["CRONPOLICY_WATCH"])
            except ValueError as error:
                raise ConfigError("CRONPOLICY_WATCH %s" % error) from None
        if "CRONPOLICY_RELAY" in environ:
            try:
                values["relay"] = _relay(environ["CRONPOLICY_RELAY"])
            except ValueError as error:
                raise ConfigError("CRONPOLICY_RELAY must be %s" % error) from None
        # Later sources win.  A DSN that is set but empty is a mistake (an
        # unset variable in a deploy script, say), never a way back to the
        # local SQLite file: that would take the host out of the fleet's policy.
        for source, given in (("config file %s" % config_path, from_file.get("dsn")),
                              ("CRONPOLICY_DSN", environ.get("CRONPOLICY_DSN")),
                              ("--dsn", dsn)):
            if given is None:
                continue
            if not given.strip():
                raise ConfigError("the DSN from %s is empty: name the policy database, or "
                                  "set no DSN anywhere for the embedded SQLite default" % source)
            values["dsn"], values["dsn_source"] = given.strip(), source
        try:
            return cls(config_path=config_path, **values)
        except ConfigError as error:
            # Name the file when one of its values is the culprit.
            if any(key in str(error).lower() and values.get(key) == from_file[key]
                   for key in from_file):
                raise ConfigError("%s (config file %s)" % (error, config_path)) from None
            raise


def _crc32(data):
    """zlib.crc32 (test_fast_path checks it gives the same), without loading
    zlib: no start path loads it otherwise (psycopg2 does not either), and
    importing it costs a start about 0.4 ms, this loop under 0.1 ms for a
    DSN (issue 29.3, measured on 2026-12-06)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 & -(crc & 1))
    return crc ^ 0xFFFFFFFF
