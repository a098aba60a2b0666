"""Schema patch 0021 made the guards on script_run cheaper (they ask who the
writer is only when the answer matters); it must not change what they let
anyone do.  The same generated writes, by the same real logins (every group
role of roles.sql, a group of logins, none, SET ROLE, the table's owner),
go to two databases: one with the guards as patches 0010, 0015 and the
roles.sql of schema 20 left them, one with patch 0021's; every statement
must end the same way (its row, relative to the database clock, or its
error's SQLSTATE), and so must the claims and runs left behind."""

import datetime
import decimal
import os
import re

import psycopg2
import pytest
from hypothesis import (HealthCheck, example, given, settings as hypothesis_settings,
                        strategies as st)

from cronpolicy import schema

from . import footprint
from .conftest import (DBA, admin_connection, apply_roles, create_database,
                       drop_database_soon, schema_template)
from .test_roles import try_sql

#: Every test here is integration (they reach a database or start processes):
#: under -m unit alone the module is not even imported (tests/layers.py).
pytestmark = pytest.mark.integration

#: The suite runs a fixed set of examples (derandomized, so CI is repeatable);
#: CRONPOLICY_FUZZ_EXAMPLES=N runs N fresh random ones instead.
DEEP = int(os.environ.get("CRONPOLICY_FUZZ_EXAMPLES", "0"))

#: guard_run_owner as roles.sql defined it before schema patch 0021 (git 85df148).
OLD_GUARD_RUN_OWNER = r"""
CREATE OR REPLACE FUNCTION cronpolicy.guard_run_owner() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF OLD.db_user IS DISTINCT FROM session_user
       AND NOT pg_has_role(current_user, 'cronpolicy_admin', 'MEMBER')
       AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       AND current_user <> (SELECT tableowner FROM pg_tables
                             WHERE schemaname = 'cronpolicy' AND tablename = 'script_run') THEN
        RAISE EXCEPTION 'run #% belongs to database user %; % may update only its own runs',
            OLD.id, OLD.db_user, session_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
"""


ATTACH_OLD_GUARD_RUN_OWNER = """
DROP TRIGGER IF EXISTS script_run_owner_guard ON cronpolicy.script_run;
CREATE TRIGGER script_run_owner_guard BEFORE UPDATE ON cronpolicy.script_run
    FOR EACH ROW EXECUTE FUNCTION cronpolicy.guard_run_owner();
"""


def old_guards():
    """The guards before patch 0021, from the patches that defined them."""
    def defined_in(patch, function):
        with open(os.path.join(schema.patch_dir("postgresql"), patch), encoding="utf-8") as f:
            text = f.read()
        found = re.search(r"CREATE (?:OR REPLACE )?FUNCTION cronpolicy\.%s\(.*?\n\$\$;"
                          % re.escape(function), text, re.S)
        return found.group(0).replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
    return "\n".join((defined_in("0010-history-on-the-database-clock.sql", "is_administrator"),
                      defined_in("0015-hosts-belong-to-logins.sql", "guard_run_times"),
                      OLD_GUARD_RUN_OWNER, ATTACH_OLD_GUARD_RUN_OWNER))


#: The writers: a login (by its part in the fleet) and the role it SETs, if any.
#: adm: an administrator that may also SET ROLE cronpolicy_script;
#: grp: a group role of a and r, itself a member of cronpolicy_script; own:
#: a plain login that owns script_run (and no other table: an upgrade by
#: another role made those).
LOGINS = {"a": "cronpolicy_script", "b": "cronpolicy_script", "r": "cronpolicy_rollout",
          "adm": "cronpolicy_admin, cronpolicy_script", "rd": "cronpolicy_reader",
          "rl": "cronpolicy_relay",
          "none": None, "own": None}
WRITERS = (("a", None), ("a", "grp"), ("b", None), ("r", None), ("r", "cronpolicy_script"),
           ("adm", None), ("adm", "cronpolicy_script"), ("rd", None), ("rl", None),
           ("none", None), ("own", None), ("r", "grp"), ("a", None), ("b", None), ("r", None))
#: Who script_owner and host_login may list: logins, the group, a role that is gone.
LISTED = ("a", "b", "r", "adm", "own", "grp", "ghost")
NAMES = ("job1", "job2", "job*", "j?b1", "job_1")
HOSTS = ("h1", "h2", "h*", "h_")
TIMES = ("NULL", "now()", "now() - interval '2 hours'", "now() - interval '1 second'",
         "now() + interval '30 minutes'", "now() + interval '3 hours'",
         "'infinity'", "'-infinity'")
