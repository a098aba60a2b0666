"""Schedules (issue 15): cron expressions read and iterated by cronsim, the
checks that refuse what is not one (Python and the PostgreSQL trigger
agree), where a script's schedule comes from, and registering a host's
crontab."""

import datetime
import json
import os
import stat

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from cronpolicy.rows import PolicyRow
from cronpolicy.matching import IndexedRows
from cronpolicy.schedule import (
    FROM_CRONTAB, FROM_POLICY, FROM_SCRIPT, Schedule, resolve, schedule_problem, schedule_rows)

from .conftest import DBA

UTC = datetime.timezone.utc
DEEP = int(os.environ.get("CRONPOLICY_FUZZ_EXAMPLES", "0"))


def at(*fields):
    return datetime.datetime(*fields, tzinfo=UTC)


# Reading and iterating ---------------------------------------------------------------

@pytest.mark.parametrize("keyword, fields", [("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"),
                                             ("@MIDNIGHT", "0 0 * * *"),
                                             ("@weekly", "0 0 * * 0"),
                                             ("@monthly", "0 0 1 * *"),
                                             ("@annually", "0 0 1 1 *")])
def test_keywords_are_their_five_fields(keyword, fields):
    assert Schedule(keyword) == Schedule(fields)


@pytest.mark.parametrize("expression, tz, fragment", [
    ("", None, "empty"), ("   ", None, "empty"), ("@reboot", None, "@reboot"),
    ("@fortnightly", None, "unknown keyword"), ("* * * *", None, "4 fields"),
    ("0 * * * * *", None, "6 fields"), ("61 * * * *", None, "minute"),
    ("0 24 * * *", None, "hour"), ("0 0 31 2 *", None, "day-of-month"),
    ("*/0 * * * *", None, "minute"), ("0 0 L * *", None, "cron does not read"),
    ("0 0 * * 5L", None, "cron does not read"), ("0 0 * * MON#2", None, "cron does not read"),
    ("0 0 15W * *", None, "cron does not read"), ("x" * 201, None, "at most 200"),
    ("@daily", "Mars/Olympus", "unknown time zone"), ("@daily", "../../etc/passwd", "zone"),
])
def test_what_is_not_a_schedule_is_said_in_one_line(expression, tz, fragment):
    problem = schedule_problem(expression, tz)
    assert problem and fragment in problem and "\n" not in problem


def test_starts_are_in_order_and_in_the_window():
    hourly = Schedule("5 * * * *")
    starts = hourly.starts_between(at(2026, 1, 1, 0, 5), at(2026, 1, 1, 3, 5))
    assert starts == [at(2026, 1, 1, h, 5) for h in range(3)]      # [start, end)
    assert hourly.next_after(at(2026, 1, 1, 0, 5)) == at(2026, 1, 1, 1, 5)
    assert hourly.previous_before(at(2026, 1, 1, 0, 5)) == at(2025, 12, 31, 23, 5)
    assert hourly.period(at(2026, 1, 1)) == 3600
    assert Schedule("@daily").period(at(2026, 1, 1)) == 86400


def test_a_zone_with_daylight_saving_runs_as_debian_cron_does():
    nightly = Schedule("30 2 * * *", "Europe/Berlin")
    # 2026-03-29: 02:00 to 03:00 does not exist in Berlin; cron runs it at 03:00 CEST.
    assert nightly.next_after(at(2026, 3, 28, 23, 0)) == at(2026, 3, 29, 1, 0)
    # 2026-10-25: 02:30 happens twice; it runs once.
    starts = nightly.starts_between(at(2026, 10, 24, 12), at(2026, 10, 26, 12))
    assert len(starts) == 2
    assert Schedule("0 2 * * *", "Europe/London").next_after(at(2026, 7, 1)) == \
        at(2026, 7, 1, 1, 0)


def test_where_a_schedule_comes_from():
    policies = [PolicyRow(id=1, name="publish-*", schedule="0 * * * *"),
                PolicyRow(id=2, name="publish-distro", host="web1")]
    registered = {("publish-distro", "web1"): {"schedule": "*/5 * * * *", "schedule_tz": None,
                                                "origin": "/etc/cron.d/x line 3"},
                  ("report", "web1"): {"schedule": "@daily", "schedule_tz": "Europe/London"}}
    declared = {("report", "web1"): {"schedule": "@hourly", "schedule_tz": None},
                ("bare", "web1"): {"schedule": "@hourly", "schedule_tz": None}}
    found = resolve(policies, registered, declared, "publish-distro", "web1")
    assert (found.expression, found.source, found.origin) == ("0 * * * *", FROM_POLICY,
                                                              "policy #1")
    found = resolve(policies, registered, declared, "report", "web1")
    assert (found.expression, found.tz, found.source) == ("@daily", "Europe/London",
                                                          FROM_CRONTAB)
    assert resolve(policies, registered, declared, "bare", "web1").source == FROM_SCRIPT
    assert resolve(policies, registered, declared, "bare", "web2") is None


_NAMES = st.sampled_from(["job", "job-1", "job-*", "*", "j?b", "other"])
_HOSTS = st.sampled_from(["h1", "h2", "h*", "*"])
_SCHEDULES = st.sampled_from([None, None, "0 * * * *", "@daily", "every hour", "5 4 * * 1"])


@hypothesis_settings(max_examples=300, deadline=None, derandomize=True)
@given(rows=st.lists(st.tuples(_NAMES, _HOSTS, st.booleans(), _SCHEDULES), max_size=12),
       name=st.sampled_from(["job", "job-1", "other"]), host=st.sampled_from(["h1", "h2"]))
