-- What the operator commands write on PostgreSQL (cronpolicy.store.writes):
-- rollouts begun, renewed and ended (tooling.rollout_rows).  Each
-- statement is introduced by a "-- name: NAME" line; parameters are
-- psycopg2's %(name)s.  Who wrote a row and when are the database's to say
-- (schema patch 0016's triggers); the reason reaches the audit through
-- set_reason.

-- name: set_reason
-- Read by the audit trigger; local to this transaction.
SELECT set_config('cronpolicy.reason', %(reason)s, true)


-- name: begin_rollout
-- The columns roles.sql grants cronpolicy_rollout; the owner is session_user.
INSERT INTO cronpolicy.rollout (kind, services, reason, expected_duration, owner_host,
                                owner_pid, lease_expires_at)
VALUES (%(kind)s, %(services)s, %(reason)s, %(expected_duration)s::interval, %(owner_host)s,
        %(owner_pid)s, %(lease_expires_at)s)
RETURNING id


-- name: rollout
SELECT * FROM cronpolicy.rollout WHERE id = %(id)s


-- name: rollouts_by_id
-- Oldest first, as open_rollouts.
SELECT * FROM cronpolicy.rollout WHERE id = ANY(%(ids)s::bigint[]) ORDER BY began_at, id


-- name: open_full_rollouts
SELECT id FROM cronpolicy.rollout WHERE ended_at IS NULL AND kind = %(kind)s ORDER BY id


-- name: end_rollouts
-- The ones still open; ended_by is the trigger's to write.
UPDATE cronpolicy.rollout SET ended_at = %(now)s, lease_expires_at = NULL
 WHERE id = ANY(%(ids)s::bigint[]) AND ended_at IS NULL


-- name: renew_rollout
UPDATE cronpolicy.rollout SET lease_expires_at = %(until)s
 WHERE id = %(id)s AND ended_at IS NULL