STATUSES = ("running", "succeeded", "failed", "abandoned")
SECONDS = (0.0, 5.0, 29.0, 31.0, 3599.0, 7200.0, float("nan"), float("inf"), -1.0)


#: When an example's earlier runs started, ran and were last heard from:
#: whole seconds before a time no statement's clock shows (its
#: microseconds), so a time tells where it came from (clock_of).
ANCHOR = "date_trunc('second', now()) - interval '0.123457 seconds'"


def rel(column):
    """A time, exactly: seconds since 1970 (clock_of reads them), or infinity."""
    return "CASE WHEN isfinite({c}) THEN extract(epoch FROM {c})::text ELSE {c}::text END".format(
        c=column)


def clock_of(value, clocks):
    """A time as whole seconds from the clocks (the anchor of the example's
    earlier runs, steps' now()) it may have been counted from: a set, since
    two clocks may share their microseconds (one pair in a million)."""
    if value is None or "infinity" in value:
        return value
    counted = frozenset("%s%+d" % (name, seconds) for name, seconds in (
        (name, decimal.Decimal(value) - clock) for name, clock in clocks)
        if seconds == seconds.to_integral_value())
    return counted or "drift " + value


def same(old, new):
    """Whether two outcomes agree, times where their clocks may (clock_of)."""
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return all(len(a) == len(b) and all(
            x & y if isinstance(x, frozenset) and isinstance(y, frozenset) else x == y
            for x, y in zip(a, b)) for a, b in zip(old, new))
    return old == new


RETURNED = ", ".join(["name", "host", "status", "spooled", "db_user", "safe_to_interrupt",
                      "spool_id", "exit_code"]
                     + [rel(c) for c in ("started_at", "finished_at", "heartbeat_at",
                                         "lease_expires_at")])


class Fleet(tuple):
    """(roles, connections), short in hypothesis's report of a failing example."""

    def __new__(cls, roles, connections):
        return super().__new__(cls, (roles, connections))

    def __repr__(self):
        return "fleet"


@pytest.fixture(scope="module")
def fleet():
    """Two copies of the schema with roles.sql, one with the old guards; the
    logins; yields (roles by part, {(part, database): connection})."""
    roles = {part: footprint.name("g" + part) for part in LOGINS}
    roles["grp"] = footprint.name("ggrp")
    roles["ghost"] = footprint.name("gghost")         # never created
    databases = [create_database("guard", template=schema_template()) for _ in "on"]
    connections = {}
    try:
        with admin_connection() as admin, admin.cursor() as cursor:
            for part, group in LOGINS.items():
                cursor.execute('CREATE ROLE "%s" LOGIN' % roles[part])
        for _, dsn in databases:
            apply_roles(dsn)
        with admin_connection() as admin, admin.cursor() as cursor:
            for part, group in LOGINS.items():
                if group:
                    cursor.execute('GRANT %s TO "%s"' % (group, roles[part]))
            cursor.execute('CREATE ROLE "%s" NOLOGIN' % roles["grp"])
            cursor.execute('GRANT cronpolicy_script TO "%s"' % roles["grp"])
            cursor.execute('GRANT "%s" TO "%s", "%s"' % (roles["grp"], roles["a"], roles["r"]))
        for index, (_, dsn) in enumerate(databases):
            connection = psycopg2.connect(dsn)
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute('GRANT USAGE ON SCHEMA cronpolicy TO "%s"' % roles["own"])
                cursor.execute('ALTER TABLE cronpolicy.script_run OWNER TO "%s"' % roles["own"])
                if index == 0:
                    cursor.execute(old_guards())
            connections[("dba", index)] = connection
            for part in LOGINS:
                params = psycopg2.extensions.parse_dsn(dsn)
                params["user"] = roles[part]
                try:
                    login = psycopg2.connect(psycopg2.extensions.make_dsn(**params))
                except psycopg2.Error:
                    continue                            # no CONNECT: every step an error
                login.autocommit = True
                connections[(part, index)] = login
        yield Fleet(roles, connections)
    finally:
        for connection in connections.values():
            connection.close()
        for name, dsn in databases:
            connection = psycopg2.connect(dsn)
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute('REASSIGN OWNED BY "%s" TO CURRENT_USER' % roles["own"])
                cursor.execute('DROP OWNED BY %s' % ", ".join(
                    '"%s"' % roles[part] for part in list(LOGINS) + ["grp"]))
            connection.close()
            drop_database_soon(name)
        with admin_connection() as admin, admin.cursor() as cursor:
            for part in list(LOGINS) + ["grp"]:
                cursor.execute('DROP ROLE IF EXISTS "%s"' % roles[part])


