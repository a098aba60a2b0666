"""When a job will run: cron expressions, read and iterated by cronsim.

A schedule is a cron expression of five fields (minute, hour, day of month,
month, day of week, as Debian's cron reads them) or one of the keywords
@hourly, @daily (@midnight), @weekly, @monthly and @yearly (@annually), in
a time zone (CRON_TZ semantics: an IANA name such as Europe/London; None
is UTC, the database's clock).  cronsim parses and iterates them, with
Debian cron's behaviour at daylight saving changes (a start in the hour
that is skipped runs when it ends; one in the hour that repeats runs once).
What cronsim reads beyond Debian's cron (a seconds field, L, W and #) is
refused: cron would not run such a line.

Where a schedule comes from, most authoritative first (``resolve``): a
policy row's ``schedule`` (a DBA's), the schedule registered for the host
from its crontab (`cronpolicy schedule import`, `crontab wrap --register`),
then what the script declared (``CronScript.schedule``, recorded with each
run).  Everything here is pure: times in, times out, aware UTC datetimes.
"""

import datetime

from cronpolicy.errors import UsageError
# (at the top: resolve asks it for each of a fleet's thousands of scripts)
from cronpolicy.matching import IndexedRows, matching_policies

UTC = datetime.timezone.utc

#: The keywords cron knows for whole schedules, as five fields.
KEYWORDS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

#: A schedule expression longer than this is refused (cron's own line limit
#: is about a thousand bytes; no real schedule comes near this).
MAX_LENGTH = 200

#: A window holding more starts than this is refused, not cut short (a
#: schedule that matches every minute has 1440 starts a day: two years).
MAX_STARTS = 1000000

#: The blanks cron splits fields on (not every Unicode space: cron reads bytes).
_BLANKS = " \t"

#: Where a schedule came from (``Schedule.source``).
FROM_POLICY = "policy"
FROM_CRONTAB = "crontab"
FROM_SCRIPT = "script"


class ScheduleError(UsageError):
    """An expression or time zone that is not a schedule."""


def schedule_problem(expression, tz=None):
    """Why ``expression`` (in time zone ``tz``) is not a schedule, or None."""
    try:
        Schedule(expression, tz)
    except ScheduleError as error:
        return str(error)
    return None


def _zone(tz):
    if tz in (None, "", "UTC", "Etc/UTC"):
        return UTC
    # An IANA name: letters first, then letters, digits, _ + - in parts
    # joined by '/'; not the leap-second (right/) or POSIX (posix/) copies,
    # which PostgreSQL does not know.
    if not isinstance(tz, str) or len(tz) > 64 or not _IANA_NAME(tz) or \
            tz.startswith(("right/", "posix/")):
        raise ScheduleError("unknown time zone %r (an IANA name such as Europe/London)"
                            % (tz,))
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    # PostgreSQL reads zone names whatever their case (europe/london).
    for name in available_timezones():
        if name.lower() == tz.lower():
            return ZoneInfo(name)
    raise ScheduleError("unknown time zone %r (an IANA name such as Europe/London)" % (tz,))


def _IANA_NAME(name):
    parts = name.split("/")
    return all(part and part[0].isascii() and part[0].isalpha() and all(
        char.isascii() and (char.isalnum() or char in "_+-") for char in part)
        for part in parts)


def _fields(expression):
    """The five fields of ``expression`` (keywords expanded), or ScheduleError."""
    if not isinstance(expression, str) or not expression.strip(_BLANKS):
        raise ScheduleError("a schedule must not be empty")
    if len(expression) > MAX_LENGTH:
        raise ScheduleError("schedule is %d characters long; at most %d"
                            % (len(expression), MAX_LENGTH))
    if not all(" " <= char <= "~" or char == "\t" for char in expression):
        raise ScheduleError("schedule %.60r holds a character cron does not read there "
                            "(printable ASCII only)" % (expression,))
    text = expression.strip(_BLANKS)
    if text.startswith("@"):
        if text.lower() == "@reboot":
            raise ScheduleError("@reboot is not a schedule (it runs once, at boot)")
        if text.lower() not in KEYWORDS:
            raise ScheduleError("unknown keyword %r (one of %s)"
                                % (text, ", ".join(sorted(KEYWORDS))))
        return KEYWORDS[text.lower()].split()
    fields = [field for field in text.replace("\t", " ").split(" ") if field]
    if len(fields) != 5:
        raise ScheduleError("schedule %r has %d fields; a cron schedule has five "
                            "(minute hour day-of-month month day-of-week)" % (text, len(fields)))
    for index, field in enumerate(fields):
        upper = field.upper()
        # cronsim's extensions, which Debian's cron does not know.
        if "#" in field or (index == 2 and ("L" in upper or "W" in upper)) or (
                index == 4 and any(ch.isdigit() for ch in upper) and upper.endswith("L")):
            raise ScheduleError("schedule %r uses %r, which cron does not read"
                                % (text, field))
    return fields


