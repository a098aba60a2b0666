"""DSNs: which backend one names, where the embedded SQLite file is, and
the secrets a DSN holds, masked before anything shows it.

DSNs are ``postgresql://user:pass@host:port/db`` (or libpq's ``key=value``
form) and ``sqlite:////absolute/path`` (a relative path is refused: cron's
working directory is not the operator's).
Passwords never leave this module unmasked: use ``mask_dsn`` and ``scrub``.
"""

import functools
import os

from cronpolicy.errors import ConfigError

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