def runs():
    return st.fixed_dictionaries({
        "writer": st.sampled_from(("a", "b", "r", "adm", "own")),
        "name": st.sampled_from(NAMES[:2]), "host": st.sampled_from(("h1", "h2")),
        "status": st.sampled_from(STATUSES), "spooled": st.booleans(),
        "age": st.sampled_from((10, 40, 4000)),
        "lease": st.sampled_from((None, -5, 20, 1800, 10800))})


def inserts():
    return st.fixed_dictionaries({
        "op": st.just("insert"), "name": st.sampled_from(NAMES + NAMES[:2] * 3),
        "host": st.sampled_from(HOSTS + HOSTS[:2] * 3),
        "status": st.sampled_from(STATUSES[:2]), "spooled": st.booleans()},
        optional={"started_at": st.sampled_from(TIMES), "finished_at": st.sampled_from(TIMES),
                  "heartbeat_at": st.sampled_from(TIMES),
                  "lease_expires_at": st.sampled_from(TIMES),
                  "db_user": st.sampled_from(("a", "b", "own")),
                  "safe_to_interrupt": st.booleans(),
                  # A second row in the statement (its own name and host, or none).
                  "second": st.tuples(st.sampled_from(NAMES + (None,)),
                                      st.sampled_from(HOSTS + (None,))),
                  # An earlier run's key: the insert becomes an update of it.
                  "upsert": st.sampled_from(("p0", "n0", "n5"))})


def updates():
    """Mostly what roles.sql lets a script change; now and then what only an
    administrator may (name, host, started_at, db_user)."""
    scripts = {"status": st.sampled_from(STATUSES), "finished_at": st.sampled_from(TIMES),
               "heartbeat_at": st.sampled_from(TIMES),
               "lease_expires_at": st.sampled_from(TIMES), "spooled": st.booleans(),
               "safe_to_interrupt": st.booleans(), "exit_code": st.sampled_from((0, 1))}
    administrators = dict(scripts, host=st.sampled_from(HOSTS), name=st.sampled_from(NAMES[:2]),
                          started_at=st.sampled_from(TIMES), db_user=st.sampled_from(("a", "b")))
    target = {"op": st.just("update"),
              "target": st.sampled_from(("p0", "p1", "n0", "n1", "n2", "n5", "n9", "job1"))}
    return st.one_of(st.fixed_dictionaries(target, optional=scripts),
                     st.fixed_dictionaries(target, optional=scripts),
                     st.fixed_dictionaries(target, optional=administrators))


def relayed():
    return st.fixed_dictionaries({
        "op": st.just("renew"), "target": st.sampled_from(("p0", "p1", "n0", "n5", "n9")),
        "safe": st.booleans(), "age": st.sampled_from(SECONDS), "ttl": st.sampled_from(SECONDS)})


#: A step that every writer tries in turn, as a writer of a step.
EVERYONE = ("everyone", None)


def steps():
    return st.tuples(st.sampled_from(WRITERS + (EVERYONE,) * 5),
                     st.one_of(inserts(), inserts(), updates(), updates(), relayed(),
                               st.just({"op": "reap"})))


