-- cronpolicy schema patch 0009: every stored time and duration is one cronpolicy can use.
--
-- PostgreSQL accepts timestamps of 'infinity' or the year 200000 and
-- intervals of '100000 years'; Python cannot compute with them, and a
-- window that never ends or a run that lasts millennia is a typing error,
-- not a plan.  From this patch on:
--
-- * times are finite and between 1970-01-01 and 9898-12-31 UTC, so that a
--   time plus the longest duration is still a time;
-- * durations (intervals) and seconds (double precision) are at most 100
--   years: interval '100 years', 3155760000 seconds.  NaN and Infinity are
--   refused too.
--
-- Rows written before this patch are brought into range first (times to
-- the nearest bound, durations to the cap, seconds that are not finite to
-- NULL), so every row satisfies the constraints; changes to policies and
-- windows are audited like any other change.

CREATE FUNCTION cronpolicy.time_in_range(moment timestamptz) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT moment BETWEEN '1970-01-01 00:00:00+00'::timestamptz
                      AND '9898-12-31 00:00:00+00'::timestamptz
$$;
COMMENT ON FUNCTION cronpolicy.time_in_range(timestamptz) IS
    'Whether a time is one cronpolicy stores: finite, from 1970-01-01 to 9898-12-31 UTC (NULL for NULL).';

CREATE FUNCTION cronpolicy.seconds_in_range(seconds double precision) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT seconds BETWEEN 0 AND 3155760000     -- NaN sorts above every number
$$;
COMMENT ON FUNCTION cronpolicy.seconds_in_range(double precision) IS
    'Whether a number of seconds is one cronpolicy stores: from 0 to 100 years (3155760000), '
    'not NaN (NULL for NULL).';

CREATE FUNCTION cronpolicy.interval_in_range(span interval) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT cronpolicy.seconds_in_range(extract(epoch FROM span)::double precision)
$$;
COMMENT ON FUNCTION cronpolicy.interval_in_range(interval) IS
    'Whether a duration is one cronpolicy stores: from 0 to interval ''100 years'' (NULL for NULL).';


-- Bring old rows into range (functions of this transaction only).
CREATE FUNCTION pg_temp.clamp(moment timestamptz) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE AS $$
    SELECT least(greatest(moment, '1970-01-01 00:00:00+00'::timestamptz),
                 '9898-12-31 00:00:00+00'::timestamptz)
$$;
CREATE FUNCTION pg_temp.clamp(span interval) RETURNS interval
    LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN extract(epoch FROM span) > 3155760000 THEN interval '100 years' ELSE span END
$$;
CREATE FUNCTION pg_temp.clamp(seconds double precision) RETURNS double precision
    LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN seconds = 'NaN' OR seconds < 0 THEN NULL
                WHEN seconds > 3155760000 THEN 3155760000 ELSE seconds END
$$;

SELECT set_config('cronpolicy.reason', 'schema patch 0009: values brought into range', true);

UPDATE cronpolicy.script_policy
   SET expected_runtime = pg_temp.clamp(expected_runtime),
       expected_interval = pg_temp.clamp(expected_interval),
       changed_at = pg_temp.clamp(changed_at)
 WHERE NOT (coalesce(cronpolicy.interval_in_range(expected_runtime), true)
            AND coalesce(cronpolicy.interval_in_range(expected_interval), true)
            AND cronpolicy.time_in_range(changed_at));

UPDATE cronpolicy.deploy_state SET changed_at = pg_temp.clamp(changed_at)
 WHERE NOT cronpolicy.time_in_range(changed_at);

UPDATE cronpolicy.rollout_window
   SET starts_at = least(pg_temp.clamp(starts_at), '9898-12-30 23:59:59+00'::timestamptz),
       ends_at = greatest(pg_temp.clamp(ends_at),
                          least(pg_temp.clamp(starts_at), '9898-12-30 23:59:59+00'::timestamptz)
                          + interval '1 second'),
       created_at = pg_temp.clamp(created_at),
       cancelled_at = pg_temp.clamp(cancelled_at)
 WHERE NOT (cronpolicy.time_in_range(starts_at) AND cronpolicy.time_in_range(ends_at)
            AND cronpolicy.time_in_range(created_at)
            AND coalesce(cronpolicy.time_in_range(cancelled_at), true));

