-- cronpolicy schema patch 0009 for the embedded SQLite backend: see
-- ../0009-values-in-range.sql.  SQLite stores whatever it is given (text
-- in a number column, 'tomorrow' or 'infinity' as a time), so besides the
-- ranges these triggers check types:
--
-- * times are UTC text that SQLite's date functions read, starting with
--   the date ('YYYY-MM-DD', 'YYYY-MM-DD HH:MM[:SS[.SSS]]', optionally with
--   'T', 'Z' or an offset), from 1970-01-01 to 9898-12-31;
--   strftime('%Y-%m-%d %H:%M:%f', 'now', '+1 day') writes one;
-- * durations and seconds are numbers from 0 to 3155760000 (100 years);
--   SQLite has no interval type: write 1200, not '20 minutes';
-- * integer columns hold integers.
--
-- ALTER TABLE cannot add a CHECK constraint in SQLite, so BEFORE INSERT
-- and BEFORE UPDATE triggers named <table>_values_in_range_* refuse a row
-- that breaks these rules, with a message naming the constraint.  Rows
-- written before this patch are brought into range first (unreadable or
-- too early times to 1970-01-01, too late or 'infinity' to 9898-12-31,
-- durations to the cap, unreadable numbers to NULL).

UPDATE cronpolicy.script_policy
   SET changed_at = CASE WHEN (changed_at IS NULL OR (typeof(changed_at) = 'text' AND changed_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(changed_at, 1, 10), '+0 days') IS substr(changed_at, 1, 10) AND coalesce(julianday(changed_at) BETWEEN 2440587.5 AND 5336594.5, 0))) THEN changed_at WHEN lower(trim(changed_at)) IN ('infinity', '+infinity') OR changed_at GLOB '[0-9][0-9][0-9][0-9][0-9]*' OR julianday(changed_at) > 5336594.5 THEN '9898-12-31 00:00:00.000' ELSE '1970-01-01 00:00:00.000' END,
       expected_runtime = CASE WHEN (expected_runtime IS NULL OR (typeof(expected_runtime) IN ('integer', 'real') AND expected_runtime BETWEEN 0 AND 3155760000)) THEN expected_runtime WHEN typeof(expected_runtime) IN ('integer', 'real') AND expected_runtime > 3155760000 THEN 3155760000 ELSE NULL END,
       expected_interval = CASE WHEN (expected_interval IS NULL OR (typeof(expected_interval) IN ('integer', 'real') AND expected_interval BETWEEN 0 AND 3155760000)) THEN expected_interval WHEN typeof(expected_interval) IN ('integer', 'real') AND expected_interval > 3155760000 THEN 3155760000 ELSE NULL END,
       max_concurrent = CASE WHEN (max_concurrent IS NULL OR typeof(max_concurrent) = 'integer') THEN max_concurrent ELSE NULL END
 WHERE NOT ((changed_at IS NULL OR (typeof(changed_at) = 'text' AND changed_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(changed_at, 1, 10), '+0 days') IS substr(changed_at, 1, 10) AND coalesce(julianday(changed_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (expected_runtime IS NULL OR (typeof(expected_runtime) IN ('integer', 'real') AND expected_runtime BETWEEN 0 AND 3155760000))
        AND (expected_interval IS NULL OR (typeof(expected_interval) IN ('integer', 'real') AND expected_interval BETWEEN 0 AND 3155760000))
        AND (max_concurrent IS NULL OR typeof(max_concurrent) = 'integer'));

UPDATE cronpolicy.deploy_state
   SET changed_at = CASE WHEN (changed_at IS NULL OR (typeof(changed_at) = 'text' AND changed_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(changed_at, 1, 10), '+0 days') IS substr(changed_at, 1, 10) AND coalesce(julianday(changed_at) BETWEEN 2440587.5 AND 5336594.5, 0))) THEN changed_at WHEN lower(trim(changed_at)) IN ('infinity', '+infinity') OR changed_at GLOB '[0-9][0-9][0-9][0-9][0-9]*' OR julianday(changed_at) > 5336594.5 THEN '9898-12-31 00:00:00.000' ELSE '1970-01-01 00:00:00.000' END
 WHERE NOT ((changed_at IS NULL OR (typeof(changed_at) = 'text' AND changed_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(changed_at, 1, 10), '+0 days') IS substr(changed_at, 1, 10) AND coalesce(julianday(changed_at) BETWEEN 2440587.5 AND 5336594.5, 0))));

UPDATE cronpolicy.rollout_window
   SET starts_at = min(CASE WHEN (starts_at IS NULL OR (typeof(starts_at) = 'text' AND starts_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(starts_at, 1, 10), '+0 days') IS substr(starts_at, 1, 10) AND coalesce(julianday(starts_at) BETWEEN 2440587.5 AND 5336594.5, 0))) THEN starts_at WHEN lower(trim(starts_at)) IN ('infinity', '+infinity') OR starts_at GLOB '[0-9][0-9][0-9][0-9][0-9]*' OR julianday(starts_at) > 5336594.5 THEN '9898-12-31 00:00:00.000' ELSE '1970-01-01 00:00:00.000' END, '9898-12-30 23:59:59.000'),
       ends_at = max(CASE WHEN (ends_at IS NULL OR (typeof(ends_at) = 'text' AND ends_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(ends_at, 1, 10), '+0 days') IS substr(ends_at, 1, 10) AND coalesce(julianday(ends_at) BETWEEN 2440587.5 AND 5336594.5, 0))) THEN ends_at WHEN lower(trim(ends_at)) IN ('infinity', '+infinity') OR ends_at GLOB '[0-9][0-9][0-9][0-9][0-9]*' OR julianday(ends_at) > 5336594.5 THEN '9898-12-31 00:00:00.000' ELSE '1970-01-01 00:00:00.000' END, strftime('%Y-%m-%d %H:%M:%f', min(CASE WHEN (starts_at IS NULL OR (typeof(starts_at) = 'text' AND starts_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(starts_at, 1, 10), '+0 days') IS substr(starts_at, 1, 10) AND coalesce(julianday(starts_at) BETWEEN 2440587.5 AND 5336594.5, 0))) THEN starts_at WHEN lower(trim(starts_at)) IN ('infinity', '+infinity') OR starts_at GLOB '[0-9][0-9][0-9][0-9][0-9]*' OR julianday(starts_at) > 5336594.5 THEN '9898-12-31 00:00:00.000' ELSE '1970-01-01 00:00:00.000' END, '9898-12-30 23:59:59.000'), '+1 second')),
       created_at = CASE WHEN (created_at IS NULL OR (typeof(created_at) = 'text' AND created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(created_at, 1, 10), '+0 days') IS substr(created_at, 1, 10) AND coalesce(julianday(created_at) BETWEEN 2440587.5 AND 5336594.5, 0))) THEN created_at WHEN lower(trim(created_at)) IN ('infinity', '+infinity') OR created_at GLOB '[0-9][0-9][0-9][0-9][0-9]*' OR julianday(created_at) > 5336594.5 THEN '9898-12-31 00:00:00.000' ELSE '1970-01-01 00:00:00.000' END,
       cancelled_at = CASE WHEN (cancelled_at IS NULL OR (typeof(cancelled_at) = 'text' AND cancelled_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(cancelled_at, 1, 10), '+0 days') IS substr(cancelled_at, 1, 10) AND coalesce(julianday(cancelled_at) BETWEEN 2440587.5 AND 5336594.5, 0))) THEN cancelled_at WHEN lower(trim(cancelled_at)) IN ('infinity', '+infinity') OR cancelled_at GLOB '[0-9][0-9][0-9][0-9][0-9]*' OR julianday(cancelled_at) > 5336594.5 THEN '9898-12-31 00:00:00.000' ELSE '1970-01-01 00:00:00.000' END
 WHERE NOT ((starts_at IS NULL OR (typeof(starts_at) = 'text' AND starts_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(starts_at, 1, 10), '+0 days') IS substr(starts_at, 1, 10) AND coalesce(julianday(starts_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (ends_at IS NULL OR (typeof(ends_at) = 'text' AND ends_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(ends_at, 1, 10), '+0 days') IS substr(ends_at, 1, 10) AND coalesce(julianday(ends_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (created_at IS NULL OR (typeof(created_at) = 'text' AND created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(created_at, 1, 10), '+0 days') IS substr(created_at, 1, 10) AND coalesce(julianday(created_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (cancelled_at IS NULL OR (typeof(cancelled_at) = 'text' AND cancelled_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(cancelled_at, 1, 10), '+0 days') IS substr(cancelled_at, 1, 10) AND coalesce(julianday(cancelled_at) BETWEEN 2440587.5 AND 5336594.5, 0))));

UPDATE cronpolicy.script_run
   SET started_at = CASE WHEN (started_at IS NULL OR (typeof(started_at) = 'text' AND started_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(started_at, 1, 10), '+0 days') IS substr(started_at, 1, 10) AND coalesce(julianday(started_at) BETWEEN 2440587.5 AND 5336594.5, 0))) THEN started_at WHEN lower(trim(started_at)) IN ('infinity', '+infinity') OR started_at GLOB '[0-9][0-9][0-9][0-9][0-9]*' OR julianday(started_at) > 5336594.5 THEN '9898-12-31 00:00:00.000' ELSE '1970-01-01 00:00:00.000' END,
       finished_at = CASE WHEN finished_at IS NULL THEN NULL ELSE max(CASE WHEN (finished_at IS NULL OR (typeof(finished_at) = 'text' AND finished_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(finished_at, 1, 10), '+0 days') IS substr(finished_at, 1, 10) AND coalesce(julianday(finished_at) BETWEEN 2440587.5 AND 5336594.5, 0))) THEN finished_at WHEN lower(trim(finished_at)) IN ('infinity', '+infinity') OR finished_at GLOB '[0-9][0-9][0-9][0-9][0-9]*' OR julianday(finished_at) > 5336594.5 THEN '9898-12-31 00:00:00.000' ELSE '1970-01-01 00:00:00.000' END, CASE WHEN (started_at IS NULL OR (typeof(started_at) = 'text' AND started_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(started_at, 1, 10), '+0 days') IS substr(started_at, 1, 10) AND coalesce(julianday(started_at) BETWEEN 2440587.5 AND 5336594.5, 0))) THEN started_at WHEN lower(trim(started_at)) IN ('infinity', '+infinity') OR started_at GLOB '[0-9][0-9][0-9][0-9][0-9]*' OR julianday(started_at) > 5336594.5 THEN '9898-12-31 00:00:00.000' ELSE '1970-01-01 00:00:00.000' END) END,
       heartbeat_at = CASE WHEN (heartbeat_at IS NULL OR (typeof(heartbeat_at) = 'text' AND heartbeat_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(heartbeat_at, 1, 10), '+0 days') IS substr(heartbeat_at, 1, 10) AND coalesce(julianday(heartbeat_at) BETWEEN 2440587.5 AND 5336594.5, 0))) THEN heartbeat_at WHEN lower(trim(heartbeat_at)) IN ('infinity', '+infinity') OR heartbeat_at GLOB '[0-9][0-9][0-9][0-9][0-9]*' OR julianday(heartbeat_at) > 5336594.5 THEN '9898-12-31 00:00:00.000' ELSE '1970-01-01 00:00:00.000' END,
       lease_expires_at = CASE WHEN (lease_expires_at IS NULL OR (typeof(lease_expires_at) = 'text' AND lease_expires_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(lease_expires_at, 1, 10), '+0 days') IS substr(lease_expires_at, 1, 10) AND coalesce(julianday(lease_expires_at) BETWEEN 2440587.5 AND 5336594.5, 0))) THEN lease_expires_at WHEN lower(trim(lease_expires_at)) IN ('infinity', '+infinity') OR lease_expires_at GLOB '[0-9][0-9][0-9][0-9][0-9]*' OR julianday(lease_expires_at) > 5336594.5 THEN '9898-12-31 00:00:00.000' ELSE '1970-01-01 00:00:00.000' END,
       estimate_seconds = CASE WHEN (estimate_seconds IS NULL OR (typeof(estimate_seconds) IN ('integer', 'real') AND estimate_seconds BETWEEN 0 AND 3155760000)) THEN estimate_seconds WHEN typeof(estimate_seconds) IN ('integer', 'real') AND estimate_seconds > 3155760000 THEN 3155760000 ELSE NULL END,
       expected_interval = CASE WHEN (expected_interval IS NULL OR (typeof(expected_interval) IN ('integer', 'real') AND expected_interval BETWEEN 0 AND 3155760000)) THEN expected_interval WHEN typeof(expected_interval) IN ('integer', 'real') AND expected_interval > 3155760000 THEN 3155760000 ELSE NULL END,
       pid = CASE WHEN (pid IS NULL OR typeof(pid) = 'integer') THEN pid ELSE NULL END,
       exit_code = CASE WHEN (exit_code IS NULL OR typeof(exit_code) = 'integer') THEN exit_code ELSE NULL END,
       policy_id = CASE WHEN (policy_id IS NULL OR typeof(policy_id) = 'integer') THEN policy_id ELSE NULL END,
       window_id = CASE WHEN (window_id IS NULL OR typeof(window_id) = 'integer') THEN window_id ELSE NULL END,
       stop_policy_id = CASE WHEN (stop_policy_id IS NULL OR typeof(stop_policy_id) = 'integer') THEN stop_policy_id ELSE NULL END,
       stop_window_id = CASE WHEN (stop_window_id IS NULL OR typeof(stop_window_id) = 'integer') THEN stop_window_id ELSE NULL END
 WHERE NOT ((started_at IS NULL OR (typeof(started_at) = 'text' AND started_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(started_at, 1, 10), '+0 days') IS substr(started_at, 1, 10) AND coalesce(julianday(started_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (finished_at IS NULL OR (typeof(finished_at) = 'text' AND finished_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(finished_at, 1, 10), '+0 days') IS substr(finished_at, 1, 10) AND coalesce(julianday(finished_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (heartbeat_at IS NULL OR (typeof(heartbeat_at) = 'text' AND heartbeat_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(heartbeat_at, 1, 10), '+0 days') IS substr(heartbeat_at, 1, 10) AND coalesce(julianday(heartbeat_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (lease_expires_at IS NULL OR (typeof(lease_expires_at) = 'text' AND lease_expires_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(lease_expires_at, 1, 10), '+0 days') IS substr(lease_expires_at, 1, 10) AND coalesce(julianday(lease_expires_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (estimate_seconds IS NULL OR (typeof(estimate_seconds) IN ('integer', 'real') AND estimate_seconds BETWEEN 0 AND 3155760000))
        AND (expected_interval IS NULL OR (typeof(expected_interval) IN ('integer', 'real') AND expected_interval BETWEEN 0 AND 3155760000))
        AND (pid IS NULL OR typeof(pid) = 'integer')
        AND (exit_code IS NULL OR typeof(exit_code) = 'integer')
        AND (policy_id IS NULL OR typeof(policy_id) = 'integer')
        AND (window_id IS NULL OR typeof(window_id) = 'integer')
        AND (stop_policy_id IS NULL OR typeof(stop_policy_id) = 'integer')
        AND (stop_window_id IS NULL OR typeof(stop_window_id) = 'integer'));

DELETE FROM cronpolicy.run_slot WHERE NOT (slot IS NULL OR typeof(slot) = 'integer');

UPDATE cronpolicy.run_slot
   SET lease_expires_at = CASE WHEN (lease_expires_at IS NULL OR (typeof(lease_expires_at) = 'text' AND lease_expires_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(lease_expires_at, 1, 10), '+0 days') IS substr(lease_expires_at, 1, 10) AND coalesce(julianday(lease_expires_at) BETWEEN 2440587.5 AND 5336594.5, 0))) THEN lease_expires_at WHEN lower(trim(lease_expires_at)) IN ('infinity', '+infinity') OR lease_expires_at GLOB '[0-9][0-9][0-9][0-9][0-9]*' OR julianday(lease_expires_at) > 5336594.5 THEN '9898-12-31 00:00:00.000' ELSE '1970-01-01 00:00:00.000' END
 WHERE NOT ((lease_expires_at IS NULL OR (typeof(lease_expires_at) = 'text' AND lease_expires_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(lease_expires_at, 1, 10), '+0 days') IS substr(lease_expires_at, 1, 10) AND coalesce(julianday(lease_expires_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (slot IS NULL OR typeof(slot) = 'integer'));

UPDATE cronpolicy.drain
   SET started_at = CASE WHEN (started_at IS NULL OR (typeof(started_at) = 'text' AND started_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(started_at, 1, 10), '+0 days') IS substr(started_at, 1, 10) AND coalesce(julianday(started_at) BETWEEN 2440587.5 AND 5336594.5, 0))) THEN started_at WHEN lower(trim(started_at)) IN ('infinity', '+infinity') OR started_at GLOB '[0-9][0-9][0-9][0-9][0-9]*' OR julianday(started_at) > 5336594.5 THEN '9898-12-31 00:00:00.000' ELSE '1970-01-01 00:00:00.000' END,
       finished_at = max(CASE WHEN (finished_at IS NULL OR (typeof(finished_at) = 'text' AND finished_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(finished_at, 1, 10), '+0 days') IS substr(finished_at, 1, 10) AND coalesce(julianday(finished_at) BETWEEN 2440587.5 AND 5336594.5, 0))) THEN finished_at WHEN lower(trim(finished_at)) IN ('infinity', '+infinity') OR finished_at GLOB '[0-9][0-9][0-9][0-9][0-9]*' OR julianday(finished_at) > 5336594.5 THEN '9898-12-31 00:00:00.000' ELSE '1970-01-01 00:00:00.000' END, CASE WHEN (started_at IS NULL OR (typeof(started_at) = 'text' AND started_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(started_at, 1, 10), '+0 days') IS substr(started_at, 1, 10) AND coalesce(julianday(started_at) BETWEEN 2440587.5 AND 5336594.5, 0))) THEN started_at WHEN lower(trim(started_at)) IN ('infinity', '+infinity') OR started_at GLOB '[0-9][0-9][0-9][0-9][0-9]*' OR julianday(started_at) > 5336594.5 THEN '9898-12-31 00:00:00.000' ELSE '1970-01-01 00:00:00.000' END),
       longest_blocker_seconds = CASE WHEN (longest_blocker_seconds IS NULL OR (typeof(longest_blocker_seconds) IN ('integer', 'real') AND longest_blocker_seconds BETWEEN 0 AND 3155760000)) THEN longest_blocker_seconds WHEN typeof(longest_blocker_seconds) IN ('integer', 'real') AND longest_blocker_seconds > 3155760000 THEN 3155760000 ELSE NULL END
 WHERE NOT ((started_at IS NULL OR (typeof(started_at) = 'text' AND started_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(started_at, 1, 10), '+0 days') IS substr(started_at, 1, 10) AND coalesce(julianday(started_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (finished_at IS NULL OR (typeof(finished_at) = 'text' AND finished_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(finished_at, 1, 10), '+0 days') IS substr(finished_at, 1, 10) AND coalesce(julianday(finished_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (longest_blocker_seconds IS NULL OR (typeof(longest_blocker_seconds) IN ('integer', 'real') AND longest_blocker_seconds BETWEEN 0 AND 3155760000)));

CREATE TRIGGER cronpolicy.script_policy_values_in_range_insert BEFORE INSERT ON script_policy
    FOR EACH ROW WHEN NOT ((NEW.changed_at IS NULL OR (typeof(NEW.changed_at) = 'text' AND NEW.changed_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(NEW.changed_at, 1, 10), '+0 days') IS substr(NEW.changed_at, 1, 10) AND coalesce(julianday(NEW.changed_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (NEW.expected_runtime IS NULL OR (typeof(NEW.expected_runtime) IN ('integer', 'real') AND NEW.expected_runtime BETWEEN 0 AND 3155760000))
        AND (NEW.expected_interval IS NULL OR (typeof(NEW.expected_interval) IN ('integer', 'real') AND NEW.expected_interval BETWEEN 0 AND 3155760000))
        AND (NEW.max_concurrent IS NULL OR typeof(NEW.max_concurrent) = 'integer'))
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: script_policy_values_in_range: times (changed_at) UTC text from 1970-01-01 to 9898-12-31; seconds (expected_runtime, expected_interval) numbers from 0 to 3155760000; integers (max_concurrent)');
END;

CREATE TRIGGER cronpolicy.script_policy_values_in_range_update BEFORE UPDATE ON script_policy
    FOR EACH ROW WHEN NOT ((NEW.changed_at IS NULL OR (typeof(NEW.changed_at) = 'text' AND NEW.changed_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(NEW.changed_at, 1, 10), '+0 days') IS substr(NEW.changed_at, 1, 10) AND coalesce(julianday(NEW.changed_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (NEW.expected_runtime IS NULL OR (typeof(NEW.expected_runtime) IN ('integer', 'real') AND NEW.expected_runtime BETWEEN 0 AND 3155760000))
        AND (NEW.expected_interval IS NULL OR (typeof(NEW.expected_interval) IN ('integer', 'real') AND NEW.expected_interval BETWEEN 0 AND 3155760000))
        AND (NEW.max_concurrent IS NULL OR typeof(NEW.max_concurrent) = 'integer'))
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: script_policy_values_in_range: times (changed_at) UTC text from 1970-01-01 to 9898-12-31; seconds (expected_runtime, expected_interval) numbers from 0 to 3155760000; integers (max_concurrent)');
END;

CREATE TRIGGER cronpolicy.deploy_state_values_in_range_insert BEFORE INSERT ON deploy_state
    FOR EACH ROW WHEN NOT ((NEW.changed_at IS NULL OR (typeof(NEW.changed_at) = 'text' AND NEW.changed_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(NEW.changed_at, 1, 10), '+0 days') IS substr(NEW.changed_at, 1, 10) AND coalesce(julianday(NEW.changed_at) BETWEEN 2440587.5 AND 5336594.5, 0))))
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: deploy_state_values_in_range: times (changed_at) UTC text from 1970-01-01 to 9898-12-31');
END;

CREATE TRIGGER cronpolicy.deploy_state_values_in_range_update BEFORE UPDATE ON deploy_state
    FOR EACH ROW WHEN NOT ((NEW.changed_at IS NULL OR (typeof(NEW.changed_at) = 'text' AND NEW.changed_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(NEW.changed_at, 1, 10), '+0 days') IS substr(NEW.changed_at, 1, 10) AND coalesce(julianday(NEW.changed_at) BETWEEN 2440587.5 AND 5336594.5, 0))))
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: deploy_state_values_in_range: times (changed_at) UTC text from 1970-01-01 to 9898-12-31');
END;

CREATE TRIGGER cronpolicy.rollout_window_values_in_range_insert BEFORE INSERT ON rollout_window
    FOR EACH ROW WHEN NOT ((NEW.starts_at IS NULL OR (typeof(NEW.starts_at) = 'text' AND NEW.starts_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(NEW.starts_at, 1, 10), '+0 days') IS substr(NEW.starts_at, 1, 10) AND coalesce(julianday(NEW.starts_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (NEW.ends_at IS NULL OR (typeof(NEW.ends_at) = 'text' AND NEW.ends_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(NEW.ends_at, 1, 10), '+0 days') IS substr(NEW.ends_at, 1, 10) AND coalesce(julianday(NEW.ends_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (NEW.created_at IS NULL OR (typeof(NEW.created_at) = 'text' AND NEW.created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(NEW.created_at, 1, 10), '+0 days') IS substr(NEW.created_at, 1, 10) AND coalesce(julianday(NEW.created_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (NEW.cancelled_at IS NULL OR (typeof(NEW.cancelled_at) = 'text' AND NEW.cancelled_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(NEW.cancelled_at, 1, 10), '+0 days') IS substr(NEW.cancelled_at, 1, 10) AND coalesce(julianday(NEW.cancelled_at) BETWEEN 2440587.5 AND 5336594.5, 0))))
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: rollout_window_values_in_range: times (starts_at, ends_at, created_at, cancelled_at) UTC text from 1970-01-01 to 9898-12-31');
END;

CREATE TRIGGER cronpolicy.rollout_window_values_in_range_update BEFORE UPDATE ON rollout_window
    FOR EACH ROW WHEN NOT ((NEW.starts_at IS NULL OR (typeof(NEW.starts_at) = 'text' AND NEW.starts_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(NEW.starts_at, 1, 10), '+0 days') IS substr(NEW.starts_at, 1, 10) AND coalesce(julianday(NEW.starts_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (NEW.ends_at IS NULL OR (typeof(NEW.ends_at) = 'text' AND NEW.ends_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(NEW.ends_at, 1, 10), '+0 days') IS substr(NEW.ends_at, 1, 10) AND coalesce(julianday(NEW.ends_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (NEW.created_at IS NULL OR (typeof(NEW.created_at) = 'text' AND NEW.created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(NEW.created_at, 1, 10), '+0 days') IS substr(NEW.created_at, 1, 10) AND coalesce(julianday(NEW.created_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (NEW.cancelled_at IS NULL OR (typeof(NEW.cancelled_at) = 'text' AND NEW.cancelled_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(NEW.cancelled_at, 1, 10), '+0 days') IS substr(NEW.cancelled_at, 1, 10) AND coalesce(julianday(NEW.cancelled_at) BETWEEN 2440587.5 AND 5336594.5, 0))))
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: rollout_window_values_in_range: times (starts_at, ends_at, created_at, cancelled_at) UTC text from 1970-01-01 to 9898-12-31');
END;

CREATE TRIGGER cronpolicy.script_run_values_in_range_insert BEFORE INSERT ON script_run
    FOR EACH ROW WHEN NOT ((NEW.started_at IS NULL OR (typeof(NEW.started_at) = 'text' AND NEW.started_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(NEW.started_at, 1, 10), '+0 days') IS substr(NEW.started_at, 1, 10) AND coalesce(julianday(NEW.started_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (NEW.finished_at IS NULL OR (typeof(NEW.finished_at) = 'text' AND NEW.finished_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(NEW.finished_at, 1, 10), '+0 days') IS substr(NEW.finished_at, 1, 10) AND coalesce(julianday(NEW.finished_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (NEW.heartbeat_at IS NULL OR (typeof(NEW.heartbeat_at) = 'text' AND NEW.heartbeat_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(NEW.heartbeat_at, 1, 10), '+0 days') IS substr(NEW.heartbeat_at, 1, 10) AND coalesce(julianday(NEW.heartbeat_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (NEW.lease_expires_at IS NULL OR (typeof(NEW.lease_expires_at) = 'text' AND NEW.lease_expires_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(NEW.lease_expires_at, 1, 10), '+0 days') IS substr(NEW.lease_expires_at, 1, 10) AND coalesce(julianday(NEW.lease_expires_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (NEW.estimate_seconds IS NULL OR (typeof(NEW.estimate_seconds) IN ('integer', 'real') AND NEW.estimate_seconds BETWEEN 0 AND 3155760000))
        AND (NEW.expected_interval IS NULL OR (typeof(NEW.expected_interval) IN ('integer', 'real') AND NEW.expected_interval BETWEEN 0 AND 3155760000))
        AND (NEW.pid IS NULL OR typeof(NEW.pid) = 'integer')
        AND (NEW.exit_code IS NULL OR typeof(NEW.exit_code) = 'integer')
        AND (NEW.policy_id IS NULL OR typeof(NEW.policy_id) = 'integer')
        AND (NEW.window_id IS NULL OR typeof(NEW.window_id) = 'integer')
        AND (NEW.stop_policy_id IS NULL OR typeof(NEW.stop_policy_id) = 'integer')
        AND (NEW.stop_window_id IS NULL OR typeof(NEW.stop_window_id) = 'integer'))
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: script_run_values_in_range: times (started_at, finished_at, heartbeat_at, lease_expires_at) UTC text from 1970-01-01 to 9898-12-31; seconds (estimate_seconds, expected_interval) numbers from 0 to 3155760000; integers (pid, exit_code, policy_id, window_id, stop_policy_id, stop_window_id)');
END;

CREATE TRIGGER cronpolicy.script_run_values_in_range_update BEFORE UPDATE ON script_run
    FOR EACH ROW WHEN NOT ((NEW.started_at IS NULL OR (typeof(NEW.started_at) = 'text' AND NEW.started_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(NEW.started_at, 1, 10), '+0 days') IS substr(NEW.started_at, 1, 10) AND coalesce(julianday(NEW.started_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (NEW.finished_at IS NULL OR (typeof(NEW.finished_at) = 'text' AND NEW.finished_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(NEW.finished_at, 1, 10), '+0 days') IS substr(NEW.finished_at, 1, 10) AND coalesce(julianday(NEW.finished_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (NEW.heartbeat_at IS NULL OR (typeof(NEW.heartbeat_at) = 'text' AND NEW.heartbeat_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(NEW.heartbeat_at, 1, 10), '+0 days') IS substr(NEW.heartbeat_at, 1, 10) AND coalesce(julianday(NEW.heartbeat_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (NEW.lease_expires_at IS NULL OR (typeof(NEW.lease_expires_at) = 'text' AND NEW.lease_expires_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(NEW.lease_expires_at, 1, 10), '+0 days') IS substr(NEW.lease_expires_at, 1, 10) AND coalesce(julianday(NEW.lease_expires_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (NEW.estimate_seconds IS NULL OR (typeof(NEW.estimate_seconds) IN ('integer', 'real') AND NEW.estimate_seconds BETWEEN 0 AND 3155760000))
        AND (NEW.expected_interval IS NULL OR (typeof(NEW.expected_interval) IN ('integer', 'real') AND NEW.expected_interval BETWEEN 0 AND 3155760000))
        AND (NEW.pid IS NULL OR typeof(NEW.pid) = 'integer')
        AND (NEW.exit_code IS NULL OR typeof(NEW.exit_code) = 'integer')
        AND (NEW.policy_id IS NULL OR typeof(NEW.policy_id) = 'integer')
        AND (NEW.window_id IS NULL OR typeof(NEW.window_id) = 'integer')
        AND (NEW.stop_policy_id IS NULL OR typeof(NEW.stop_policy_id) = 'integer')
        AND (NEW.stop_window_id IS NULL OR typeof(NEW.stop_window_id) = 'integer'))
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: script_run_values_in_range: times (started_at, finished_at, heartbeat_at, lease_expires_at) UTC text from 1970-01-01 to 9898-12-31; seconds (estimate_seconds, expected_interval) numbers from 0 to 3155760000; integers (pid, exit_code, policy_id, window_id, stop_policy_id, stop_window_id)');
END;

CREATE TRIGGER cronpolicy.run_slot_values_in_range_insert BEFORE INSERT ON run_slot
    FOR EACH ROW WHEN NOT ((NEW.lease_expires_at IS NULL OR (typeof(NEW.lease_expires_at) = 'text' AND NEW.lease_expires_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(NEW.lease_expires_at, 1, 10), '+0 days') IS substr(NEW.lease_expires_at, 1, 10) AND coalesce(julianday(NEW.lease_expires_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (NEW.slot IS NULL OR typeof(NEW.slot) = 'integer'))
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: run_slot_values_in_range: times (lease_expires_at) UTC text from 1970-01-01 to 9898-12-31; integers (slot)');
END;

CREATE TRIGGER cronpolicy.run_slot_values_in_range_update BEFORE UPDATE ON run_slot
    FOR EACH ROW WHEN NOT ((NEW.lease_expires_at IS NULL OR (typeof(NEW.lease_expires_at) = 'text' AND NEW.lease_expires_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(NEW.lease_expires_at, 1, 10), '+0 days') IS substr(NEW.lease_expires_at, 1, 10) AND coalesce(julianday(NEW.lease_expires_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (NEW.slot IS NULL OR typeof(NEW.slot) = 'integer'))
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: run_slot_values_in_range: times (lease_expires_at) UTC text from 1970-01-01 to 9898-12-31; integers (slot)');
END;

CREATE TRIGGER cronpolicy.drain_values_in_range_insert BEFORE INSERT ON drain
    FOR EACH ROW WHEN NOT ((NEW.started_at IS NULL OR (typeof(NEW.started_at) = 'text' AND NEW.started_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(NEW.started_at, 1, 10), '+0 days') IS substr(NEW.started_at, 1, 10) AND coalesce(julianday(NEW.started_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (NEW.finished_at IS NULL OR (typeof(NEW.finished_at) = 'text' AND NEW.finished_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(NEW.finished_at, 1, 10), '+0 days') IS substr(NEW.finished_at, 1, 10) AND coalesce(julianday(NEW.finished_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (NEW.longest_blocker_seconds IS NULL OR (typeof(NEW.longest_blocker_seconds) IN ('integer', 'real') AND NEW.longest_blocker_seconds BETWEEN 0 AND 3155760000)))
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: drain_values_in_range: times (started_at, finished_at) UTC text from 1970-01-01 to 9898-12-31; seconds (longest_blocker_seconds) numbers from 0 to 3155760000');
END;

CREATE TRIGGER cronpolicy.drain_values_in_range_update BEFORE UPDATE ON drain
    FOR EACH ROW WHEN NOT ((NEW.started_at IS NULL OR (typeof(NEW.started_at) = 'text' AND NEW.started_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(NEW.started_at, 1, 10), '+0 days') IS substr(NEW.started_at, 1, 10) AND coalesce(julianday(NEW.started_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (NEW.finished_at IS NULL OR (typeof(NEW.finished_at) = 'text' AND NEW.finished_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' AND strftime('%Y-%m-%d', substr(NEW.finished_at, 1, 10), '+0 days') IS substr(NEW.finished_at, 1, 10) AND coalesce(julianday(NEW.finished_at) BETWEEN 2440587.5 AND 5336594.5, 0)))
        AND (NEW.longest_blocker_seconds IS NULL OR (typeof(NEW.longest_blocker_seconds) IN ('integer', 'real') AND NEW.longest_blocker_seconds BETWEEN 0 AND 3155760000)))
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: drain_values_in_range: times (started_at, finished_at) UTC text from 1970-01-01 to 9898-12-31; seconds (longest_blocker_seconds) numbers from 0 to 3155760000');
END;