def statement(roles, step, index):
    """(SQL, parameters) of one step."""
    op = step["op"]
    if op == "reap":
        return "SELECT count(*) FROM cronpolicy.reap_dead_runs()", ()
    if op == "renew":
        return ("SELECT known, renewed FROM cronpolicy.renew_relayed("
                "ARRAY(SELECT id FROM cronpolicy.script_run WHERE spool_id = %s),"
                " ARRAY[%s], ARRAY[%s], ARRAY[%s::float8], ARRAY[NULL]::text[],"
                " ARRAY[NULL]::int[], ARRAY[%s::float8])",
                (step["target"], step["target"], step["safe"], step["age"], step["ttl"]))
    values = {}
    for column, value in step.items():
        if column in ("op", "target", "second", "upsert"):
            continue
        if column in ("started_at", "finished_at", "heartbeat_at", "lease_expires_at"):
            values[column] = (value, ())
        elif column == "db_user":
            values[column] = ("%s", (roles[value],))
        else:
            values[column] = ("%s", (value,))
    if op == "insert":
        values["spool_id"] = ("%s", (step.get("upsert", "n%d" % index),))
        rows = [values]
        if "second" in step:
            rows.append(dict(values, name=("%s", step["second"][:1]),
                             host=("%s", step["second"][1:]),
                             spool_id=("%s", ("n%d.2" % index,))))
        sql = "INSERT INTO cronpolicy.script_run (%s) VALUES %s%s RETURNING %s" % (
            ", ".join(values), ", ".join("(%s)" % ", ".join(v[0] for v in row.values())
                                         for row in rows),
            " ON CONFLICT (spool_id) DO UPDATE SET status = EXCLUDED.status,"
            " finished_at = EXCLUDED.finished_at, heartbeat_at = EXCLUDED.heartbeat_at,"
            " lease_expires_at = EXCLUDED.lease_expires_at, spooled = EXCLUDED.spooled"
            if "upsert" in step else "", RETURNED)
        return sql, tuple(p for row in rows for v in row.values() for p in v[1])
    else:
        if not values:
            values["exit_code"] = ("exit_code", ())
        sql = "UPDATE cronpolicy.script_run SET %s WHERE %%s IN (spool_id, name) RETURNING %s" % (
            ", ".join("%s = %s" % (c, v[0]) for c, v in values.items()), RETURNED)
        values["where"] = ("", (step["target"],))
    return sql, tuple(p for v in values.values() for p in v[1])


def outcome(connection, sql, parameters, set_role, clocks):
    """What a statement came to: its rows, sorted, or its error's SQLSTATE.
    Its transaction's clock joins ``clocks``; the rows' times read from them."""
    if connection is None:
        return "cannot connect"
    with connection.cursor() as cursor:
        try:
            cursor.execute("BEGIN")
            cursor.execute("SELECT extract(epoch FROM now())::text")
            clocks.insert(0, ("step%d" % (len(clocks) - 1), decimal.Decimal(cursor.fetchone()[0])))
            if set_role:
                cursor.execute('SET LOCAL ROLE "%s"' % set_role)
            cursor.execute(sql, parameters)
            rows = cursor.fetchall()
            cursor.execute("COMMIT")
        except psycopg2.Error as error:
            cursor.execute("ROLLBACK")
            return ("error", error.pgcode)
    if rows and len(rows[0]) > 8:
        rows = [row[:8] + tuple(clock_of(value, clocks) for value in row[8:]) for row in rows]
    return sorted(rows, key=lambda row: repr(row[:8]))