#: Expressions already read, (expression, tz) -> (fields, zone): a fleet's
#: thousands of schedules are a few hundred expressions, and reading one
#: (cronsim's check included) costs more than all else a command does with it.
_READ = {}
#: First starts after a moment already worked out, ((fields, tz), moment) -> start.
_NEXT = {}
#: Either memo is emptied past this many entries.
_MEMO_LIMIT = 20000


def _cronsim():
    """cronsim's CronSim and CronSimError, imported on first use (a cron
    job's start that declares no schedule never needs them)."""
    global _CRONSIM
    if _CRONSIM is None:
        from cronsim import CronSim, CronSimError
        _CRONSIM = CronSim, CronSimError
    return _CRONSIM


_CRONSIM = None


def _read(expression, tz, first_after=None):
    """(fields, zone) of ``expression`` in ``tz``, or ScheduleError.
    ``first_after``: a moment whose next start the caller will ask: the
    check that reads the expression starts there and keeps that first
    start (a fleet's status asks it of every schedule: one reading by
    cronsim each instead of two)."""
    key = (expression, tz or None)
    found = _READ.get(key)
    if found is None:
        kept = _KEPT.valid.get(key)
        if kept is not None:
            # Read in an earlier command (load_kept_starts), in UTC: the
            # same answer, without cronsim.
            if len(_READ) > _MEMO_LIMIT:
                _READ.clear()
            found = _READ[key] = (kept, UTC)
            if first_after is not None:
                _kept_next((kept, tz or None), first_after)
            return found
        fields, zone = _fields(expression), _zone(tz)
        cronsim, error_class = _cronsim()
        try:
            checked = cronsim(" ".join(fields), datetime.datetime(2000, 1, 1, tzinfo=zone)
                              if first_after is None else first_after.astimezone(zone))
        except error_class as error:
            raise ScheduleError("schedule %r: %s" % (expression.strip(_BLANKS),
                                                     str(error).lower())) from None
        if len(_READ) > _MEMO_LIMIT:
            _READ.clear()
        found = _READ[key] = (tuple(fields), zone)
        if first_after is not None:
            _remember_next((found[0], tz or None), first_after,
                           next(_starts(checked), None))
    return found


def _starts(iterator):
    """The starts a CronSim iterator gives, in UTC, at most MAX_STARTS + 1."""
    for _ in range(MAX_STARTS + 1):
        try:
            found = next(iterator)
        except StopIteration:
            return
        yield found.astimezone(UTC)


def _remember_next(key, moment, start):
    if len(_NEXT) > _MEMO_LIMIT:
        _NEXT.clear()
    _NEXT[key, moment] = start


# Previous starts, by the stretch each answer holds for ----------------------------------
#
# cronsim's reverse iteration from t gives the greatest start p < t; then
# every moment in (p, t] has p for its previous start too (no start lies in
# (p, t)), and the second start it gives, p2, is the previous start of
# every moment in (p2, p].  Per schedule (its fields, UTC only: in a zone
# cronsim's answer may depend on where in a repeated or skipped hour t
# falls), _PREVIOUS keeps {p: the latest t known to have p as its previous
# start} (None for p: no start at all before t), and the p's sorted.

#: (fields, tz) -> [sorted starts p, {p: latest t}, latest t with no start before it or None].
_PREVIOUS = {}
#: Whether this process worked out a previous start without cronsim (the
#: file of kept starts may have something new to keep).
_LEARNT = [False]
_UNKNOWN = object()


