"""Which policy rows and windows apply to a script on a host, and in what order.

Patterns (policy ``name``/``host``, window ``script``/``host``) are globs:
``*`` matches any run of characters, ``?`` exactly one, everything else is
literal and case-sensitive.  Precedence among matching policy rows:

* an exact name (no wildcard) beats any name pattern;
* a name pattern with more literal characters beats one with fewer;
* then the same two rules for the host (so a host-specific row beats ``*``);
* on a full tie, a disabling row beats an enabling one, then the lower id.
"""


#: Script names (and name patterns) are 1 to 255 characters (a file name's
#: limit: `crontab wrap` names jobs after their programs), none of them a
#: control character: the same rule for a CronScript, `cronpolicy run` and
#: every command that takes a NAME, so what one accepts all accept.
MAX_NAME_LENGTH = 255


def text_problem(text, what):
    """Why ``text`` cannot be stored as text, or None: bytes that are not
    UTF-8 reach Python as lone surrogates (argv, the environment, a crontab
    read with surrogateescape), and no database takes them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "%s %r is not UTF-8 text" % (what, text)
    return None


def name_problem(name, what="script name"):
    """Why ``name`` is not a usable script name or pattern, or None."""
    if not name:
        return "%s must not be empty" % what
    problem = text_problem(name, what)
    if problem:
        return problem
    if len(name) > MAX_NAME_LENGTH:
        return "%s is %d characters long; at most %d" % (what, len(name), MAX_NAME_LENGTH)
    if any(ord(char) < 32 or 127 <= ord(char) < 160 for char in name):
        return "%s %r holds a control character" % (what, name)
    return None


def service_name_problem(service):
    """Why ``service`` is not a service name, or None: letters, digits, '_',
    '.' and '-', 1 to 200 of them (schema patch 0014 holds the rows to it)."""
    if not isinstance(service, str) or not service or len(service) > 200 or any(
            not (char.isascii() and (char.isalnum() or char in "_.-")) for char in service):
        return "not a service name (letters, digits, '_', '.', '-'): %r" % (service,)
    return None


#: What a list of services may hold in all, commas included (schema patch
#: 0014's service_list_ok: a rollout's services, a policy's needs).
MAX_SERVICES_LENGTH = 1000


def services_problem(services):
    """Why the services ``services`` (each a service name) cannot be one
    list, or None: past MAX_SERVICES_LENGTH characters, commas included."""
    length = len(",".join(services))
    if length > MAX_SERVICES_LENGTH:
        return ("%d services make a list of %d characters; at most %d (begin several "
                "rollouts)" % (len(services), length, MAX_SERVICES_LENGTH))
    return None


def is_pattern(text):
    """True when ``text`` contains a wildcard."""
    return "*" in text or "?" in text


def glob_matches(pattern, value):
    """Whether ``value`` matches the glob ``pattern`` (``*`` and ``?`` only).

    Matched by hand, not with a regular expression: importing ``re`` and
    compiling one costs a cron job's start more than all its matching."""
    if pattern == "*":
        return True             # the common case: every name, every host
    if not is_pattern(pattern):
        return pattern == value
    if pattern[-1] == "*" and "?" not in pattern and pattern.count("*") == 1:
        return value.startswith(pattern[:-1])       # the next most common: "publish-*"
    # The classic wildcard walk: on a mismatch, let the last * take one
    # more character; linear in practice, quadratic at worst.
    p = v = 0
    star, star_v = -1, 0
    while v < len(value):
        if p < len(pattern) and (pattern[p] == "?" or pattern[p] == value[v]) \
                and pattern[p] != "*":
            p += 1
            v += 1
        elif p < len(pattern) and pattern[p] == "*":
            star, star_v = p, v
            p += 1
        elif star >= 0:
            star_v += 1
            p, v = star + 1, star_v
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


def pattern_specificity(pattern):
    """Sort key: higher is more specific.  Exact beats any pattern."""
    return (not is_pattern(pattern), len(pattern) - pattern.count("*") - pattern.count("?"))