def prepare(connection, roles, listed_scripts, listed_hosts, past_runs, anchor):
    """The claims and runs an example starts from, written past the triggers."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica;"
                       " DELETE FROM cronpolicy.script_run; DELETE FROM cronpolicy.run_slot;"
                       " DELETE FROM cronpolicy.script_owner; DELETE FROM cronpolicy.host_login")
        for name, part in listed_scripts:
            cursor.execute("INSERT INTO cronpolicy.script_owner (name, db_role) VALUES (%s, %s)",
                           (name, roles[part]))
        for host, part in listed_hosts:
            cursor.execute("INSERT INTO cronpolicy.host_login (host, db_role) VALUES (%s, %s)",
                           (host, roles[part]))
        for number, run in enumerate(past_runs):
            running = run["status"] == "running"
            cursor.execute(
                "INSERT INTO cronpolicy.script_run (name, host, status, spooled, db_user,"
                " spool_id, started_at, heartbeat_at, finished_at, lease_expires_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s::timestamptz - %s * interval '1 second',"
                " %s::timestamptz - %s * interval '1 second',"
                " CASE WHEN NOT %s THEN %s::timestamptz - interval '1 second' END,"
                " CASE WHEN %s THEN %s::timestamptz + %s * interval '1 second' END)",
                (run["name"], run["host"], run["status"], run["spooled"], roles[run["writer"]],
                 "p%d" % number, anchor, run["age"] + 60, anchor, run["age"], running, anchor,
                 running and run["lease"] is not None, anchor, run["lease"] or 0))
        cursor.execute("SET session_replication_role = DEFAULT")


def state(connection, roles):
    """The claims and runs left, with roles by their part in the fleet."""
    parts = {role: part for part, role in roles.items()}
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'script', name, db_role, granted_by FROM cronpolicy.script_owner"
                       " UNION ALL SELECT 'host', host, db_role, granted_by"
                       " FROM cronpolicy.host_login")
        claims = sorted((kind, name, parts.get(role, role), parts.get(by, by))
                        for kind, name, role, by in cursor.fetchall())
        cursor.execute("SELECT spool_id, name, host, status, spooled, db_user, exit_code,"
                       " safe_to_interrupt, finished_at IS NULL, heartbeat_at IS NULL,"
                       " lease_expires_at IS NULL FROM cronpolicy.script_run")
        return claims, sorted(cursor.fetchall(), key=repr)


#: What every writer tries, whatever hypothesis draws: a start with times of
#: its own and a long lease, a spooled record, an end, a renewal, a reaping.
EVERY_KIND = dict(
    listed_scripts=[("job1", "a"), ("job2", "grp"), ("job*", "b")],
    listed_hosts=[("h1", "a"), ("h2", "grp"), ("h*", "own")],
    past_runs=[{"writer": "a", "name": "job1", "host": "h1", "status": "running",
                "spooled": False, "age": 40, "lease": None},
               {"writer": "r", "name": "job2", "host": "h2", "status": "running",
                "spooled": True, "age": 10, "lease": 1800}],
    script=[(EVERYONE, {"op": "insert", "name": "job1", "host": "h1", "status": "running",
                        "spooled": False, "started_at": "now() - interval '2 hours'",
                        "heartbeat_at": "'infinity'",
                        "lease_expires_at": "now() + interval '3 hours'"}),
            (EVERYONE, {"op": "insert", "name": "job2", "host": "h2", "status": "succeeded",
                        "spooled": True, "started_at": "now() - interval '2 hours'",
                        "finished_at": "now() + interval '30 minutes'"}),
            (EVERYONE, {"op": "update", "target": "p0", "status": "failed",
                        "finished_at": "now() - interval '2 hours'", "exit_code": 1}),
            (EVERYONE, {"op": "update", "target": "p1", "heartbeat_at": "'-infinity'",
                        "lease_expires_at": "'infinity'", "spooled": False}),
            (EVERYONE, {"op": "renew", "target": "p1", "safe": True, "age": float("nan"),
                        "ttl": 7200.0}),
            (EVERYONE, {"op": "reap"})])


@hypothesis_settings(max_examples=DEEP or 40, deadline=None, derandomize=not DEEP,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow])
@given(listed_scripts=st.lists(st.tuples(st.sampled_from(NAMES[:4]), st.sampled_from(LISTED)),
                               unique=True, max_size=4),
       listed_hosts=st.lists(st.tuples(st.sampled_from(HOSTS[:3]), st.sampled_from(LISTED)),
                             unique=True, max_size=4),
       past_runs=st.lists(runs(), max_size=3),
       script=st.lists(steps(), min_size=1, max_size=8))
@example(**EVERY_KIND)
def test_the_guards_of_patch_0021_answer_every_writer_as_the_old_ones_did(
        fleet, listed_scripts, listed_hosts, past_runs, script):
    roles, connections = fleet
    script = [(writer, step) for chosen, step in script
              for writer in (sorted(set(WRITERS), key=repr) if chosen == EVERYONE else [chosen])]
    with connections[("dba", 0)].cursor() as cursor:
        cursor.execute("SELECT (%s)::text, extract(epoch FROM %s)::text" % (ANCHOR, ANCHOR))
        anchor, anchor_seconds = cursor.fetchone()
    seen = []
    for index in (0, 1):
        prepare(connections[("dba", index)], roles, listed_scripts, listed_hosts, past_runs,
                anchor)
        ends, clocks = [], [("run", decimal.Decimal(anchor_seconds))]
        for number, ((part, set_role), step) in enumerate(script):
            sql, parameters = statement(roles, step, number)
            ends.append(outcome(connections.get((part, index)), sql, parameters,
                                roles.get(set_role, set_role), clocks))
        seen.append((ends, state(connections[("dba", index)], roles)))
    old, new = seen
    for number, (before, after) in enumerate(zip(old[0], new[0])):
        assert same(before, after), (number, script[number], "old:", before, "new:", after)
    assert new[1] == old[1]


def test_the_owner_of_script_run_records_runs_when_another_role_made_the_lists(fleet):
    # Tables made by different roles (an upgrade as the database owner, the
    # next as a superuser): the owner of script_run is an administrator that
    # may not read script_owner or host_login.  Its runs are kept as written.
    roles, connections = fleet
    with connections[("own", 1)].cursor() as cursor:
        cursor.execute("INSERT INTO cronpolicy.script_run (name, host, started_at, spool_id)"
                       " VALUES ('owned-job', 'owned-host', now() - interval '1 day', 'owned')"
                       " RETURNING now() - started_at, db_user")
        assert cursor.fetchone() == (datetime.timedelta(days=1), roles["own"])
        cursor.execute("DELETE FROM cronpolicy.script_run WHERE spool_id = 'owned'")


def roles_sql_of_schema_20():
    """roles.sql as schema 20 had it: today's, with guard_run_owner defined
    in it and attached (it was roles.sql's own until patch 0021)."""
    with open(os.path.join(schema.patch_dir("postgresql"), "roles.sql"), encoding="utf-8") as f:
        text = f.read()
    today = ("DROP TRIGGER IF EXISTS script_run_owner_guard ON cronpolicy.script_run;\n"
             "CREATE TRIGGER script_run_owner_guard BEFORE UPDATE ON cronpolicy.script_run\n"
             "    FOR EACH ROW EXECUTE FUNCTION cronpolicy.guard_run_writer();\n"
             "DROP FUNCTION IF EXISTS cronpolicy.guard_run_owner();\n")
    assert today in text
    tally = "GRANT SELECT ON cronpolicy.run_tally TO cronpolicy_script;\n"     # (schema 22's)
    assert tally in text
    return text.replace(today, OLD_GUARD_RUN_OWNER + ATTACH_OLD_GUARD_RUN_OWNER).replace(
        tally, "")


def test_the_database_owner_upgrades_to_21_a_database_whose_roles_a_superuser_set_up(
        empty_pg_dsn, pg_roles, monkeypatch):
    # docs/dbas.txt: `schema upgrade` as the database owner (or a superuser),
    # roles.sql as a superuser.  Up to schema 20 roles.sql defined
    # guard_run_owner, so the superuser owns it, and patch 0021, run by
    # the database owner, may not replace it ("must be owner of function").
    name = psycopg2.extensions.parse_dsn(empty_pg_dsn)["dbname"]
    owner = footprint.name("dbowner")
    with admin_connection() as admin, admin.cursor() as cursor:
        cursor.execute('CREATE ROLE "%s" LOGIN' % owner)
        cursor.execute('ALTER DATABASE "%s" OWNER TO "%s"' % (name, owner))
    as_owner = psycopg2.extensions.make_dsn(empty_pg_dsn, user=owner)
    try:
        every = schema.patches("postgresql")
        monkeypatch.setattr(schema, "patches",
                            lambda backend: [p for p in every if p[0] <= 20])
        connection = psycopg2.connect(as_owner)
        schema.upgrade_postgres(connection)
        connection.close()
        connection = psycopg2.connect(empty_pg_dsn)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(roles_sql_of_schema_20())
        connection.close()
        monkeypatch.setattr(schema, "patches", lambda backend: every)
        connection = psycopg2.connect(as_owner)
        try:
            assert schema.upgrade_postgres(connection) == [
                filename for version, filename, _ in every if version > 20]
        finally:
            connection.close()
        # The guard is patch 0021's: the owner guard asks no catalog for a
        # login's own run (the old one read pg_tables for every update).
        web1, web2 = (psycopg2.extensions.make_dsn(pg_roles("cronpolicy_script"), dbname=name)
                      for _ in "12")
        assert try_sql(web1, "INSERT INTO cronpolicy.script_run (name, host, spool_id)"
                             " VALUES ('nightly', 'web1', 'web1-run')") == (1, None)
        rowcount, error = try_sql(web2, "UPDATE cronpolicy.script_run SET status = 'failed',"
                                        " finished_at = now() WHERE spool_id = 'web1-run'")
        assert rowcount is None and "may update only its own runs" in error
        assert "pg_tables" not in DBA(empty_pg_dsn).scalar(
            "SELECT prosrc FROM pg_trigger JOIN pg_proc ON pg_proc.oid = tgfoid"
            " WHERE tgrelid = 'cronpolicy.script_run'::regclass"
            " AND tgname = 'script_run_owner_guard'")
    finally:
        with admin_connection() as admin, admin.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                           " WHERE usename = %s", (owner,))
        connection = psycopg2.connect(empty_pg_dsn)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute('REASSIGN OWNED BY "%s" TO CURRENT_USER' % owner)
            cursor.execute('DROP OWNED BY "%s"' % owner)
            cursor.execute('ALTER DATABASE "%s" OWNER TO CURRENT_USER' % name)
        connection.close()
        with admin_connection() as admin, admin.cursor() as cursor:
            cursor.execute('DROP ROLE "%s"' % owner)