def _known_previous(key, at):
    """previous_before(at) of the schedule ``key`` when a stretch known
    covers ``at`` (a whole-second moment), else _UNKNOWN."""
    import bisect
    known = _PREVIOUS.get(key)
    if known is None:
        return _UNKNOWN
    starts, latest, before_all = known
    index = bisect.bisect_left(starts, at) - 1
    if index >= 0:
        start = starts[index]
        if at <= latest[start]:
            return start
    elif before_all is not None and at <= before_all:
        return None
    return _UNKNOWN


def _remember_previous(key, start, at):
    """That ``start`` (or None) is the last start strictly before ``at``."""
    import bisect
    known = _PREVIOUS.get(key)
    if known is None:
        if len(_PREVIOUS) > _MEMO_LIMIT:
            _PREVIOUS.clear()
        known = _PREVIOUS[key] = [[], {}, None]
    starts, latest = known[0], known[1]
    if start is None:
        known[2] = at if known[2] is None else max(known[2], at)
    elif start in latest:
        latest[start] = max(latest[start], at)
    elif len(starts) < _MEMO_LIMIT:
        bisect.insort(starts, start)
        latest[start] = at


# Previous starts without cronsim, for schedules the same every day ------------------------
#
# Most of a fleet's schedules run at fixed minutes of fixed hours on every
# day, or on some days of the week ("30 2 * * *", "*/15 * * * 1-5"): in UTC
# their previous start is worked out here, in microseconds, where cronsim's
# reverse iteration took about 130 (overdue and metrics ask it of every
# expression of a fleet).  Only plain numbers, ranges, steps and * are
# read here, with the day of the month and the month *, so that the day of
# the week alone says which days run (as cron reads it); anything else
# goes to cronsim.  A property test holds this to cronsim.

#: (fields, tz) -> (minutes, hours, days of the week) or None (cronsim's).
_DAILY = {}


def _field_values(field, low, high):
    """The values ``field`` (numbers, a-b ranges, /steps, *, by commas)
    stands for within [low, high], or None for anything else (names, L, #:
    cronsim's to read)."""
    values = set()
    for part in field.split(","):
        base, slash, step = part.partition("/")
        if slash:
            if not step.isdigit() or int(step) == 0:
                return None
            step = int(step)
        else:
            step = 1
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            if not (first.isdigit() and last.isdigit()):
                return None
            first, last = int(first), int(last)
        elif base.isdigit():
            # N/step runs from N to the field's end, as cron (and cronsim) read it.
            first, last = int(base), (high if slash else int(base))
        else:
            return None
        if not low <= first <= last <= high:
            return None
        values.update(range(first, last + 1, step))
    return values


def _daily_plan(fields):
    """(minutes descending, hours descending, days of the week (0 Sunday))
    of a schedule ``fields`` that runs the same times on each day it runs,
    or None."""
    if fields[2] != "*" or fields[3] != "*":
        return None
    minutes, hours = _field_values(fields[0], 0, 59), _field_values(fields[1], 0, 23)
    days = _field_values(fields[4], 0, 7)
    if not minutes or not hours or not days:
        return None
    return (sorted(minutes, reverse=True), sorted(hours, reverse=True),
            frozenset(day % 7 for day in days))


def _daily_previous(plan, at):
    """The last start of ``plan`` strictly before ``at`` (aware UTC, whole seconds)."""
    minutes, hours, days = plan
    at = at.astimezone(UTC)
    day = at.replace(hour=0, minute=0, second=0)
    for back in range(8):
        if (day.weekday() + 1) % 7 in days:
            for hour in hours:
                if back == 0 and hour > at.hour:
                    continue
                for minute in minutes:
                    start = day.replace(hour=hour, minute=minute)
                    if back > 0 or start < at:
                        return start
        day -= datetime.timedelta(days=1)
    return None


def _daily_next(plan, after):
    """The first start of ``plan`` strictly after ``after`` (a start
    _daily_previous gave, or None), or None."""
    if after is None:
        return None
    minutes, hours, days = plan
    day = after.replace(hour=0, minute=0, second=0, microsecond=0)
    try:
        for ahead in range(8):
            if (day.weekday() + 1) % 7 in days:
                for hour in reversed(hours):
                    if ahead == 0 and hour < after.hour:
                        continue
                    for minute in reversed(minutes):
                        start = day.replace(hour=hour, minute=minute)
                        if start > after:
                            return start
            day += _DAY
    except OverflowError:
        pass
    return None


