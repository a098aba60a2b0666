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
    catch_up_at_once = 4

``watch`` says how a running script hears of stop requests on PostgreSQL:
``listen`` (LISTEN/NOTIFY on a connection held while the script runs: within
milliseconds) or ``poll`` (re-read every ``poll_interval`` on a connection
opened for each read and closed again, using no session state).  Behind a
pooler in transaction mode (pgbouncer's ``pool_mode = transaction``) LISTEN is
lost, so set ``poll`` there; session pooling and direct connections keep
``listen``.  ``CRONPOLICY_WATCH`` overrides the file.  SQLite always polls.

DSNs are ``postgresql://user:pass@host:port/db`` (or libpq's ``key=value``
form) and ``sqlite:////absolute/path`` (a relative path is refused: cron's
working directory is not the operator's).
Passwords never leave this module unmasked: use ``mask_dsn`` and ``scrub``.
"""

import functools
import os

from cronpolicy import estimate, policy
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


def _on_database_error(text):
    value = text.strip().lower()
    if value not in ON_DATABASE_ERROR_CHOICES:
        raise ValueError("must be run or skip, not %r" % text)
    return value

POSTGRESQL = "postgresql"
SQLITE = "sqlite"



#: libpq's connection parameters that hold secrets.
SECRET_PARAMETERS = ("password", "sslpassword")


@functools.lru_cache(maxsize=None)
def _password_patterns():
    """(URI user:password@, a URI's ?secret=value, key=value secrets).
    Compiled on first use: the gate's start-up path never needs them."""
    import re
    names = "|".join(SECRET_PARAMETERS)
    return (re.compile(r"(://[^:/@\s]*:)([^@\s]*)(@)"),
            re.compile(r"([?&](?:%s)=)([^&#\s]*)" % names, re.IGNORECASE),
            re.compile(r"(\b(?:%s)\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)" % names, re.IGNORECASE))


#: The variables systemd sets from a unit's StateDirectory= and
#: RuntimeDirectory= (several directories are separated by ':'; the first
#: counts), and the settings they give when nothing else sets them.
SYSTEMD_DIRECTORIES = (("state_dir", "STATE_DIRECTORY"), ("lock_dir", "RUNTIME_DIRECTORY"))


def default_state_dir():
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "cronpolicy")


def default_dsn(state_dir=None):
    """The embedded SQLite file, in the state directory (state_dir,
    $CRONPOLICY_STATE_DIR, else the XDG default).  Versions before schema 11
    kept it in the XDG default whatever state_dir said: while only that file
    exists, it stays the database (a new empty one would drop every policy
    and a pending deploy without a word)."""
    path = os.path.join(state_dir or default_state_dir(), "cronpolicy.sqlite")
    earlier = os.path.join(default_state_dir(), "cronpolicy.sqlite")
    if path != earlier and not os.path.exists(path) and os.path.exists(earlier):
        path = earlier
    return "sqlite:///" + path


def backend_of(dsn):
    """POSTGRESQL or SQLITE, or ConfigError for anything else."""
    if dsn.startswith("sqlite:"):
        return SQLITE
    if dsn.startswith(("postgresql://", "postgres://")) or "=" in dsn:
        return POSTGRESQL
    raise ConfigError(
        "unrecognised DSN %r: expected postgresql://..., libpq key=value, or "
        "sqlite:///path" % mask_dsn(dsn))


def sqlite_path(dsn):
    """The file of a ``sqlite:///path`` DSN (four slashes for an absolute path)."""
    if not dsn.startswith("sqlite:///"):
        raise ConfigError("SQLite DSN %r must look like sqlite:///path/to/file" % dsn)
    path = dsn[len("sqlite:///"):].split("?", 1)[0]
    if not path:
        raise ConfigError("SQLite DSN %r names no file" % dsn)
    if not os.path.isabs(path):
        # Cron runs jobs in the user's home, the operator in any directory:
        # a relative file would be a different database for each.
        raise ConfigError("SQLite DSN %r names a relative path; give an absolute one, with "
                          "four slashes: sqlite:////var/lib/cronpolicy/cronpolicy.sqlite" % dsn)
    return path


def mask_dsn(dsn):
    """The DSN with every secret (password, sslpassword) replaced by ``***``."""
    if dsn is None:
        return None
    if "password" not in dsn.lower() and "@" not in dsn:
        return dsn
    uri_password, uri_query, key_value = _password_patterns()
    masked = uri_password.sub(r"\1***\3", dsn)
    if "://" in dsn:
        return uri_query.sub(r"\1***", masked)
    return key_value.sub(r"\1***", masked)


def dsn_secrets(dsn):
    """The secret values a DSN holds (passwords and key passphrases)."""
    if not dsn or ("password" not in dsn.lower() and "@" not in dsn):
        return []
    from urllib.parse import unquote
    uri_password, uri_query, key_value = _password_patterns()
    found = []
    match = uri_password.search(dsn)
    if match and match.group(2):
        found.append(unquote(match.group(2)))
    for match in (uri_query if "://" in dsn else key_value).finditer(dsn):
        value = match.group(2)
        if value.startswith("'"):
            value = value[1:-1].replace("\\'", "'")
        if value:
            found.extend({value, unquote(value)})
    return found


