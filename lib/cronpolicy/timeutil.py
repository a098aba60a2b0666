"""Durations and times as people type them, and as the databases store them.

Durations are written the same way everywhere (options, config file, output):
a number and a unit, ``45s``, ``20m``, ``2h``, ``90d``, or several of them,
``1h30m``.  Times are ISO 8601; a time without a UTC offset is taken as UTC
(rollout tooling on hosts in different zones must agree), and ``now``,
``+10m`` or ``now+10m`` are relative to the *database* clock, which the caller
supplies.
"""

import datetime
import time

from cronpolicy.errors import UsageError

UTC = datetime.timezone.utc

# CLOCK_BOOTTIME (Linux) also counts the time the machine was suspended.
_STEADY = getattr(time, "CLOCK_BOOTTIME", None)

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: No duration is longer than this (100 years): longer ones are typing
#: mistakes, and would overflow date arithmetic.
MAX_DURATION = 100 * 365.25 * 86400   # rows.MAX_SECONDS: interval '100 years'
# A pattern as a string: re compiles (and caches) it on first use, which keeps
# it off a cron job's start-up path.
_RELATIVE_TIME = r"^(?:now)?\s*(?:([+-])\s*(\S+))?$"

# SQLite keeps timestamps as text in this shape (strftime('%Y-%m-%d %H:%M:%f')).
SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def steady():
    """Seconds on a clock that no step of the wall clock moves (an NTP
    correction, an operator's `date -s`): the time elapsed between two of
    its readings in one boot is the time that passed.  CLOCK_BOOTTIME where
    there is one, else time.monotonic()."""
    return time.clock_gettime(_STEADY) if _STEADY is not None else time.monotonic()


def parse_duration(text):
    """Return the number of seconds in a duration such as ``20m`` or ``1h30m``."""
    cleaned = str(text).strip().lower()
    if not cleaned:
        raise UsageError("empty duration: write it like 45s, 20m, 2h or 90d")
    total = 0.0
    for number, unit in _duration_parts(cleaned, text):
        total += float(number) * _UNIT_SECONDS[unit]
    if not total <= MAX_DURATION:       # also catches inf and nan
        raise UsageError("duration %r is longer than 100 years" % (text,))
    return total


def positive_duration(text, option):
    """``text`` as a duration above zero, in seconds; UsageError naming
    ``option`` (the command-line option it came from) otherwise."""
    try:
        seconds = parse_duration(text)
    except (UsageError, ValueError) as error:
        raise UsageError("%s: %s" % (option, error)) from None
    if seconds <= 0:
        raise UsageError("%s must be longer than 0" % option)
    if seconds < 0.000001:      # PostgreSQL keeps microseconds: less is 0 there
        raise UsageError("%s must be at least a microsecond (1e-06s)" % option)
    return seconds


def _duration_parts(cleaned, text):
    """[(number, unit)] of ``cleaned``: one or more NUMBER[.DIGITS]UNIT, nothing
    between (read by hand: a config file's durations are on the start path)."""
    parts, position = [], 0
    while position < len(cleaned):
        start = position
        while position < len(cleaned) and "0" <= cleaned[position] <= "9":
            position += 1
        digits = position > start
        if digits and cleaned[position:position + 1] == ".":
            fraction = position + 1
            while fraction < len(cleaned) and "0" <= cleaned[fraction] <= "9":
                fraction += 1
            if fraction > position + 1:
                position = fraction
        unit = cleaned[position:position + 1]
        if not digits or unit not in _UNIT_SECONDS:
            raise UsageError(
                "cannot parse duration %r: write it like 45s, 20m, 2h or 90d" % (text,))
        parts.append((cleaned[start:position], unit))
        position += 1
    return parts


def format_duration(seconds):
    """Render seconds the way parse_duration reads them: ``20m``, ``1h5m``, ``2.5s``."""
    if seconds is None:
        return "-"
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 60:
        if float(seconds).is_integer():
            return "%ds" % seconds
        return ("%.1fs" % seconds) if seconds >= 10 else ("%.2fs" % seconds)
    remaining = int(round(seconds))
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if remaining >= size:
            parts.append("%d%s" % (remaining // size, unit))
            remaining %= size
    return "".join(parts)


def parse_time(text, now):
    """Parse an ISO 8601 time, or ``now``/``+D``/``now+D``/``now-D``, into aware UTC.

    ``now`` must be the database clock's current time (aware).
    """
    cleaned = str(text).strip()
    import re
    relative = re.match(_RELATIVE_TIME, cleaned.lower())
    if cleaned and relative and (cleaned.lower().startswith("now") or relative.group(1)):
        sign, amount = relative.groups()
        if not sign:
            return now.astimezone(UTC)
        delta = datetime.timedelta(seconds=parse_duration(amount))
        try:
            return (now + delta if sign == "+" else now - delta).astimezone(UTC)
        except OverflowError:
            raise UsageError("time %r is out of range" % (text,)) from None
    candidate = cleaned
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"
    try:
        parsed = datetime.datetime.fromisoformat(candidate)
    except ValueError:
        raise UsageError(
            "cannot parse time %r: use ISO 8601 such as 2026-11-28T02:00Z, "
            "or now, +10m, now+2h" % (text,)) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):     # 0001-01-01T00:00+01:00, say
        raise UsageError("time %r is out of range" % (text,)) from None


def format_time(moment):
    """Render an aware time in UTC for people: ``2026-11-28 02:00:00Z``."""
    if moment is None:
        return "-"
    found = _formatted.get(moment)
    if found is None:
        if len(_formatted) > 1000:
            _formatted.clear()
        found = _formatted[moment] = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return found


#: format_time's answers: skip reasons name the same window's times over and
#: over (a planner asks thousands of starts of one rollout).
_formatted = {}


def to_sqlite(moment):
    """The text SQLite stores for an aware time (UTC, milliseconds)."""
    return moment.astimezone(UTC).strftime(SQLITE_FORMAT)[:-3]