# Next starts kept between commands ----------------------------------------------------
#
# A next start is a pure function of the fields, the zone and the moment
# asked: if cronsim found that the first start after t0 is s, then for every
# moment t in [t0, s) the first start after t is s too (no start lies in
# (t0, s), so none in (t, s)).  `cronpolicy status` on a fleet of 5,000
# schedules spent a third of its time having cronsim read a few hundred
# expressions and find each one's next start (issue 32.3); a file in this
# user's state directory keeps, per expression read in UTC, that it is a
# schedule and the last [t0, s) worked out, so that the next command whose
# moment falls in [t0, s) takes s without cronsim.  Only UTC: in a zone with
# daylight saving changes cronsim's answer after t may depend on where in a
# repeated or skipped hour t falls, which this argument does not cover.
# Previous starts likewise (format 2): each stretch (p, t] whose moments
# all have p for their previous start (_PREVIOUS's), the latest few of each
# expression, a schedule the same every day up to its next start, so that
# `overdue` and `metrics`, asking every expression's at moments its jobs'
# estimates before now, find most of them kept by the last run a few
# minutes before (working them out was about 15 ms of each on a fleet of
# 5,000 jobs); in the file as marshal's bytes of their own, read only by a
# command that asks one.  The file is trusted only when written for this
# Python, this install of cronpolicy's schedule reading and this cronsim
# (their files' sizes and times), by this user, in a directory only this
# user may write (safety.checked_directory); anything else, or a file that
# does not read whole, is ignored, and the command works everything out as
# before.

#: The file's name in the state directory.
KEPT_STARTS_FILE = "next-starts.cache"
_KEPT_FORMAT = 2
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)


class _Kept:
    """What an earlier command left: ``valid`` {(expression, tz): fields}
    of the expressions read, ``next`` {(fields, tz): (t0, s)} and
    ``previous`` {(fields, tz): ((p, t), ...)}, previous starts by the
    stretch (p, t] each holds for (as _PREVIOUS keeps them), in
    microseconds since the epoch."""

    def __init__(self, valid=None, starts=None, header=None, previous=None):
        self.valid = dict(valid or {})
        self.next = dict(starts or {})
        self._previous = previous or {}
        self.header = header
        self.loaded = (len(self.valid), len(self.next))

    @property
    def previous(self):
        """(Kept as marshal's bytes, read the first time asked: status and
        schedule list, which ask no previous start, do not pay for them.)"""
        if type(self._previous) is bytes:
            import marshal
            try:
                found = marshal.loads(self._previous)
            except Exception:
                found = None
            self._previous = found if type(found) is dict else {}
        return self._previous


_KEPT = _Kept()


def _kept_next(key, moment):
    """Remember the kept next start of ``key`` ((fields, tz)) after
    ``moment`` when one applies; whether it did."""
    found = _KEPT.next.get(key)
    if found is None:
        return False
    at = (moment - _EPOCH) // _MICROSECOND
    try:
        if not found[0] <= at < found[1]:
            return False
        start = _EPOCH + datetime.timedelta(microseconds=found[1])
    except (TypeError, IndexError, OverflowError):     # (not what this module writes)
        return False
    _remember_next(key, moment, start)
    return True


def _kept_previous(key, at):
    """previous_before(at) of ``key`` ((fields, tz)) from a stretch an
    earlier command kept that covers ``at`` (remembered here too), else _UNKNOWN."""
    found = _KEPT.previous.get(key)
    if found is None:
        return _UNKNOWN
    moment = (at - _EPOCH) // _MICROSECOND
    try:
        for start, latest in found:
            if start < moment <= latest:
                start = _EPOCH + datetime.timedelta(microseconds=start)
                _remember_previous(key, start, _EPOCH + datetime.timedelta(microseconds=latest))
                return start
    except (TypeError, ValueError, OverflowError):     # (not what this module writes)
        pass
    return _UNKNOWN


#: How many stretches of previous starts are kept per expression (the latest).
_KEPT_STRETCHES = 4


