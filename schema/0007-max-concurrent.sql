-- cronpolicy schema patch 0007: a fleet-wide limit on simultaneous runs.
--
-- script_policy.max_concurrent caps how many runs of the matching scripts may
-- be live at once across all hosts.  fleet_single_instance = true stays the
-- short way to say 1; a row that sets max_concurrent wins over its own
-- fleet_single_instance.  The limit is kept by the database (each run holds
-- one of the script's slots, an advisory lock of its session), so it holds
-- when many hosts start at the same moment.

ALTER TABLE cronpolicy.script_policy ADD COLUMN max_concurrent integer;
ALTER TABLE cronpolicy.script_policy ADD CONSTRAINT script_policy_max_concurrent_positive
    CHECK (max_concurrent > 0);
COMMENT ON COLUMN cronpolicy.script_policy.max_concurrent IS
    'At most this many live runs of the matching scripts across all hosts; NULL: as '
    'fleet_single_instance says, else as the script declares.';
