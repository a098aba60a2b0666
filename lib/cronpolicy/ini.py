"""INI text as configparser reads it, without configparser for plain files.

The plain files people write (sections, comments, one-line ``key = value``
entries) are read here directly: importing configparser (and re, which
it brings) costs a cron job's start more than its whole decision.  A
gated SQLite start that read its file with configparser (and named its
cache with zlib) took 50 ms of CPU against 39 ms (medians of 40, issue
29.3, 2026-12-06).  tests/test_fast_path.py checks this reader against
configparser.  Anything else (continuation lines, [DEFAULT], duplicates,
errors) goes to configparser itself.
"""

from cronpolicy.errors import ConfigError, first_line


def read_ini(text, path):
    """{section: {key: value}} of a config file's text, as configparser
    reads it with ``#`` comments allowed after values (after white space,
    as in the example of docs/operators.txt); ConfigError, naming ``path``,
    for what it refuses."""
    sections = _read_plain_ini(text)
    if sections is not None:
        return sections
    import configparser
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#",))
    try:
        parser.read_string(text, source=path)
    except configparser.Error as error:
        raise ConfigError("cannot read config file %s: %s" % (path, first_line(error))) \
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