def test_resolving_among_the_rows_that_set_a_schedule_is_resolving_among_all(rows, name, host):
    """Issue 32.3: a fleet resolves each script among schedule_rows only,
    which must pick what resolving among every row picks (the same row, or
    the same fall-through past a row whose schedule is not one)."""
    policies = IndexedRows(PolicyRow(id=number, name=pattern, host=on, enabled=enabled,
                                     schedule=expression)
                           for number, (pattern, on, enabled, expression) in enumerate(rows, 1))
    declared = {(name, host): {"schedule": "@hourly", "schedule_tz": None}}
    said_all, said_some = [], []
    every = resolve(policies, {}, declared, name, host, said_all.append)
    some = resolve(schedule_rows(policies), {}, declared, name, host, said_some.append)
    assert (every.expression, every.source, every.origin) == \
        (some.expression, some.source, some.origin)
    assert said_all == said_some


@hypothesis_settings(max_examples=200, deadline=None, derandomize=True)
@given(expression=st.sampled_from(["*/5 * * * *", "30 2 * * *", "0 1-3 * * 0", "15 */6 1 * *",
                                   "0 0 29 2 *", "@weekly", "59 23 31 12 *", "0 2 * * 1-5"]),
       tz=st.sampled_from([None, "Europe/London", "America/New_York", "Australia/Lord_Howe"]),
       moment=st.datetimes(min_value=datetime.datetime(2020, 1, 1),
                           max_value=datetime.datetime(2030, 12, 31),
                           timezones=st.just(datetime.timezone.utc)))
def test_a_first_start_worked_out_while_reading_is_the_one_asked_later(expression, tz, moment):
    """Issue 32.3: status reads each expression where it asks its first
    start (first_after); that start is the one next_after works out."""
    from cronpolicy import schedule as module
    module._READ.clear()
    module._NEXT.clear()
    early = Schedule(expression, tz, first_after=moment).next_after(moment)
    module._READ.clear()
    module._NEXT.clear()
    assert early == Schedule(expression, tz).next_after(moment)


def _cronsim_previous(expression, moment):
    from cronsim import CronSim
    found = next(CronSim(" ".join(Schedule(expression).fields),
                         moment.replace(microsecond=0).astimezone(UTC), reverse=True), None)
    return found.astimezone(UTC) if found is not None else None


@hypothesis_settings(max_examples=200, deadline=None, derandomize=True)
@given(expression=st.sampled_from(["* * * * *", "*/5 * * * *", "30 2 * * *", "0 1-3 * * 0",
                                   "15 */6 1 * *", "0 0 29 2 *", "@weekly", "59 23 31 12 *",
                                   "0 2 * * 1-5", "0 0 1 1 *"]),
       base=st.datetimes(min_value=datetime.datetime(2020, 1, 1),
                         max_value=datetime.datetime(2030, 12, 31),
                         timezones=st.just(datetime.timezone.utc)),
       offsets=st.lists(st.integers(min_value=-3 * 86400, max_value=3 * 86400), min_size=1,
                        max_size=30),
       micros=st.integers(min_value=0, max_value=999999))
def test_previous_starts_remembered_by_their_stretch_are_cronsims(expression, base, offsets,
                                                                  micros):
    """Issue 32.3: previous_before remembers each answer for the stretch of
    time it holds for (overdue and metrics ask it of every job of a fleet,
    at moments a job's estimate apart); asked in any order, at whole
    minutes, starts themselves and between, it answers what cronsim does."""
    from cronpolicy import schedule as module
    module._PREVIOUS.clear()
    schedule = Schedule(expression)
    for offset in offsets:
        moment = (base + datetime.timedelta(seconds=offset)).replace(microsecond=micros)
        if offset % 3 == 0:
            moment = moment.replace(second=0, microsecond=0)
        assert schedule.previous_before(moment) == _cronsim_previous(expression, moment)
        again = moment + datetime.timedelta(seconds=offset % 90)
        assert schedule.previous_before(again) == _cronsim_previous(expression, again)


_FIELD_PARTS = st.sampled_from(["*", "*/{step}", "{a}", "{a}-{b}", "{a}-{b}/{step}", "{a},{b}",
                                "{a},{a}-{b}", "{b}/{step}", "{a}-{b},*/{step}"])


def _field(parts, low, high):
    return st.builds(lambda part, a, b, step: part.format(a=min(a, b), b=max(a, b), step=step),
                     parts, st.integers(low, high), st.integers(low, high),
                     st.integers(1, high + 2))


@hypothesis_settings(max_examples=DEEP or 400, deadline=None, derandomize=not DEEP)
@given(minute=_field(_FIELD_PARTS, 0, 59), hour=_field(_FIELD_PARTS, 0, 23),
       dom=st.sampled_from(["*", "*", "*", "1", "13", "*/2"]),
       month=st.sampled_from(["*", "*", "*", "2", "1-6"]),
       dow=st.one_of(st.sampled_from(["*", "1-5", "0", "7", "SUN", "mon-fri", "5-7"]),
                     _field(_FIELD_PARTS, 0, 7)),
       moments=st.lists(st.datetimes(min_value=datetime.datetime(2020, 1, 1),
                                     max_value=datetime.datetime(2030, 12, 31),
                                     timezones=st.sampled_from([
                                         UTC, datetime.timezone(datetime.timedelta(hours=5))])),
                        min_size=1, max_size=4))
def test_previous_starts_worked_out_without_cronsim_are_cronsims(minute, hour, dom, month, dow,
                                                                 moments):
    """Issue 32.3: a schedule the same every day it runs has its previous
    starts worked out without cronsim (schedule._daily_previous): what
    cronsim says, for any expression it reads."""
    from cronpolicy import schedule as module
    expression = " ".join([minute, hour, dom, month, dow])
    if schedule_problem(expression) is not None:
        return
    for moment in moments:
        module._PREVIOUS.clear()
        found = Schedule(expression).previous_before(moment)
        assert found == _cronsim_previous(expression, moment), (expression, moment)
        assert found is None or found.tzinfo is UTC