def precedence(row):
    """Sort key of a policy row: higher wins."""
    return (pattern_specificity(row.name), pattern_specificity(row.host),
            not row.enabled, -row.id)


def matching_policies(rows, name, host):
    """The rows that apply to ``name`` on ``host``, most specific first."""
    if not rows:
        return []
    if isinstance(rows, IndexedRows):
        return rows.matching(name, host)
    return _matching(rows, name, host)


def _matching(rows, name, host):
    matching = [row for row in rows
                if glob_matches(row.name, name) and glob_matches(row.host, host)]
    matching.sort(key=precedence, reverse=True)
    return matching


class IndexedRows(list):
    """Policy rows (a list, read-only) that know which could match a script
    on a host without a look at every row: those of its exact name and
    host, those of its name and a host pattern, and the name patterns.  The
    tooling reads a fleet's rows once as one and asks about thousands of
    scripts (a cron job's start asks once, and reads a plain list)."""

    def __init__(self, rows=()):
        super().__init__(rows)
        self._exact, self._by_name, self._patterns = {}, {}, []
        for row in self:
            if is_pattern(row.name):
                self._patterns.append(row)
            elif is_pattern(row.host):
                self._by_name.setdefault(row.name, []).append(row)
            else:
                self._exact.setdefault((row.name, row.host), []).append(row)
        # Each list in precedence order once: the exact host's rows beat
        # the host patterns' (of the same exact name), which beat every
        # name pattern's, so a script's rows are these three lists'
        # matching rows in turn, with no sort per script.
        for found in [self._patterns] + list(self._exact.values()) + list(self._by_name.values()):
            found.sort(key=precedence, reverse=True)
        self._matched = {}

    def matching(self, name, host):
        """matching_policies(self, name, host), worked out once per script
        and host (a planner asks it of each job several times); a new list
        each time, so a caller may change it."""
        found = self._matched.get((name, host))
        if found is None:
            found = self._exact.get((name, host), []) + [
                row for row in self._by_name.get(name, ()) if glob_matches(row.host, host)] + [
                row for row in self._patterns
                if glob_matches(row.name, name) and glob_matches(row.host, host)]
            self._matched[name, host] = found
        return list(found)

    def candidates(self, name, host):
        """The rows that could match ``name`` on ``host`` (matching_policies
        orders them by precedence, which leaves no tie)."""
        return self._exact.get((name, host), []) + self._by_name.get(name, []) + \
            self._patterns

    def _read_only(self, *args, **kwargs):
        raise TypeError("IndexedRows are read-only (the index would not follow): make new ones")

    append = extend = insert = remove = pop = clear = sort = reverse = _read_only
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only

    def __reduce__(self):
        return IndexedRows, (list(self),)


def first_setting(matching, field):
    """(value, row id) of ``field`` in the most specific row that sets it
    (not NULL), else (None, None)."""
    for row in matching:
        value = getattr(row, field)
        if value is not None:
            return value, row.id
    return None, None


def window_covers(window, name, host, needs=()):
    """Whether ``window`` covers ``name`` on ``host``: its patterns match,
    and, for the window of one service, the script ``needs`` it."""
    return glob_matches(window.script, name) and glob_matches(window.host, host) and (
        getattr(window, "service", None) is None or window.service in needs)


def covering_windows(windows, name, host, now, needs=()):
    """Windows not yet over that cover ``name`` on ``host``, earliest first."""
    if not windows:
        return []
    if len(windows) == 1:       # (planners ask with one window, hundreds of thousands of times)
        window = windows[0]
        return [window] if window.ends_at > now and window_covers(window, name, host, needs) \
            else []
    return sorted((window for window in windows
                   if window.ends_at > now and window_covers(window, name, host, needs)),
                  key=lambda window: (window.starts_at, window.id))


def parse_needs(text):
    """The services of a needs list ("xmlrpc,librarian"), as a tuple."""
    if not text:
        return ()
    return tuple(part.strip() for part in str(text).split(",") if part.strip())
