"""Durations and times as people type them."""

import datetime

import pytest
from hypothesis import given, strategies as st

from cronpolicy.errors import UsageError
from cronpolicy.timeutil import (
    UTC, format_duration, parse_duration, parse_time, to_sqlite)
from cronpolicy.rows import to_time as from_sqlite

NOW = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("text, seconds", [
    ("45s", 45), ("20m", 1200), ("2h", 7200), ("90d", 90 * 86400), ("1h30m", 5400),
    ("1w", 604800), (" 2H ", 7200), ("1.5m", 90), ("0s", 0)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "20", "m", "20 minutes", "-5m", "1h30", "5x", "h1"])
def test_parse_duration_rejects_with_one_line(text):
    with pytest.raises(UsageError) as error:
        parse_duration(text)
    assert "\n" not in str(error.value) and "20m" in str(error.value)


@given(st.integers(0, 10 ** 8))
def test_format_duration_round_trips(seconds):
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text, expected", [
    ("2026-11-28T02:00:00Z", datetime.datetime(2026, 11, 28, 2, 0, tzinfo=UTC)),
    ("2026-11-28 02:00", datetime.datetime(2026, 11, 28, 2, 0, tzinfo=UTC)),  # naive is UTC
    ("2026-11-28T03:00+01:00", datetime.datetime(2026, 11, 28, 2, 0, tzinfo=UTC)),
    ("now", NOW),
    ("+10m", NOW + datetime.timedelta(minutes=10)),
    ("now+2h", NOW + datetime.timedelta(hours=2)),
    ("now - 1h", NOW - datetime.timedelta(hours=1)),
])
def test_parse_time(text, expected):
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["tomorrow", "", "2026-13-01", "+", "now+soon", "12:00 pm"])
def test_parse_time_rejects(text):
    with pytest.raises(UsageError):
        parse_time(text, NOW)


def test_sqlite_timestamps_round_trip_to_the_millisecond():
    moment = datetime.datetime(2026, 11, 27, 12, 0, 1, 234000, tzinfo=UTC)
    assert to_sqlite(moment) == "2026-11-27 12:00:01.234"
    assert from_sqlite(to_sqlite(moment)) == moment
    assert from_sqlite("2026-11-27T12:00:01Z") == moment.replace(microsecond=0)