@hypothesis_settings(max_examples=DEEP or 300, deadline=None, derandomize=not DEEP)
@given(minute=_field(_FIELD_PARTS, 0, 59), hour=_field(_FIELD_PARTS, 0, 23),
       dow=st.one_of(st.sampled_from(["*", "1-5", "0", "7", "5-7"]), _field(_FIELD_PARTS, 0, 7)),
       start=st.datetimes(min_value=datetime.datetime(2020, 1, 1),
                          max_value=datetime.datetime(2030, 12, 31),
                          timezones=st.sampled_from([
                              UTC, datetime.timezone(datetime.timedelta(hours=-3))])),
       seconds=st.integers(min_value=0, max_value=9 * 86400),
       limit=st.one_of(st.none(), st.integers(min_value=0, max_value=30)))
def test_starts_worked_out_without_cronsim_are_cronsims(minute, hour, dow, start, seconds, limit):
    """Issue 32.3: a schedule the same every day it runs has its starts in
    a window worked out without cronsim (Schedule._starts_of_days: deploy
    plan and slot ask every expression's): what cronsim gives."""
    expression = " ".join([minute, hour, "*", "*", dow])
    if schedule_problem(expression) is not None:
        return
    schedule = Schedule(expression)
    end = start + datetime.timedelta(seconds=seconds)
    found = schedule.starts_between(start, end, limit)
    assert found == schedule._cronsim_between(start, end, limit), (expression, start, end)
    assert all(moment.tzinfo is UTC for moment in found)


