"""Reading the config file: who may have written it, its sections and
keys, each value converted (``cronpolicy.config`` says which keys there
are and what each holds; ``cronpolicy.ini`` reads the text)."""

import os

from cronpolicy.dsns import dsn_secrets
from cronpolicy.errors import ConfigError, UsageError, first_line

SCRIPT_SECTION = "script:"

#: The most a config file may hold (characters): a few keys and sections.
SIZE_LIMIT = 1 << 20


def read_config_file(path, keys, script_keys):
    """{setting: value} of the config file at ``path``, its ``[script:NAME]``
    sections under "scripts"; ``keys`` and ``script_keys``: {key: convert}
    of ``[cronpolicy]`` and of the script sections.  ConfigError, naming
    the file, for anything unreadable, unknown or unsafe."""
    from cronpolicy.errors import NotAPlainFile
    from cronpolicy.ini import read_ini
    from cronpolicy.safety import open_plain_file
    try:
        # A plain file only (a link to one is fine): a FIFO there made every
        # start wait forever, a device (/dev/zero) read without end.  Its
        # owner and mode are checked on what was read, not on the name
        # again (which could meanwhile name another file).
        with open(open_plain_file(path, follow_links=True), encoding="utf-8") as config_file:
            info = os.fstat(config_file.fileno())
            text = config_file.read(SIZE_LIMIT + 1)
    except NotAPlainFile as error:
        raise ConfigError("cannot read config file %s: %s" % (path, error.strerror)) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError("cannot read config file %s: %s" % (path, first_line(error))) \
            from None
    if len(text) > SIZE_LIMIT:
        raise ConfigError("config file %s is larger than any config file (%d characters): "
                          "refusing it" % (path, SIZE_LIMIT))
    sections = read_ini(text, path)
    if "cronpolicy" not in sections:
        raise ConfigError("config file %s has no [cronpolicy] section" % path)
    values = {}
    scripts = _script_sections(path, sections, script_keys)
    if scripts:
        values["scripts"] = scripts
    check_config_file(path, sections, info)
    for key, raw in sections["cronpolicy"].items():
        convert = keys.get(key)
        if convert is None:
            raise ConfigError("config file %s: unknown key %r (known: %s)"
                              % (path, key, ", ".join(sorted(keys))))
        try:
            values[key] = convert(raw.strip())
        except (ValueError, UsageError) as error:
            raise ConfigError("config file %s: bad value for %s: %s"
                              % (path, key, str(error).splitlines()[0])) from None
    return values


def _script_sections(path, sections, script_keys):
    """{script name: {key: value}} of the ``[script:NAME]`` sections."""
    scripts = {}
    for section, items in sections.items():
        if section == "cronpolicy":
            continue
        name = section[len(SCRIPT_SECTION):].strip()
        if not section.startswith(SCRIPT_SECTION) or not name:
            raise ConfigError("config file %s: unknown section [%s] (known: [cronpolicy], "
                              "[script:NAME])" % (path, section))
        for key, raw in items.items():
            convert = script_keys.get(key)
            if convert is None:
                raise ConfigError("config file %s: unknown key %r in [%s] (known: %s)"
                                  % (path, key, section, ", ".join(sorted(script_keys))))
            try:
                scripts.setdefault(name, {})[key] = convert(raw)
            except ValueError as error:
                raise ConfigError("config file %s: bad value for %s in [%s]: %s"
                                  % (path, key, section, error)) from None
    return scripts


def check_config_file(path, sections, info):
    """Nobody but its owner (this user or root) may change a config file:
    it says which database to trust and where root writes files.  One
    holding a secret must be readable by its owner only.  ``info``: the
    fstat() of the file that was read."""
    import stat
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
