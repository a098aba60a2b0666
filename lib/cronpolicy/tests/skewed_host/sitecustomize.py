"""A host whose wall clock lies, for tests (tests/test_skewed_hosts.py).

Put this directory first on PYTHONPATH and name a file in
CRONPOLICY_TEST_CLOCK_SKEW holding a number of seconds: every Python
process started so reads the wall clock that many seconds off, as a host
whose clock is wrong would: time.time(), time.time_ns(), the time module's
"now" forms, datetime.datetime.now()/utcnow()/today(), and the times os.stat
gives files (a skewed host's kernel stamps files with its own clock; an
explicit os.utime() is taken back to the real clock).  time.monotonic() is
left alone, as a wall-clock step does not move it.  Rewriting the file (by
rename) steps the clock of every such process at once, as NTP would.
"""

import os

_PATH = os.environ.get("CRONPOLICY_TEST_CLOCK_SKEW")

if _PATH:
    import datetime
    import time

    _real_time, _real_time_ns = time.time, time.time_ns
    _real_stat, _real_lstat, _real_fstat, _real_utime = os.stat, os.lstat, os.fstat, os.utime
    _seen = [None, 0.0]

    def skew():
        """The offset now in force (seconds), read again whenever the file changes."""
        try:
            info = _real_stat(_PATH)
        except OSError:
            return _seen[1]
        key = (info.st_ino, info.st_mtime_ns, info.st_size)
        if key != _seen[0]:
            try:
                with open(_PATH, encoding="ascii") as handle:
                    _seen[1] = float(handle.read().strip() or 0)
                _seen[0] = key
            except (OSError, ValueError):
                pass
        return _seen[1]

    def _time():
        return _real_time() + skew()

    def _time_ns():
        return _real_time_ns() + int(skew() * 1e9)

    def _now_or(real):
        def shifted(secs=None):
            return real(_time() if secs is None else secs)
        return shifted

    time.time, time.time_ns = _time, _time_ns
    time.localtime, time.gmtime, time.ctime = (
        _now_or(time.localtime), _now_or(time.gmtime), _now_or(time.ctime))
    _real_strftime = time.strftime
    time.strftime = lambda form, moment=None: _real_strftime(
        form, time.localtime() if moment is None else moment)

    _Real = datetime.datetime

    class _Kind(type):
        def __instancecheck__(cls, thing):
            return isinstance(thing, _Real)

        def __subclasscheck__(cls, kind):
            return issubclass(kind, _Real)

    class SkewedDatetime(_Real, metaclass=_Kind):
        @classmethod
        def now(cls, tz=None):
            return _Real.fromtimestamp(_time(), tz)

        @classmethod
        def utcnow(cls):
            return _Real.fromtimestamp(_time(), datetime.timezone.utc).replace(tzinfo=None)

        @classmethod
        def today(cls):
            return _Real.fromtimestamp(_time())

    datetime.datetime = SkewedDatetime

    def _shifted(info):
        offset = skew()
        kind, (visible, hidden) = info.__reduce__()
        visible = list(visible)
        for index in (7, 8, 9):
            visible[index] = int(visible[index] + offset)
        hidden = dict(hidden)
        for name in ("st_atime", "st_mtime", "st_ctime"):
            if hidden.get(name) is not None:
                hidden[name] += offset
            if hidden.get(name + "_ns") is not None:
                hidden[name + "_ns"] += int(offset * 1e9)
        return kind(visible, hidden)

    os.stat = lambda *args, **kwargs: _shifted(_real_stat(*args, **kwargs))
    os.lstat = lambda *args, **kwargs: _shifted(_real_lstat(*args, **kwargs))
    os.fstat = lambda *args, **kwargs: _shifted(_real_fstat(*args, **kwargs))

    def _utime(path, times=None, *, ns=None, **kwargs):
        offset = skew()
        if times is not None:
            times = tuple(moment - offset for moment in times)
        if ns is not None:
            ns = tuple(moment - int(offset * 1e9) for moment in ns)
            return _real_utime(path, times, ns=ns, **kwargs)
        return _real_utime(path, times, **kwargs)
    os.utime = _utime