def test_too_many_starts_worked_out_without_cronsim_are_refused_as_by_cronsim(monkeypatch):
    from cronpolicy import schedule as module
    from cronpolicy.errors import UsageError
    monkeypatch.setattr(module, "MAX_STARTS", 100)
    schedule = Schedule("* * * * *")
    start = datetime.datetime(2026, 1, 1, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    said = []
    for window in (100, 101):
        end = start + datetime.timedelta(minutes=window)
        for way in (schedule.starts_between, schedule._cronsim_between):
            try:
                said.append(len(way(start, end)))
            except UsageError as error:
                said.append(str(error))
    assert said[0] == said[1] == 100 and said[2] == said[3], said
    assert "starts more than 100 times between 2026-01-01 05:00:00+01:00" in said[2]


def test_previous_starts_in_a_zone_are_not_remembered():
    from cronpolicy import schedule as module
    module._PREVIOUS.clear()
    london = Schedule("30 1 * * *", "Europe/London")
    assert london.previous_before(at(2026, 10, 25, 3, 0)) == at(2026, 10, 25, 0, 30)
    assert module._PREVIOUS == {}


def test_reading_where_a_first_start_is_asked_refuses_the_same():
    from cronpolicy import schedule as module
    module._READ.clear()
    moment = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    with pytest.raises(Exception) as refused:
        Schedule("0 0 31 2 *", None, first_after=moment)
    assert str(refused.value) == schedule_problem("0 0 31 2 *")


def test_a_stored_schedule_that_is_none_is_said_and_decides_nothing():
    said = []
    policies = [PolicyRow(id=3, name="job", schedule="every hour")]
    declared = {("job", "h"): {"schedule": "@hourly", "schedule_tz": None}}
    found = resolve(policies, {}, declared, "job", "h", said.append)
    assert found.source == FROM_SCRIPT        # the next source stands
    assert said and "every hour" in said[0] and "policy #3" in said[0]


# Python's check and PostgreSQL's trigger agree ------------------------------------------

FIELD_ITEMS = st.one_of(
    st.sampled_from(["*", "*/5", "*/0", "0", "5", "59", "60", "23", "24", "1-5", "5-1", "0-59/15",
                     "3/20", "31", "32", "12", "13", "7", "8", "MON", "mon-fri", "JAN", "jan-mar",
                     "SUN", "L", "5L", "LW", "15W", "MON#2", "", "-", "1-", "*-5", "00005",
                     "99999999999", "*/99999", "x", "1,2", ",3"]),
    st.integers(0, 70).map(str))
FIELDS = st.lists(FIELD_ITEMS, min_size=1, max_size=3).map(",".join)
#: What splits or looks like a field to one reader and not the other: Unicode
#: spaces, letters that lower or upper into ASCII (a review found these).
ODD = st.sampled_from([" ", "\t", "\xa0", "\x1c", "\x85", "\u2003", "\u017f", "\u212a",
                       "\u0130", "\n", "\x00", "\x7f"])
EXPRESSIONS = st.one_of(
    st.lists(FIELDS, min_size=4, max_size=6).map(" ".join),
    st.sampled_from(["@hourly", "@daily", "@reboot", "@weekly", "@Yearly", "@every", " @daily ",
                     "0 0 30 2 *", "0 0 29 2 *", "0 0 31 4,6 *", "0 0 31 4,5 *",
                     "0 0 31 2 mon", "0\t0 * *\t*", "@DA\u0130LY", "@wee\u212aly",
                     "0 0 1 \u017fep *", "\xa0@daily", "@daily\x85"]),
    st.tuples(st.lists(FIELDS, min_size=5, max_size=5), ODD).map(
        lambda pair: pair[1].join(pair[0])))
ZONES = st.sampled_from([None, "UTC", "Europe/London", "America/New_York", "Mars/Base", "",
                         "right/Europe/London", "posix/Europe/London", "EST5EDT", "Etc/GMT+5",
                         "+05:00", "europe/london", "Europe//London", "/etc/passwd"])


@pytest.fixture(scope="module")
def postgres_check(pg_database):
    """cronpolicy.schedule_problem(expression, tz) on the server, one connection."""
    import psycopg2
    connection = psycopg2.connect(pg_database)
    connection.autocommit = True

    def check(expression, tz):
        with connection.cursor() as cursor:
            cursor.execute("SELECT cronpolicy.schedule_problem(%s, %s)", (expression, tz))
            return cursor.fetchone()[0]
    yield check
    connection.close()


@hypothesis_settings(max_examples=DEEP or 300, deadline=None, derandomize=not DEEP,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(expression=EXPRESSIONS, tz=ZONES)
def test_the_database_refuses_exactly_what_python_refuses(postgres_check, expression, tz):
    python = schedule_problem(expression, tz)
    if "\x00" in expression:
        assert python           # PostgreSQL text cannot even hold it
        return
    problem = postgres_check(expression, tz)
    assert (problem is None) == (python is None), (expression, tz, problem, python)


def test_a_dba_cannot_store_a_schedule_cron_would_not_read(dba):
    if dba.backend != "postgresql":
        pytest.skip("SQLite has no such trigger: a bad schedule is said when read")
    with pytest.raises(Exception, match="has 4 fields"):
        dba.execute("INSERT INTO cronpolicy.script_policy (name, schedule)"
                    " VALUES ('job', '0 2 * *')")
    with pytest.raises(Exception, match="unknown time zone"):
        dba.execute("INSERT INTO cronpolicy.script_policy (name, schedule, schedule_tz)"
                    " VALUES ('job', '@daily', 'Mars/Base')")
    with pytest.raises(Exception, match="not a schedule"):
        dba.execute("INSERT INTO cronpolicy.script_schedule (name, host, schedule)"
                    " VALUES ('job', 'h', '@reboot')")
    dba.execute("INSERT INTO cronpolicy.script_policy (name, schedule, schedule_tz)"
                " VALUES ('job', '0 2 * * *', 'Europe/London')")


# Registering a host's crontab --------------------------------------------------------------

CRONTAB = """\
MAILTO=ops
*/15 * * * * /srv/bin/publish-distro --distro ubuntu
CRON_TZ=Europe/London
0 2 * * * /srv/bin/nightly-report
@reboot /srv/bin/warmup
"""


def test_import_registers_each_job_as_wrap_names_it_in_the_zone_cron_reads(cli, dba, tmp_path,
                                                                           monkeypatch):
    # cron reads the host's zone, not the TZ of whoever imports (a review
    # found it taken from the operator's shell).
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    crontab = tmp_path / "crontab"
    crontab.write_text(CRONTAB)
    code, out, err = cli("schedule", "import", "--tz", "America/New_York", str(crontab))
    assert code == 0, err
    assert "warmup: not registered: @reboot is not a schedule" in err and err.count("\n") == 1
    rows = dba.execute("SELECT name, host, schedule, schedule_tz, origin"
                       " FROM cronpolicy.script_schedule ORDER BY name")
    assert rows == [("nightly-report", "testhost", "0 2 * * *", "Europe/London",
                     "%s line 4" % crontab),
                    ("publish-distro", "testhost", "*/15 * * * *", "America/New_York",
                     "%s line 2" % crontab)]
    code, out, _ = cli("schedule", "import", "--tz", "America/New_York", str(crontab))
    assert "0 added, 0 changed, 2 unchanged" in out
    code, out, _ = cli("schedule", "import", str(crontab))       # this host's zone: UTC here
    assert "1 changed" in out and "publish-distro on testhost: */15 * * * * (UTC)" in out
    crontab.write_text(CRONTAB.replace("*/15", "*/5").replace("0 2 * * * /srv/bin/nightly-report\n",
                                                            ""))
    code, out, _ = cli("schedule", "import", "--tz", "America/New_York", "--replace", "--json",
                       str(crontab))
    outcome = json.loads(out)
    assert (outcome["changed"], outcome["removed"]) == (["publish-distro"], ["nightly-report"])
    code, out, _ = cli("schedule", "list", "--json")
    [row] = json.loads(out)["schedules"]
    assert (row["name"], row["schedule"], row["schedule_source"]) == (
        "publish-distro", "*/5 * * * *", "crontab")
    assert row["next_start"] is not None


def test_import_refuses_a_bad_zone_and_two_jobs_of_one_name(cli, tmp_path):
    crontab = tmp_path / "crontab"
    crontab.write_text("* * * * * /srv/bin/a\n")
    code, _, err = cli("schedule", "import", "--tz", "Mars/Base", str(crontab))
    assert code == 2 and "--tz: unknown time zone" in err
    crontab.write_text("# cronpolicy: name=same\n* * * * * /srv/bin/a\n"
                       "# cronpolicy: name=same\n0 * * * * /srv/bin/b\n")
    code, _, err = cli("schedule", "import", str(crontab))
    assert code == 2 and "more than one job is named same" in err


def test_a_script_login_registers_only_for_its_own_scripts(pg_roles, pg_dsn, tmp_path):
    import psycopg2
    web1, web2 = pg_roles("cronpolicy_script"), pg_roles("cronpolicy_script")
    for dsn, name, host in ((web1, "report", "h1"), (web2, "sync", "h2")):
        connection = psycopg2.connect(dsn)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO cronpolicy.script_schedule (name, host, schedule,"
                           " registered_by) VALUES (%s, %s, '@daily', 'someone-else')",
                           (name, host))
        connection.close()
    connection = psycopg2.connect(web2)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT name, registered_by = session_user"
                           " FROM cronpolicy.script_schedule ORDER BY name")
            assert cursor.fetchall() == [("report", False), ("sync", True)]
            with pytest.raises(psycopg2.Error, match="belongs to database role"):
                cursor.execute("INSERT INTO cronpolicy.script_schedule (name, host, schedule)"
                               " VALUES ('report', 'h2', '@hourly')")
            cursor.execute("UPDATE cronpolicy.script_schedule SET schedule = '@hourly'"
                           " WHERE name = 'report'")
            assert cursor.rowcount == 0         # not its host's: invisible to its writes
    finally:
        connection.close()
    # schedule import says so, rather than "1 changed" (a review found it did), and
    # exits 4 (issue 26.5: it said so and exited 0).
    crontab = tmp_path / "crontab"
    crontab.write_text("# cronpolicy: name=report\n0 * * * * /srv/bin/report\n")
    from .conftest import make_env
    env = make_env(tmp_path, web2)
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-m", "cronpolicy.tooling.cli", "schedule",
                             "import", str(crontab)], env=dict(env, CRONPOLICY_HOST="h1"),
                            capture_output=True, text=True, timeout=60)
    assert "0 changed" in result.stdout and "may not write as" in result.stderr \
        and "report on h1" in result.stderr, result.stdout + result.stderr
    assert result.returncode == 4


