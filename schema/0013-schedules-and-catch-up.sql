-- cronpolicy schema patch 0013: when each job runs, and catching up runs a rollout skipped.
--
-- A schedule is a cron expression: five fields (minute hour day-of-month
-- month day-of-week, as Debian's cron reads them) or @hourly, @daily,
-- @midnight, @weekly, @monthly, @yearly, @annually; in a time zone
-- (CRON_TZ semantics: an IANA name such as 'Europe/London'; NULL is UTC).
-- It comes from, most authoritative first:
--
-- * script_policy.schedule: a DBA's, for the scripts and hosts the row matches;
-- * script_schedule: registered for one host from its crontab
--   (`cronpolicy schedule import`, `crontab wrap --register`);
-- * script_run.schedule: what the script declared (CronScript.schedule),
--   recorded with each run.
--
-- The first two are checked here when written (cronpolicy.schedule_problem);
-- a run's declaration is checked by the script itself before it is written.
--
-- script_policy.catch_up: 'once' means a run skipped because of deploy
-- pending or a rollout window runs once as soon as the block ends, on the
-- host where it was skipped (`cronpolicy catch-up`); NULL or 'none': not.
-- script_run.block names that block for each such skip ('deploy:' and the
-- time deploy pending was set, or 'window:' and the window's id), and for
-- the catch-up run (decision 'catch-up'), the block it catches up.
--
-- Applying it again changes nothing (IF NOT EXISTS, OR REPLACE).

CREATE OR REPLACE FUNCTION cronpolicy.cron_field_values(field text, low integer, high integer,
                                             names text[]) RETURNS integer[]
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog AS $$
-- The values one field of a cron expression selects, or NULL when it is not
-- one cron reads: *, N, N-M, each with an optional /STEP; lists with commas;
-- names (JAN..DEC, SUN..SAT) where names is given.  As cronsim reads them
-- (the library cronpolicy iterates schedules with): N/STEP runs from N to
-- the field's end.
DECLARE
    item text;
    parts text[];
    first_value integer;
    last_value integer;
    step integer;
    result integer[] := '{}';
    candidates integer[];
BEGIN
    IF field IS NULL OR field = '' THEN
        RETURN NULL;
    END IF;
    FOREACH item IN ARRAY string_to_array(upper(field), ',') LOOP
        parts := regexp_match(item, '^(\*|[0-9A-Z]+)(?:-([0-9A-Z]+))?(?:/([0-9]+))?$');
        IF parts IS NULL OR (parts[1] = '*' AND parts[2] IS NOT NULL) THEN
            RETURN NULL;
        END IF;
        -- (Numbers are capped before the cast: 99999999999 is no error, just out of range.)
        step := least(coalesce(parts[3]::numeric, 1), 1000000)::integer;
        IF step < 1 THEN
            RETURN NULL;
        END IF;
        IF parts[1] = '*' THEN
            first_value := low;
            last_value := high;
        ELSE
            first_value := CASE WHEN parts[1] ~ '^[0-9]+$'
                                THEN least(parts[1]::numeric, 1000000)::integer
                                ELSE array_position(names, parts[1]) - 1 + low END;
            IF parts[2] IS NOT NULL THEN
                last_value := CASE WHEN parts[2] ~ '^[0-9]+$'
                                   THEN least(parts[2]::numeric, 1000000)::integer
                                   ELSE array_position(names, parts[2]) - 1 + low END;
            ELSIF parts[3] IS NOT NULL THEN
                last_value := high;
            ELSE
                last_value := first_value;
            END IF;
        END IF;
        IF first_value IS NULL OR last_value IS NULL OR first_value < low OR last_value > high
           OR first_value > last_value THEN
            RETURN NULL;
        END IF;
        SELECT array_agg(value) INTO candidates
          FROM generate_series(first_value, last_value, step) AS value;
        result := result || candidates;
    END LOOP;
    RETURN result;
END
$$;
COMMENT ON FUNCTION cronpolicy.cron_field_values(text, integer, integer, text[]) IS
    'The values one field of a cron expression selects, or NULL when cron would not read it.';

CREATE OR REPLACE FUNCTION cronpolicy.schedule_problem(expression text, time_zone text) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog AS $$
-- Why a schedule (expression in time_zone) is not one cronpolicy can use,
-- or NULL when it is (or when expression is NULL).  The same rules as
-- cronpolicy/schedule.py: printable ASCII, five fields split on blanks and
-- tabs (as cron splits them) or a keyword, the time zone an IANA name.
DECLARE
    trimmed text := regexp_replace(expression, '^[ \t]+|[ \t]+$', '', 'g');
    fields text[];
    days integer[];
    months integer[];
    month_lengths integer[] := '{31,29,31,30,31,30,31,31,30,31,30,31}';
    longest integer;
BEGIN
    IF time_zone IS NOT NULL AND time_zone NOT IN ('', 'UTC', 'Etc/UTC') THEN
        IF length(time_zone) > 64
           OR time_zone !~ '^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z][A-Za-z0-9_+-]*)*$'
           OR time_zone LIKE 'right/%' OR time_zone LIKE 'posix/%' THEN
            RETURN format('unknown time zone %L (an IANA name such as Europe/London)',
                          time_zone);
        END IF;
        BEGIN
            PERFORM now() AT TIME ZONE time_zone;
        EXCEPTION WHEN invalid_parameter_value THEN
            RETURN format('unknown time zone %L (an IANA name such as Europe/London)',
                          time_zone);
        END;
    END IF;
    IF expression IS NULL THEN
        RETURN NULL;
    END IF;
    IF length(expression) > 200 THEN
        RETURN format('schedule is %s characters long; at most 200', length(expression));
    END IF;
    IF expression ~ '[^ -~\t]' THEN
        RETURN format('schedule %L holds a character cron does not read there (printable '
                      'ASCII only)', left(expression, 60));
    END IF;
    IF trimmed ~ '^@' THEN
        IF lower(trimmed) IN ('@yearly', '@annually', '@monthly', '@weekly', '@daily',
                                        '@midnight', '@hourly') THEN
            RETURN NULL;
        END IF;
        RETURN format('%L is not a schedule (@hourly, @daily, @midnight, @weekly, @monthly, '
                      '@yearly or @annually)', trimmed);
    END IF;
    fields := regexp_split_to_array(trimmed, '[ \t]+');
    IF array_length(fields, 1) IS DISTINCT FROM 5 THEN
        RETURN format('schedule %L has %s fields; a cron schedule has five (minute hour '
                      'day-of-month month day-of-week)', trimmed,
                      coalesce(array_length(fields, 1), 0));
    END IF;
    days := cronpolicy.cron_field_values(fields[3], 1, 31, NULL);
    months := cronpolicy.cron_field_values(fields[4], 1, 12,
        '{JAN,FEB,MAR,APR,MAY,JUN,JUL,AUG,SEP,OCT,NOV,DEC}');
    IF cronpolicy.cron_field_values(fields[1], 0, 59, NULL) IS NULL
       OR cronpolicy.cron_field_values(fields[2], 0, 23, NULL) IS NULL
       OR days IS NULL OR months IS NULL
       OR cronpolicy.cron_field_values(fields[5], 0, 7, '{SUN,MON,TUE,WED,THU,FRI,SAT}') IS NULL THEN
        RETURN format('schedule %L is not one cron reads', trimmed);
    END IF;
    -- A day no selected month has (31 February), when both day fields must match.
    IF fields[3] LIKE '*%' OR fields[5] LIKE '*%' THEN
        SELECT max(month_lengths[month]) INTO longest FROM unnest(months) AS month;
        IF (SELECT min(day) FROM unnest(days) AS day) > longest THEN
            RETURN format('schedule %L names a day none of its months has', trimmed);
        END IF;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION cronpolicy.schedule_problem(text, text) IS
    'Why a cron schedule in a time zone is not one cronpolicy can use, or NULL when it is.';

CREATE OR REPLACE FUNCTION cronpolicy.check_schedule() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    problem text := cronpolicy.schedule_problem(NEW.schedule, NEW.schedule_tz);
BEGIN
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION '%', problem USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION cronpolicy.check_schedule() IS
    'Refuses a row whose schedule or schedule_tz is not one cronpolicy can use.';


-- Policies: a DBA's schedule, and catching up.
ALTER TABLE cronpolicy.script_policy
    ADD COLUMN IF NOT EXISTS schedule text,
    ADD COLUMN IF NOT EXISTS schedule_tz text,
    ADD COLUMN IF NOT EXISTS catch_up text CONSTRAINT script_policy_catch_up_known
        CHECK (catch_up IN ('none', 'once'));
COMMENT ON COLUMN cronpolicy.script_policy.schedule IS
    'When the matching scripts run: a cron expression (five fields, or @hourly, @daily...); '
    'NULL: no opinion (the host''s crontab or the script says).';
COMMENT ON COLUMN cronpolicy.script_policy.schedule_tz IS
    'The time zone of schedule (CRON_TZ): an IANA name such as Europe/London; NULL: UTC.';
COMMENT ON COLUMN cronpolicy.script_policy.catch_up IS
    '''once'': a run skipped by deploy pending or a rollout window runs once when the block '
    'ends, on the host where it was skipped (cronpolicy catch-up); ''none'' or NULL: it does not.';
DROP TRIGGER IF EXISTS script_policy_schedule_check ON cronpolicy.script_policy;
CREATE TRIGGER script_policy_schedule_check
    BEFORE INSERT OR UPDATE OF schedule, schedule_tz ON cronpolicy.script_policy
    FOR EACH ROW EXECUTE FUNCTION cronpolicy.check_schedule();
COMMENT ON TRIGGER script_policy_schedule_check ON cronpolicy.script_policy IS
    'Refuses a schedule cronpolicy cannot read (cronpolicy.schedule_problem).';


-- Runs: what the script declared, and the block behind a skip.
ALTER TABLE cronpolicy.script_run
    ADD COLUMN IF NOT EXISTS schedule text,
    ADD COLUMN IF NOT EXISTS schedule_tz text,
    ADD COLUMN IF NOT EXISTS block text;
COMMENT ON COLUMN cronpolicy.script_run.schedule IS
    'The schedule the script declared when it started (CronScript.schedule), if any.';
COMMENT ON COLUMN cronpolicy.script_run.schedule_tz IS
    'The time zone of that schedule; NULL: UTC.';
COMMENT ON COLUMN cronpolicy.script_run.block IS
    'For a skip by deploy pending or a window, and for a catch-up run: the block '
    '(deploy:<when deploy pending was set> or window:<id>).';
-- The latest declaration of each script on each host, without reading its whole history.
CREATE INDEX IF NOT EXISTS script_run_declared_schedule_idx
    ON cronpolicy.script_run (name, host, started_at DESC) WHERE schedule IS NOT NULL;
-- Recent skips by rollouts (starvation, missed starts).
CREATE INDEX IF NOT EXISTS script_run_block_idx ON cronpolicy.script_run (name, started_at DESC)
    WHERE block IS NOT NULL;


-- Schedules registered for a host from its crontab.
CREATE TABLE IF NOT EXISTS cronpolicy.script_schedule (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    host text NOT NULL,
    schedule text NOT NULL,
    schedule_tz text,
    origin text NOT NULL DEFAULT '',
    registered_at timestamptz NOT NULL DEFAULT now(),
    registered_by text NOT NULL DEFAULT session_user,
    CONSTRAINT script_schedule_one_per_host UNIQUE (name, host),
    CONSTRAINT script_schedule_values_in_range CHECK (cronpolicy.time_in_range(registered_at))
);
COMMENT ON TABLE cronpolicy.script_schedule IS
    'When each script runs on each host, as its crontab says: registered by cronpolicy '
    'schedule import (or crontab wrap --register) on that host.  A policy row''s schedule wins.';
COMMENT ON COLUMN cronpolicy.script_schedule.id IS 'Row id.';
COMMENT ON COLUMN cronpolicy.script_schedule.name IS 'The script (job) name, as wrap names it.';
COMMENT ON COLUMN cronpolicy.script_schedule.host IS 'The host whose crontab holds the job.';
COMMENT ON COLUMN cronpolicy.script_schedule.schedule IS
    'The cron expression of the crontab line (five fields or @keyword).';
COMMENT ON COLUMN cronpolicy.script_schedule.schedule_tz IS
    'The time zone cron reads it in: CRON_TZ, else the host''s own; NULL: UTC.';
COMMENT ON COLUMN cronpolicy.script_schedule.origin IS 'The crontab file and line it came from.';
COMMENT ON COLUMN cronpolicy.script_schedule.registered_at IS 'When it was last registered.';
COMMENT ON COLUMN cronpolicy.script_schedule.registered_by IS
    'The database login that registered it (set by the database for non-administrators).';

CREATE OR REPLACE FUNCTION cronpolicy.guard_schedule_writer() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT cronpolicy.is_administrator(current_user) THEN
        PERFORM cronpolicy.claim_script(NEW.name);
        NEW.registered_by := session_user;
        NEW.registered_at := now();
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION cronpolicy.guard_schedule_writer() IS
    'Schedules of a script are registered only by logins that may record its runs '
    '(script_owner), with the login and the time set by the database.';
DROP TRIGGER IF EXISTS script_schedule_writer ON cronpolicy.script_schedule;
CREATE TRIGGER script_schedule_writer BEFORE INSERT OR UPDATE ON cronpolicy.script_schedule
    FOR EACH ROW EXECUTE FUNCTION cronpolicy.guard_schedule_writer();
DROP TRIGGER IF EXISTS script_schedule_check ON cronpolicy.script_schedule;
CREATE TRIGGER script_schedule_check BEFORE INSERT OR UPDATE ON cronpolicy.script_schedule
    FOR EACH ROW EXECUTE FUNCTION cronpolicy.check_schedule();
COMMENT ON TRIGGER script_schedule_check ON cronpolicy.script_schedule IS
    'Refuses a schedule cronpolicy cannot read (cronpolicy.schedule_problem).';


-- Databases whose roles were set up before this patch: the rights roles.sql gives.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_script') THEN
        GRANT SELECT ON cronpolicy.script_schedule TO cronpolicy_script;
        GRANT UPDATE (block) ON cronpolicy.script_run TO cronpolicy_script;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cronpolicy_admin') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON cronpolicy.script_schedule TO cronpolicy_admin;
    END IF;
END
$$;
GRANT EXECUTE ON FUNCTION cronpolicy.schedule_problem(text, text),
                          cronpolicy.cron_field_values(text, integer, integer, text[]) TO PUBLIC;