def scrub(message, dsn):
    """Remove the DSN's password from a message (driver errors can echo it)."""
    text = str(message)
    for secret in sorted(dsn_secrets(dsn), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


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
                 catch_up_at_once=DEFAULT_CATCH_UP_AT_ONCE, syslog=None):
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
        # input, exit 2: no database takes them.
        from cronpolicy.matching import text_problem
        problem = text_problem(self.host, "host")
        if problem:
            raise UsageError("%s (CRONPOLICY_HOST, or this machine's name)" % problem)
        if text_problem(self.dsn, "DSN"):      # (not shown: it may hold a password)
            raise UsageError("the DSN from %s is not UTF-8 text" % self.dsn_source)
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
            from_file = cls._read_file(config_path)
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

    @staticmethod
    def _check_file(path, sections):
        """Nobody but its owner (this user or root) may change a config file:
        it says which database to trust and where root writes files.  One
        holding a secret must be readable by its owner only."""
        import stat
        info = os.stat(path)
        mode = stat.S_IMODE(info.st_mode)
        if info.st_uid not in (os.geteuid(), 0):
            raise ConfigError("config file %s is owned by uid %d, neither this user nor root: "
                              "refusing it" % (path, info.st_uid))
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ConfigError("config file %s can be changed by other users (mode %03o): "
                              "refusing it; chmod go-w it" % (path, mode))
        if not dsn_secrets(sections["cronpolicy"].get("dsn", "")):
            return
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            raise ConfigError(
                "config file %s contains a password but other users can read it (mode %03o): "
                "chmod 600 it, or keep the password in ~/.pgpass" % (path, mode))

    @classmethod
    def _read_file(cls, path):
        try:
            with open(path, encoding="utf-8") as config_file:
                text = config_file.read()
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError("cannot read config file %s: %s" % (path, _first_line(error))) \
                from None
        sections = read_ini(text, path)
        if "cronpolicy" not in sections:
            raise ConfigError("config file %s has no [cronpolicy] section" % path)
        values = {}
        scripts = {}
        for section, items in sections.items():
            if section == "cronpolicy":
                continue
            if not section.startswith("script:") or not section[len("script:"):].strip():
                raise ConfigError("config file %s: unknown section [%s] (known: [cronpolicy], "
                                  "[script:NAME])" % (path, section))
            name = section[len("script:"):].strip()
            for key, raw in items.items():
                convert = cls._SCRIPT_KEYS.get(key)
                if convert is None:
                    raise ConfigError("config file %s: unknown key %r in [%s] (known: %s)"
                                      % (path, key, section, ", ".join(sorted(cls._SCRIPT_KEYS))))
                try:
                    scripts.setdefault(name, {})[key] = convert(raw)
                except ValueError as error:
                    raise ConfigError("config file %s: bad value for %s in [%s]: %s"
                                      % (path, key, section, error)) from None
        if scripts:
            values["scripts"] = scripts
        cls._check_file(path, sections)
        for key, raw in sections["cronpolicy"].items():
            convert = cls._KEYS.get(key)
            if convert is None:
                raise ConfigError("config file %s: unknown key %r (known: %s)"
                                  % (path, key, ", ".join(sorted(cls._KEYS))))
            try:
                values[key] = convert(raw.strip())
            except (ValueError, UsageError) as error:
                raise ConfigError("config file %s: bad value for %s: %s"
                                  % (path, key, str(error).splitlines()[0])) from None
        return values


def _crc32(data):
    """zlib.crc32, without loading zlib on the start path (a DSN is short)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def read_ini(text, path):
    """{section: {key: value}} of a config file's text, as configparser
    reads it (comments may follow values after a space, as in the example
    of docs/operators.txt).  The plain files people write are read here directly:
    configparser costs a cron job's start more than its whole decision.
    Anything else (continuation lines, [DEFAULT], duplicates, errors) goes
    to configparser itself."""
    sections = _read_plain_ini(text)
    if sections is not None:
        return sections
    import configparser
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#",))
    try:
        parser.read_string(text, source=path)
    except configparser.Error as error:
        raise ConfigError("cannot read config file %s: %s" % (path, _first_line(error))) \
            from None
    return {section: dict(parser.items(section)) for section in parser.sections()}


def _read_plain_ini(text):
    """read_ini for files of sections, comments and one-line key = value
    entries only; None for anything else."""
    sections, current = {}, None
    for line in text.split("\n"):
        cut = _inline_comment(line)
        stripped = line[:cut].strip()
        if not line.strip() or line.strip()[0] in "#;":
            continue
        if line[0].isspace() or not stripped:
            return None             # a continuation line, or worse
        if stripped[0] == "[":
            name = stripped[1:-1]
            if stripped[-1] != "]" or not name or "]" in name or name == "DEFAULT" \
                    or name in sections:
                return None
            current = sections[name] = {}
            continue
        delimiter = min((index for index in (stripped.find("="), stripped.find(":"))
                         if index >= 0), default=-1)
        key = stripped[:delimiter].strip().lower() if delimiter > 0 else ""
        if current is None or not key or key in current:
            return None
        current[key] = stripped[delimiter + 1:].strip()
    return sections


def _inline_comment(line):
    """Where a '#' comment starts in ``line`` (at its start or after white
    space, as configparser's inline_comment_prefixes finds it), else its end."""
    index = line.find("#")
    while index > 0 and not line[index - 1].isspace():
        index = line.find("#", index + 1)
    return index if index >= 0 else len(line)