# What the commands show ------------------------------------------------------------------

def test_a_script_declares_its_schedule_and_the_commands_show_it(scripts, dba, cli):
    scripts.write("nightly", extra="schedule = '30 2 * * *'\n    schedule_tz = 'Europe/Paris'")
    assert scripts.run("nightly").returncode == 0
    assert dba.execute("SELECT schedule, schedule_tz FROM cronpolicy.script_run") == [
        ("30 2 * * *", "Europe/Paris")]
    code, out, _ = cli("estimate", "nightly", "--json")
    [row] = json.loads(out)["estimates"]
    assert (row["schedule"], row["schedule_tz"], row["schedule_source"]) == (
        "30 2 * * *", "Europe/Paris", FROM_SCRIPT)
    next_start = datetime.datetime.fromisoformat(row["next_start"])
    assert next_start.astimezone(Schedule("@daily", "Europe/Paris").zone).strftime("%H:%M") == \
        "02:30"
    # A DBA's schedule wins over the script's.
    dba.execute("INSERT INTO cronpolicy.script_policy (name, schedule) VALUES ('nightly', '@hourly')")
    code, out, _ = cli("why", "nightly")
    assert "schedule on testhost: @hourly (UTC), from policy #" in out
    code, out, _ = cli("status", "--json")
    [row] = json.loads(out)["scheduled"]
    assert (row["name"], row["host"], row["schedule"]) == ("nightly", "testhost", "@hourly")
    code, out, _ = cli("status")
    assert "scheduled: 1 scripts; next: nightly on testhost at" in out


def test_a_script_whose_schedule_is_none_is_refused_before_anything_is_recorded(scripts, dba):
    scripts.write("nightly", extra="schedule = '0 2 * *'")
    result = scripts.run("nightly")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "has 4 fields" in result.stderr
    assert dba.execute("SELECT count(*) FROM cronpolicy.script_run") == [(0,)]


def test_a_bad_schedule_written_on_sqlite_is_said_when_read_and_decides_nothing(
        sqlite_dsn, cli, monkeypatch):
    dba = DBA(sqlite_dsn)
    monkeypatch.setenv("CRONPOLICY_DSN", sqlite_dsn)
    dba.execute("INSERT INTO cronpolicy.script_policy (name, host, schedule)"
                " VALUES ('job', 'web1', 'every day at two')")
    code, out, err = cli("status", "--json")
    assert code == 0 and json.loads(out)["scheduled"] == []
    assert "ignoring the schedule 'every day at two' of policy #" in err