def _previous_to_keep():
    """The previous starts to keep: what was kept, with what this process
    learnt, the latest _KEPT_STRETCHES of each expression."""
    previous = dict(_KEPT.previous)
    for key, (starts, latest, _) in _PREVIOUS.items():
        found = dict(previous.get(key, ()))
        for start in starts[-_KEPT_STRETCHES:]:
            at = (start - _EPOCH) // _MICROSECOND
            found[at] = max(found.get(at, at), (latest[start] - _EPOCH) // _MICROSECOND)
        previous[key] = tuple(sorted(found.items())[-_KEPT_STRETCHES:])
    return previous


def _header():
    """What the kept starts were worked out by, or None when it cannot be told."""
    import os
    import sys
    if _CRONSIM is None:
        return None
    module = sys.modules.get(_CRONSIM[0].__module__)
    files = [__file__, getattr(module, "__file__", None)]
    if None in files:
        return None
    stats = [os.stat(path) for path in files]
    return (_KEPT_FORMAT, sys.version, sys.prefix, os.geteuid()) + tuple(
        (path, info.st_size, info.st_mtime_ns) for path, info in zip(files, stats))


def _header_holds(header):
    import os
    import sys
    try:
        if header[:4] != (_KEPT_FORMAT, sys.version, sys.prefix, os.geteuid()) or \
                header[4][0] != __file__:
            return False
        for path, size, mtime in header[4:6]:
            info = os.stat(path)
            if (info.st_size, info.st_mtime_ns) != (size, mtime):
                return False
    except (OSError, TypeError, ValueError, IndexError):
        return False
    return True


def load_kept_starts(directory):
    """Take the next starts an earlier command kept in ``directory`` (the
    state directory), if the file is there and may be trusted; never raises."""
    global _KEPT
    import marshal
    import os
    try:
        if not os.path.isdir(directory):
            return
        from cronpolicy.safety import checked_directory, open_plain_file
        path = os.path.join(checked_directory(directory, "state_dir", 0o700), KEPT_STARTS_FILE)
        with open(open_plain_file(path), "rb") as stream:
            if os.fstat(stream.fileno()).st_uid != os.geteuid():
                return
            # (whole: marshal.load reads a file a few bytes at a time)
            header, valid, starts, previous = marshal.loads(stream.read())
        if not _header_holds(header) or type(valid) is not dict or type(starts) is not dict \
                or type(previous) is not bytes:
            return
    except Exception:           # none, not a plain file, or not read whole: as if none
        return
    # (what a file this user wrote for this code holds is not checked entry
    # by entry: that cost a command as much as the file saves it)
    _KEPT = _Kept(valid, starts, header, previous)


def save_kept_starts(directory):
    """Keep in ``directory`` what this process worked out in UTC for later
    commands, when it learnt anything new; never raises (a command that
    cannot write there, or finds something other than a plain file where
    the file goes, works as before: the file only saves time)."""
    import marshal
    import os
    if _CRONSIM is None and not _LEARNT[0]:     # nothing was worked out here
        return
    try:
        valid = dict(_KEPT.valid)
        valid.update((key, fields) for key, (fields, zone) in _READ.items() if zone is UTC)
        starts = dict(_KEPT.next)
        newest = None
        for (key, moment), start in _NEXT.items():
            if start is None or moment.tzinfo is None or key[1] is not None and \
                    _zone(key[1]) is not UTC:
                continue
            at = (moment - _EPOCH) // _MICROSECOND
            newest = at if newest is None else max(newest, at)
            found = (at, (start - _EPOCH) // _MICROSECOND)
            if found[0] < found[1] and (key not in starts or starts[key][0] < at):
                starts[key] = found
        if newest is not None:      # what has passed helps no one
            starts = {key: found for key, found in starts.items() if found[1] > newest}
        previous = _previous_to_keep()
        if (len(valid), len(starts)) == _KEPT.loaded and starts == _KEPT.next and \
                previous == _KEPT.previous:
            return
        if len(valid) > _MEMO_LIMIT or len(starts) > _MEMO_LIMIT:
            valid = dict(list(valid.items())[:_MEMO_LIMIT])
            starts = dict(list(starts.items())[:_MEMO_LIMIT])
        if len(previous) > _MEMO_LIMIT:
            previous = dict(list(previous.items())[:_MEMO_LIMIT])
        header = _header() or _KEPT.header
        if header is None:
            return
        from cronpolicy.safety import (
            checked_directory, remove_quietly, replace_problem, replace_with, write_beside)
        path = os.path.join(checked_directory(directory, "state_dir", 0o700), KEPT_STARTS_FILE)
        if replace_problem(path) is not None:
            return
        data = marshal.dumps((header, valid, starts, marshal.dumps(previous)))
        temporary = write_beside(path, lambda handle: handle.write(data), binary=True)
        try:
            replace_with(temporary, path)
        except BaseException:
            remove_quietly(temporary)
            raise
    except Exception:
        return


def with_kept_starts(directory, function):
    """``function()``, with the next starts an earlier command kept in
    ``directory`` (the state directory) taken first and what it worked
    out kept after (load_kept_starts, save_kept_starts): for the commands
    that work out a fleet's schedules (status, schedule list, overdue,
    metrics).  Nothing is kept when it raises."""
    load_kept_starts(directory)
    found = function()
    save_kept_starts(directory)
    return found


class Schedule:
    """A cron schedule in a time zone; ``source`` says where it came from.
    ``first_after``: a moment the caller will ask next_after of (worked out
    while the expression is read, when it is read)."""

    def __init__(self, expression, tz=None, source=None, origin="", first_after=None):
        fields, self.zone = _read(expression, tz, first_after)
        self.fields = list(fields)
        self.expression = expression.strip(_BLANKS)
        self.tz = tz or None
        #: FROM_POLICY, FROM_CRONTAB or FROM_SCRIPT (None: given directly),
        #: and ``origin``: which row, file or run, for people.
        self.source = source
        self.origin = origin
        #: Since when it is known (set by resolve): a start before it was
        #: nobody's to miss.
        self.known_since = None
        self._periods = {}
        # What the memo of first starts knows it by (a fleet asks thousands).
        self._key = (fields, self.tz)
        self._daily = False         # not yet read (_daily_starts)

    def alike(self, source=None, origin=""):
        """This schedule from another ``source`` and ``origin``, its
        known_since not set: a fleet's thousands of pairs share a few hundred
        expressions and zones, each read once (what it holds besides, its
        fields and the memos of its starts, depends on those alone)."""
        twin = Schedule.__new__(Schedule)
        twin.__dict__.update(self.__dict__)
        twin.source, twin.origin, twin.known_since = source, origin, None
        return twin

    def __repr__(self):
        return "Schedule(%r, %r)" % (self.expression, self.tz)

    def __eq__(self, other):
        return isinstance(other, Schedule) and (self.fields, self.tz) == (other.fields, other.tz)

    def __hash__(self):
        return hash((tuple(self.fields), self.tz))

    def describe(self):
        """The expression and its zone, for people: "0 2 * * * (Europe/London)"."""
        return "%s (%s)" % (self.expression, self.tz or "UTC")

    def _iterate(self, moment, reverse=False):
        start = moment.astimezone(self.zone)
        return _starts(_cronsim()[0](" ".join(self.fields), start, reverse=reverse))

    def next_after(self, moment):
        """The first start strictly after ``moment``, or None."""
        key = (self._key, moment)
        if key not in _NEXT and not (self.zone is UTC and _kept_next(self._key, moment)):
            _remember_next(self._key, moment, next(self._iterate(moment), None))
        return _NEXT[key]

    def next_known(self, moment):
        """next_after(moment) when it is known without cronsim (worked out
        in this process, or kept by an earlier command), else ``self``."""
        key = (self._key, moment)
        if key in _NEXT or self.zone is UTC and _kept_next(self._key, moment):
            return _NEXT[key]
        return self

    def start_bound(self, moment):
        """A time no start after ``moment`` comes before, worked out without
        cronsim, or None (in a zone: its changes of offset move starts).
        Every start is on a whole minute; where the minute field is one
        number, every start is at that minute of an hour, and where the hour
        field is one number too, at that time of a day (in UTC)."""
        if self.zone is not UTC:
            return None
        minute, hour = self.fields[0], self.fields[1]
        base = moment.replace(second=0, microsecond=0)
        if not minute.isdigit():
            return base + datetime.timedelta(minutes=1)
        if hour.isdigit():
            bound, step = base.replace(hour=int(hour), minute=int(minute)), \
                datetime.timedelta(days=1)
        else:
            bound, step = base.replace(minute=int(minute)), datetime.timedelta(hours=1)
        return bound if bound > moment else bound + step

    def previous_before(self, moment):
        """The last start strictly before ``moment``, or None.  In UTC each
        answer is remembered for the stretch of time it holds for
        (_known_previous): `overdue` and `metrics` ask it of every job of a
        fleet, at moments that differ by each job's estimate but mostly fall
        between the same two starts of a few hundred expressions."""
        at = moment.replace(microsecond=0)
        if self.zone is not UTC or at.tzinfo is None:
            return next(self._iterate(at, reverse=True), None)
        found = _known_previous(self._key, at)
        if found is not _UNKNOWN:
            return found
        found = _kept_previous(self._key, at)
        if found is not _UNKNOWN:
            return found
        plan = self._daily_plan()
        if plan is not None:
            found = _daily_previous(plan, at)
            # (for the whole stretch up to its next start: a later command,
            # its clock a few minutes on, finds it kept)
            _remember_previous(self._key, found, _daily_next(plan, found) or at)
            _LEARNT[0] = True
            return found
        starts = self._iterate(at, reverse=True)
        found = next(starts, None)
        _remember_previous(self._key, found, at)
        if found is not None:
            _remember_previous(self._key, next(starts, None), found)
        return found

    def starts_between(self, start, end, limit=None):
        """The starts in [start, end), in order: the first ``limit`` of them
        if given, else all, and ScheduleError when there are more than
        MAX_STARTS (rather than an answer cut short).  In UTC, a schedule
        that starts at the same times of day, every day or on some days of
        the week, has them laid on each day (_starts_of_days), without
        cronsim's walk from start to start (deploy plan and slot, and the
        simulator, ask every expression's)."""
        if self._daily is False:
            self._daily = _daily_starts(self._daily_plan() if self.zone is UTC else None)
        if (self._daily is not None and start.tzinfo is not None and end.tzinfo is not None
                and start.year > 1 and end.year < 9000):
            return self._starts_of_days(start, end, limit)
        return self._cronsim_between(start, end, limit)

    def _daily_plan(self):
        """_daily_plan(self.fields), worked out once per expression."""
        plan = _DAILY.get(self._key, _UNKNOWN)
        if plan is _UNKNOWN:
            plan = _daily_plan(self.fields)
            if len(_DAILY) > _MEMO_LIMIT:
                _DAILY.clear()
            _DAILY[self._key] = plan
        return plan

    def _cronsim_between(self, start, end, limit=None):
        """starts_between, by cronsim's walk from start to start."""
        found = []
        for moment in self._iterate(start - datetime.timedelta(microseconds=1)
                                    if start.microsecond else
                                    start - datetime.timedelta(seconds=1)):
            if moment >= end or (limit is not None and len(found) >= limit):
                return found
            if moment >= start:
                found.append(moment)
        if limit is None and len(found) >= MAX_STARTS:
            raise ScheduleError("%s starts more than %d times between %s and %s: ask about "
                                "less time" % (self.describe(), MAX_STARTS, start, end))
        return found

    def _starts_of_days(self, start, end, limit):
        """starts_between for a schedule that starts at the same times of
        day in UTC, on every day or some days of the week (``_daily``):
        those times laid on each of its days, without cronsim's walk from
        start to start (planners and the simulator ask days of starts of
        every schedule of a fleet)."""
        offsets, days = self._daily
        if limit is not None:
            limit = min(limit, MAX_STARTS + 1)      # (cronsim is asked no further)
        found = []
        day = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        while day < end:
            if (day.weekday() + 1) % 7 in days:     # (cron's Sunday is 0)
                for offset in offsets:
                    moment = day + offset
                    if moment < start:
                        continue
                    if moment >= end or (limit is not None and len(found) >= limit):
                        return found
                    found.append(moment)
                    if limit is None and len(found) > MAX_STARTS:
                        raise ScheduleError(
                            "%s starts more than %d times between %s and %s: ask about less "
                            "time" % (self.describe(), MAX_STARTS, start, end))
            day += _DAY
        return found

    def period(self, around):
        """The typical time between two starts near ``around``, in seconds
        (the median gap of the next few; a day when it runs less often than
        the next week shows).  Kept per hour: planners ask it again and again."""
        hour = around.replace(minute=0, second=0, microsecond=0)
        if hour not in self._periods:
            starts = self.starts_between(hour, hour + datetime.timedelta(days=8), limit=25)
            gaps = sorted((b - a).total_seconds() for a, b in zip(starts, starts[1:]))
            self._periods[hour] = gaps[len(gaps) // 2] if gaps else 8 * 86400.0
        return self._periods[hour]


_DAY = datetime.timedelta(days=1)


def _daily_starts(plan):
    """(times of day as timedeltas from midnight, in order; the days of
    the week, Sunday 0) of a schedule's _daily_plan, or None without one."""
    if plan is None:
        return None
    minutes, hours, days = plan
    return ([datetime.timedelta(hours=hour, minutes=minute)
             for hour in reversed(hours) for minute in reversed(minutes)], days)


def maybe_schedule(expression, tz=None, source=None, origin="", warn=None, first_after=None):
    """A Schedule, or None when ``expression`` is None or (said through
    ``warn``) not a schedule: a stored row that slipped past the checks
    (SQLite has no trigger to refuse it) decides nothing.  ``first_after``:
    as Schedule's."""
    if expression is None:
        return None
    read = _ALIKE.get((expression, tz or None))
    if read is not None:
        return read.alike(source, origin)
    try:
        found = Schedule(expression, tz, source, origin, first_after)
    except ScheduleError as error:
        if warn is not None:
            warn("ignoring the schedule %.60r of %s: %s" % (expression, origin or source,
                                                           str(error)[:200]))
        return None
    if len(_ALIKE) > _MEMO_LIMIT:
        _ALIKE.clear()
    _ALIKE[expression, tz or None] = found
    return found


#: A Schedule read of each (expression, tz), which maybe_schedule makes the
#: others alike of (Schedule.alike).
_ALIKE = {}


def schedule_rows(policies):
    """Of ``policies``, the rows that set a schedule, indexed
    (matching.IndexedRows): all that ``resolve`` looks at, in the same
    order of precedence, and usually none, so that a fleet's thousands of
    scripts are not each matched against every row (issue 32.3)."""
    return IndexedRows(row for row in policies if row.schedule is not None)


def crontab_origin(host, origin):
    """Where a registered crontab line's schedule came from, for people."""
    return "the crontab of %s%s" % (host, " (%s)" % origin if origin else "")


def crontab_schedule(host, expression, tz, origin, registered_at, warn=None, first_after=None):
    """The Schedule of a crontab line registered for ``host`` (known since
    ``registered_at``), or None when it does not read (said through ``warn``)."""
    found = maybe_schedule(expression, tz, FROM_CRONTAB, crontab_origin(host, origin), warn,
                           first_after)
    if found is not None:
        found.known_since = registered_at
    return found


def resolve(policies, registered, declared, name, host, warn=None, first_after=None):
    """The Schedule ``name`` runs on ``host`` by, or None: the most specific
    policy row that sets one, else the host's registered crontab line
    (``registered``: {(name, host): row}), else what the script declared at
    its latest start there (``declared``, the same).  Its ``known_since``
    says since when: the row's change, the registration, the start.
    ``policies`` may be only the rows that set a schedule (schedule_rows);
    ``first_after``: as Schedule's."""
    for row in matching_policies(policies, name, host):
        if row.schedule is not None:
            found = maybe_schedule(row.schedule, row.schedule_tz, FROM_POLICY,
                                   "policy #%s" % row.id, warn, first_after)
            if found is not None:
                found.known_since = row.changed_at
                return found
    row = registered.get((name, host))
    if row is not None:
        found = crontab_schedule(host, row["schedule"], row.get("schedule_tz"),
                                 row.get("origin"), row.get("registered_at"), warn, first_after)
        if found is not None:
            return found
    row = declared.get((name, host))
    if row is not None:
        found = maybe_schedule(row["schedule"], row.get("schedule_tz"), FROM_SCRIPT,
                               "the script, at its start on %s" % host, warn, first_after)
        if found is not None:
            found.known_since = row.get("started_at")
        return found
    return None