UPDATE cronpolicy.script_run
   SET started_at = pg_temp.clamp(started_at),
       finished_at = greatest(pg_temp.clamp(finished_at), pg_temp.clamp(started_at)),
       heartbeat_at = pg_temp.clamp(heartbeat_at),
       lease_expires_at = pg_temp.clamp(lease_expires_at),
       estimate_seconds = pg_temp.clamp(estimate_seconds),
       expected_interval = pg_temp.clamp(expected_interval)
 WHERE NOT (cronpolicy.time_in_range(started_at)
            AND coalesce(cronpolicy.time_in_range(finished_at), true)
            AND coalesce(cronpolicy.time_in_range(heartbeat_at), true)
            AND coalesce(cronpolicy.time_in_range(lease_expires_at), true)
            AND coalesce(cronpolicy.seconds_in_range(estimate_seconds), true)
            AND coalesce(cronpolicy.seconds_in_range(expected_interval), true));

UPDATE cronpolicy.run_slot SET lease_expires_at = pg_temp.clamp(lease_expires_at)
 WHERE NOT cronpolicy.time_in_range(lease_expires_at);

UPDATE cronpolicy.drain
   SET started_at = pg_temp.clamp(started_at),
       finished_at = greatest(pg_temp.clamp(finished_at), pg_temp.clamp(started_at)),
       longest_blocker_seconds = pg_temp.clamp(longest_blocker_seconds)
 WHERE NOT (cronpolicy.time_in_range(started_at) AND cronpolicy.time_in_range(finished_at)
            AND coalesce(cronpolicy.seconds_in_range(longest_blocker_seconds), true));

SELECT set_config('cronpolicy.reason', '', true);


-- The constraints.  A NULL passes a CHECK, so optional columns may stay NULL.
ALTER TABLE cronpolicy.script_policy ADD CONSTRAINT script_policy_values_in_range CHECK (
    cronpolicy.interval_in_range(expected_runtime) AND cronpolicy.interval_in_range(expected_interval)
    AND cronpolicy.time_in_range(changed_at));
COMMENT ON CONSTRAINT script_policy_values_in_range ON cronpolicy.script_policy IS
    'Durations at most 100 years; changed_at between 1970 and 9898.';

ALTER TABLE cronpolicy.deploy_state ADD CONSTRAINT deploy_state_values_in_range CHECK (
    cronpolicy.time_in_range(changed_at));
COMMENT ON CONSTRAINT deploy_state_values_in_range ON cronpolicy.deploy_state IS
    'changed_at between 1970 and 9898.';

ALTER TABLE cronpolicy.rollout_window ADD CONSTRAINT rollout_window_values_in_range CHECK (
    cronpolicy.time_in_range(starts_at) AND cronpolicy.time_in_range(ends_at)
    AND cronpolicy.time_in_range(created_at) AND cronpolicy.time_in_range(cancelled_at));
COMMENT ON CONSTRAINT rollout_window_values_in_range ON cronpolicy.rollout_window IS
    'Every time finite, between 1970 and 9898 (a window "until further notice" is a long one, '
    'or deploy_pending).';

ALTER TABLE cronpolicy.script_run ADD CONSTRAINT script_run_values_in_range CHECK (
    cronpolicy.time_in_range(started_at) AND cronpolicy.time_in_range(finished_at)
    AND cronpolicy.time_in_range(heartbeat_at) AND cronpolicy.time_in_range(lease_expires_at)
    AND cronpolicy.seconds_in_range(estimate_seconds)
    AND cronpolicy.seconds_in_range(expected_interval));
COMMENT ON CONSTRAINT script_run_values_in_range ON cronpolicy.script_run IS
    'Times between 1970 and 9898; seconds from 0 to 100 years.';

ALTER TABLE cronpolicy.run_slot ADD CONSTRAINT run_slot_values_in_range CHECK (
    cronpolicy.time_in_range(lease_expires_at));
COMMENT ON CONSTRAINT run_slot_values_in_range ON cronpolicy.run_slot IS
    'lease_expires_at between 1970 and 9898.';

ALTER TABLE cronpolicy.drain ADD CONSTRAINT drain_values_in_range CHECK (
    cronpolicy.time_in_range(started_at) AND cronpolicy.time_in_range(finished_at)
    AND cronpolicy.seconds_in_range(longest_blocker_seconds));
COMMENT ON CONSTRAINT drain_values_in_range ON cronpolicy.drain IS
    'Times between 1970 and 9898; seconds from 0 to 100 years.';

-- roles.sql revokes every function from PUBLIC; these are harmless, and
-- every role's writes evaluate them.
GRANT EXECUTE ON FUNCTION cronpolicy.time_in_range(timestamptz),
                          cronpolicy.seconds_in_range(double precision),
                          cronpolicy.interval_in_range(interval) TO PUBLIC;