def test_wrap_register_wraps_and_registers_the_same_jobs(script_env, dba, tmp_path):
    import subprocess
    import sys
    crontab = tmp_path / "crontab"
    crontab.write_text(CRONTAB)
    # --dsn of the command names the database (it was ignored).
    env = dict(script_env)
    dsn = env.pop("CRONPOLICY_DSN")
    result = subprocess.run([sys.executable, "-m", "cronpolicy.tooling.cli", "--dsn", dsn,
                             "crontab", "wrap", "--register", "--program", "/usr/bin/cronpolicy",
                             str(crontab)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "run publish-distro --from-crontab" in result.stdout
    assert "schedules registered: 2 added" in result.stderr
    assert sorted(name for (name,) in dba.execute(
        "SELECT name FROM cronpolicy.script_schedule")) == ["nightly-report", "publish-distro"]


def test_cronpolicy_run_records_the_schedule_it_is_given(script_env, dba):
    import subprocess
    import sys
    command = [sys.executable, "-m", "cronpolicy.tooling.cli", "run", "sync", "--schedule",
               "*/5 * * * *", "--schedule-tz", "Asia/Tokyo", "--", "true"]
    assert subprocess.run(command, env=script_env, timeout=60).returncode == 0
    assert dba.execute("SELECT schedule, schedule_tz FROM cronpolicy.script_run") == [
        ("*/5 * * * *", "Asia/Tokyo")]
    bad = subprocess.run(command[:6] + ["@reboot", "--", "true"], env=script_env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "@reboot is not a schedule" in bad.stderr


def test_wrap_register_writes_nothing_when_it_cannot_register(script_env, tmp_path):
    """The crontab was rewritten in place, then the command failed (exit 4)."""
    import subprocess
    import sys
    crontab = tmp_path / "crontab"
    crontab.write_text(CRONTAB)
    away = dict(script_env, CRONPOLICY_DSN="postgresql://nobody@127.0.0.1:1/none",
                CRONPOLICY_CONNECT_TIMEOUT="1s")
    result = subprocess.run([sys.executable, "-m", "cronpolicy.tooling.cli", "crontab", "wrap",
                             "--register", "--in-place", str(crontab)], env=away,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 4 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines()[-1].startswith("cronpolicy: error: cannot connect")
    assert crontab.read_text() == CRONTAB


# Next starts kept between commands (issue 32.3) ---------------------------------------------

def _forget(module):
    module._READ.clear()
    module._ALIKE.clear()
    module._PREVIOUS.clear()
    module._NEXT.clear()
    module._KEPT = module._Kept()


@pytest.fixture
def kept(tmp_path, monkeypatch):
    """(the schedule module with its memos emptied, the state directory),
    and a way to make cronsim refuse to be asked (proof that a start came
    from the kept file)."""
    from cronpolicy import schedule as module
    _forget(module)
    yield module, str(tmp_path / "state")
    _forget(module)


def _without_cronsim(module, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("cronsim was asked")
    module._cronsim()
    monkeypatch.setattr(module, "_CRONSIM", (refuse, module._CRONSIM[1]))


@hypothesis_settings(max_examples=150, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(expression=st.sampled_from(["*/5 * * * *", "30 2 * * *", "0 1-3 * * 0", "15 */6 1 * *",
                                   "0 0 29 2 *", "@weekly", "59 23 31 12 *", "* * * * *"]),
       moment=st.datetimes(min_value=datetime.datetime(2020, 1, 1),
                           max_value=datetime.datetime(2030, 12, 31),
                           timezones=st.just(datetime.timezone.utc)),
       fraction=st.floats(min_value=0, max_value=1, exclude_max=True))
def test_a_kept_next_start_is_the_one_cronsim_gives_at_any_moment_before_it(
        kept, monkeypatch, expression, moment, fraction):
    """A start s kept as the first after t0 answers for any moment in
    [t0, s), without cronsim, the same as cronsim from that moment."""
    module, state = kept
    _forget(module)
    start = Schedule(expression, None, first_after=moment).next_after(moment)
    module.save_kept_starts(state)
    microseconds = (start - moment) // datetime.timedelta(microseconds=1)
    later = moment + datetime.timedelta(microseconds=int(microseconds * fraction))
    assert moment <= later < start
    _forget(module)
    truth = Schedule(expression).next_after(later)
    _forget(module)
    module.load_kept_starts(state)
    with monkeypatch.context() as patched:
        _without_cronsim(module, patched)
        assert Schedule(expression, None, first_after=later).next_after(later) == truth
    # At its start and after, it answers no more: cronsim is asked again.
    _forget(module)
    module.load_kept_starts(state)
    assert Schedule(expression).next_after(start) == \
        Schedule(expression).starts_between(start, start + datetime.timedelta(days=4000),
                                            limit=2)[1]


@hypothesis_settings(max_examples=150, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(expression=st.sampled_from(["*/5 * * * *", "30 2 * * *", "0 1-3 * * 0", "15 */6 1 * *",
                                   "0 0 29 2 *", "@weekly", "59 23 31 12 *", "* * * * *",
                                   "7,37 */2 * * 1-5"]),
       moments=st.lists(st.datetimes(min_value=datetime.datetime(2020, 1, 1),
                                     max_value=datetime.datetime(2030, 12, 31),
                                     timezones=st.just(datetime.timezone.utc)),
                        min_size=1, max_size=3),
       fraction=st.floats(min_value=0, max_value=1, exclude_min=True))
def test_a_kept_previous_start_is_cronsims_at_any_moment_of_its_stretch(
        kept, monkeypatch, expression, moments, fraction):
    """Issue 32.3: a previous start p kept for the stretch (p, t] (for a
    schedule the same every day, up to its next start) answers for any
    moment of it in a later command, without cronsim or the daily plan,
    the same as cronsim from that moment."""
    module, state = kept
    for moment in moments:
        Schedule(expression).previous_before(moment)
    module.save_kept_starts(state)
    key = Schedule(expression)._key
    _forget(module)
    module.load_kept_starts(state)
    stretches = module._KEPT.previous[key]
    assert 0 < len(stretches) <= module._KEPT_STRETCHES
    for start, latest in stretches:
        seconds = (latest - start) // 1000000
        later = module._EPOCH + datetime.timedelta(
            microseconds=start + max(1, int(seconds * fraction)) * 1000000)
        assert start < (later - module._EPOCH) // datetime.timedelta(microseconds=1) <= latest
        truth = _cronsim_previous(expression, later)
        _forget(module)
        module.load_kept_starts(state)
        with monkeypatch.context() as patched:
            _without_cronsim(module, patched)
            patched.setattr(module, "_daily_previous", _without_cronsim)
            assert Schedule(expression).previous_before(later) == truth, (expression, later)


def test_only_utc_is_kept_and_a_file_not_made_here_is_ignored(kept, monkeypatch):
    import marshal
    module, state = kept
    moment = at(2026, 3, 29, 0, 30)
    Schedule("30 1 * * *", "Europe/London", first_after=moment).next_after(moment)
    Schedule("30 1 * * *", None, first_after=moment).next_after(moment)
    module.save_kept_starts(state)
    path = os.path.join(state, module.KEPT_STARTS_FILE)
    with open(path, "rb") as stream:
        header, valid, starts, previous = marshal.load(stream)
    assert valid == {("30 1 * * *", None): ("30", "1", "*", "*", "*")} and list(starts) == [
        (("30", "1", "*", "*", "*"), None)]
    assert os.stat(state).st_mode & 0o777 == 0o700

    def loads():
        _forget(module)
        module.load_kept_starts(state)
        return set(module._KEPT.valid)

    assert loads() == {("30 1 * * *", None)}
    # Written by another cronsim, Python or reading of schedules: ignored.
    for changed in ((header[0], "another python") + header[2:],
                    header[:5] + ((header[5][0], header[5][1] + 1, header[5][2]),)):
        with open(path, "wb") as stream:
            marshal.dump((changed, valid, starts, previous), stream)
        assert loads() == set()
    # Cut short, or not what this module writes: ignored, never an error.
    for text in (b"", b"\x00garbage", marshal.dumps((header, [], starts, previous)),
                 marshal.dumps((header, valid, {(("30", "1", "*", "*", "*"), None): ("a", 1)},
                                previous)),
                 marshal.dumps((header, valid, starts)),
                 marshal.dumps((header, valid, starts, {(("30", "1", "*", "*", "*"), None): 5})),
                 marshal.dumps((header, valid, starts, b"\x00garbage")),
                 marshal.dumps((header, valid, starts, marshal.dumps(
                     {(("30", "1", "*", "*", "*"), None): 5})))):
        with open(path, "wb") as stream:
            stream.write(text)
        loads()
        assert Schedule("30 1 * * *").next_after(moment) == at(2026, 3, 29, 1, 30)
        assert Schedule("30 1 * * *").previous_before(moment) == at(2026, 3, 28, 1, 30)
    # A link where the file should be is not followed.
    os.unlink(path)
    target = os.path.join(os.path.dirname(state), "elsewhere")
    with open(target, "wb") as stream:
        marshal.dump((header, valid, starts, previous), stream)
    os.symlink(target, path)
    assert loads() == set()
    # Nor is a FIFO opened (it would block), and neither is replaced.
    os.unlink(path)
    os.mkfifo(path)
    assert loads() == set()
    Schedule("45 1 * * *", None, first_after=moment).next_after(moment)
    module.save_kept_starts(state)
    assert stat.S_ISFIFO(os.lstat(path).st_mode)
    assert [name for name in os.listdir(state) if name.startswith(".")] == []


def _status_fleet(dba):
    """A fleet with what status resolves in every way: crontab lines, a
    script's own declaration, a declaration alone, a zone, and on SQLite
    (no trigger refuses it) a line that does not read over a declaration."""
    from cronpolicy.timeutil import to_sqlite
    dba.execute("INSERT INTO cronpolicy.script_schedule (name, host, schedule, schedule_tz, origin)"
                " VALUES ('a', 'h1', '*/5 * * * *', NULL, 'x line 1'),"
                " ('a', 'h2', '*/5 * * * *', NULL, 'x line 1'),"
                " ('b', 'h1', '0 3 * * *', 'Europe/Paris', 'x line 2'),"
                " ('c', 'h1', {}, NULL, 'x line 3'),"
                " ('z', 'h3', '* * * * *', NULL, 'x line 5')",
                ("every day" if dba.backend == "sqlite" else "15 * * * *",))
    hour_ago = datetime.datetime.now(UTC) - datetime.timedelta(hours=1)
    if dba.backend == "sqlite":
        hour_ago = to_sqlite(hour_ago)
    for name, host, expression in (("c", "h1", "@hourly"), ("d", "h2", "7 * * * *")):
        dba.execute("INSERT INTO cronpolicy.script_run (name, host, pid, started_at, finished_at,"
                    " status, schedule) VALUES ({}, {}, 1, {}, {}, 'succeeded', {})",
                    (name, host, hour_ago, hour_ago, expression))


def _hold_the_database_clock(dba, monkeypatch):
    """The commands run in this process read the database clock as it is
    now for the rest of the test (Reader.now): tests that compare one
    command's next starts with another's failed when a minute passed
    between them (the next start of '* * * * *' moved; seen in CI)."""
    from cronpolicy.config import Settings
    from cronpolicy.store.reads import Reader, reading
    with reading(Settings.load(environ={"CRONPOLICY_DSN": dba.dsn})) as reader:
        held = reader.now()
    monkeypatch.setattr(Reader, "now", lambda self: held)


@pytest.mark.parametrize("policy_schedule", [False, True])
def test_status_text_counts_and_shows_the_first_starts_its_json_lists(
        dba, cli, policy_schedule, monkeypatch):
    """status's text works out only the count and the first three starts
    (fleet_starts), which must be those of the JSON's full list, with the
    same warnings, whether or not a policy row sets a schedule."""
    _status_fleet(dba)
    _hold_the_database_clock(dba, monkeypatch)
    if policy_schedule:
        dba.execute("INSERT INTO cronpolicy.script_policy (name, host, schedule)"
                    " VALUES ('z', '*', '@daily'), ('e', 'h9', '@weekly')")
    from cronpolicy.timeutil import format_time
    for _ in range(2):      # with nothing kept, then with what the first kept
        code, out, err = cli("status", "--json")
        rows = json.loads(out)["scheduled"]
        code_text, text, err_text = cli("status")
        assert code == code_text == 0 and err == err_text
        assert ("every day" in err) == (dba.backend == "sqlite")
        first = [row for row in rows[:3] if row["next_start"]]
        assert "scheduled: %d scripts; next: %s\n" % (len(rows), ", ".join(
            "%s on %s at %s" % (row["name"], row["host"], format_time(
                datetime.datetime.fromisoformat(row["next_start"]))) for row in first)) in text
        assert len(rows) == (7 if policy_schedule else 6)


@pytest.mark.parametrize("policy_schedule", [False, True])
def test_schedule_list_shows_the_scheduled_rows_of_its_list_of_all(dba, cli, policy_schedule,
                                                                  monkeypatch):
    """Issue 32.3: `schedule list` makes its rows of the crontab lines that
    read, one Schedule per expression and zone (listed_schedules), unless a
    policy row sets a schedule: the same rows, the same order and the same
    warnings as --all, which resolves every pair (fleet_schedules), shows of
    those with a schedule; text and JSON."""
    from cronpolicy.config import Settings
    from cronpolicy.store.reads import reading
    _status_fleet(dba)
    _hold_the_database_clock(dba, monkeypatch)
    if policy_schedule:
        dba.execute("INSERT INTO cronpolicy.script_policy (name, host, schedule)"
                    " VALUES ('z', '*', '@daily'), ('e', 'h9', '@weekly')")
    for _ in range(2):      # with nothing kept, then with what the first kept
        code, out, err = cli("schedule", "list", "--json")
        code_all, out_all, err_all = cli("schedule", "list", "--all", "--json")
        assert code == code_all == 0 and err == err_all
        assert ("every day" in err) == (dba.backend == "sqlite")
        rows = json.loads(out)["schedules"]
        assert rows == [row for row in json.loads(out_all)["schedules"] if row["schedule"]]
        assert len(rows) == (7 if policy_schedule else 6)
        code, text, err_text = cli("schedule", "list")
        assert code == 0 and err_text == err
        assert [line.split()[:2] for line in text.splitlines()[1:]] == [
            [row["name"], row["host"]] for row in rows]
    with reading(Settings.load(environ={"CRONPOLICY_DSN": dba.dsn})) as reader:
        assert reader.policy_sets_schedule() is policy_schedule


@hypothesis_settings(max_examples=300, deadline=None, derandomize=True)
@given(lines=st.lists(st.tuples(
           st.sampled_from(["a", "b", "job-1", "z"]), st.sampled_from(["h1", "h2", "h3"]),
           st.sampled_from(["* * * * *", "*/5 * * * *", "7-59/15 * * * *", "17 * * * *",
                            "0 * * * *", "59 23 * * *", "5 4 * * *", "5 4 * * 1", "@weekly",
                            "0 0 29 2 *", "30 2 * * *", "every day", "61 * * * *"]),
           st.sampled_from([None, None, "Europe/London"])), max_size=30),
       moment=st.datetimes(min_value=datetime.datetime(2020, 1, 1),
                           max_value=datetime.datetime(2030, 12, 31),
                           timezones=st.just(datetime.timezone.utc)),
       limit=st.integers(min_value=1, max_value=4))
def test_the_first_starts_are_those_of_every_start_sorted(lines, moment, limit):
    """Issue 32.3: status's text ranks a fleet's lines by first_starts,
    which leaves alone the expressions whose bound comes after the first
    few: the same count and the same first ones as working out every start
    and sorting them as status's JSON does."""
    from cronpolicy import schedule as module
    from cronpolicy.tooling.schedules import first_starts
    unique = list({(name, host): (name, host, expression, tz)
                   for name, host, expression, tz in lines}.values())
    _forget(module)
    count, first, unread = first_starts(unique, moment, limit)
    _forget(module)
    every = sorted(((Schedule(expression, tz).next_after(moment), name, host)
                    for name, host, expression, tz in unique
                    if schedule_problem(expression, tz) is None),
                   key=lambda one: (one[0] is None, one[0] or moment, one[1], one[2]))
    assert (count, first) == (len(every), every[:limit])
    assert set(unread) == {(name, host) for name, host, expression, tz in unique
                           if schedule_problem(expression, tz) is not None}


@hypothesis_settings(max_examples=300, deadline=None, derandomize=True)
@given(expression=st.sampled_from(["* * * * *", "*/5 * * * *", "17 * * * *", "0 * * * *",
                                   "59 23 * * *", "5 4 * * 1", "@weekly", "0 0 29 2 *",
                                   "30 2 1 * *", "0 12 * * 1-5"]),
       moment=st.datetimes(min_value=datetime.datetime(2020, 1, 1),
                           max_value=datetime.datetime(2030, 12, 31),
                           timezones=st.just(datetime.timezone.utc)))
def test_no_start_comes_before_its_bound(expression, moment):
    schedule = Schedule(expression)
    assert moment < schedule.start_bound(moment) <= schedule.next_after(moment)


_DAILY_FIELDS = st.lists(st.sampled_from(
    ["*", "*/5", "*/7", "0", "5", "59", "1-5", "0-59/15", "3/20", "7-59/15", "10,40", "23",
     "0-23/2", "*/6", "12"]), min_size=1, max_size=2).map(",".join)


@hypothesis_settings(max_examples=DEEP or 100, deadline=None, derandomize=not DEEP)
@given(minute=_DAILY_FIELDS, hour=_DAILY_FIELDS,
       rest=st.sampled_from(["* * *", "* * *", "* * 1-5", "1 * *", "* 2 *"]),
       tz=st.sampled_from([None, None, "UTC", "Europe/London"]),
       start=st.datetimes(min_value=datetime.datetime(2020, 1, 1),
                          max_value=datetime.datetime(2030, 12, 31),
                          timezones=st.just(UTC)),
       hours=st.integers(0, 80), limit=st.one_of(st.none(), st.integers(0, 30)))
def test_starts_laid_on_each_day_are_cronsims_walk(minute, hour, rest, tz, start, hours, limit):
    """A schedule with the same times every day in UTC has its starts laid
    on each day, not walked by cronsim: the same starts as the walk."""
    expression = "%s %s %s" % (minute, hour, rest)
    if schedule_problem(expression, tz) is not None:
        return
    schedule = Schedule(expression, tz)
    end = start + datetime.timedelta(hours=hours, minutes=hours * 7 % 60)
    walked = []
    for moment in schedule._iterate(start - datetime.timedelta(microseconds=1)):
        if moment >= end or (limit is not None and len(walked) >= limit):
            break
        if moment >= start:
            walked.append(moment)
    found = schedule.starts_between(start, end, limit)
    assert found == walked
    assert all(moment.tzinfo is UTC for moment in found)
    if rest == "* * *" and tz in (None, "UTC"):
        assert schedule._daily is not None         # laid on each day, not walked
    elif tz not in (None, "UTC") or rest.split()[:2] != ["*", "*"]:
        assert schedule._daily is None
