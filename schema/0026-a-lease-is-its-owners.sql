-- cronpolicy schema patch 0026: a rollout's lease is its owner's, and a
-- rollout holding values past the range guards can still be ended.
--
-- * Lease renewals are not audited (patch 0016), and any login holding
--   cronpolicy_rollout could renew the lease (lease_expires_at) of another
--   login's open rollout: a second release bot, or a bug, could keep a
--   crashed owner's rollout looking alive for ever, the fleet stopped and
--   nothing in the audit to say why.  Now the lease of a rollout is changed
--   only by its owner (rollout.owner, the login that began it, compared
--   with session_user, so SET ROLE changes nothing), and that renewal stays
--   unaudited and unannounced.  Any other login's change of it, set or
--   cleared, is refused with one line naming the rollout, its owner and the
--   login (check_violation), administrators' too: a lease says that the
--   owning process lives, which no other login can vouch for, and the
--   audit trigger that would record an administrator's change is the
--   audit's owner's to replace, not the database owner's who runs this
--   patch.  An administrator who wants the fleet held longer begins a
--   rollout of its own (audited).  Ending another login's rollout (`deploy
--   end ID`: ended_at set, the lease cleared by this trigger) and marking
--   it quiet (`deploy wait`) stay open to every rollout login, audited.
-- * A rollout row holding a value outside the ranges of patch 0009
--   (written with the guards off, restored from a dump: began_at
--   '-infinity', expected_duration '100000 years', a lease 'infinity')
--   could not be changed at all: the UPDATE that ends it (`deploy end`,
--   the plain-SQL switches) or marks it quiet (`deploy wait`) was refused
--   by rollout_values_in_range, and the fleet stayed stopped.  Now every
--   change of a rollout brings the row into range as it makes it: times
--   to the nearest bound (an open rollout's beginning to now at the
--   latest, a quiet_at or ended_at to no later than now), a duration to
--   100 years, a lease within the hour.  The change that ends it or
--   marks it quiet is audited with the values the row held (old_row); an
--   owner's renewal that mends only began_at is not, as renewals are not.
--   Another login's change that would mend only a beginning or a lease
--   (`SET reason = reason`), which the audit passes over, is refused: the
--   owner's lease would move, and a beginning, without a trace.
--
-- The owner's renewal costs a comparison and the range checks more (no
-- catalog is read; not measurable against an update's own cost: 500
-- renewals in one transaction, 8 alternating rounds, median 152 us each
-- with this trigger against 180 us with patch 0017's, the noise +-50 us).
-- On SQLite (schema/sqlite/0026) there are no logins: see there.
-- Applying it again changes nothing (OR REPLACE).

-- patch 0017's touch_rollout, with the lease kept to its owner and the row
-- brought into range.
CREATE OR REPLACE FUNCTION cronpolicy.touch_rollout() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ending boolean;
BEGIN
    IF TG_OP = 'INSERT' AND NOT cronpolicy.is_administrator(session_user) THEN
        NEW.owner := session_user;
        NEW.began_at := now();
        NEW.quiet_at := NULL;
        NEW.ended_at := NULL;
        NEW.ended_by := NULL;
    ELSIF TG_OP = 'INSERT' THEN
        -- Administrators may record a rollout of the past (patch 0016 does),
        -- not one of the future.
        NEW.began_at := least(NEW.began_at, now());
        NEW.ended_by := CASE WHEN NEW.ended_at IS NULL THEN NULL
                             ELSE coalesce(NEW.ended_by, session_user) END;
    ELSE
        IF NEW.kind IS DISTINCT FROM OLD.kind OR NEW.services IS DISTINCT FROM OLD.services THEN
            RAISE EXCEPTION 'rollout #% stays of what it began with (% %); end it and begin another',
                OLD.id, OLD.kind, nullif(OLD.services, '')
                USING ERRCODE = 'check_violation';
        END IF;
        IF OLD.ended_at IS NOT NULL AND NEW.ended_at IS DISTINCT FROM OLD.ended_at THEN
            RAISE EXCEPTION 'rollout #% ended at %; begin another', OLD.id, OLD.ended_at
                USING ERRCODE = 'check_violation';
        END IF;
        ending := OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL;
        -- The lease is the owner's (the end clears it, whoever ends it).
        IF NEW.lease_expires_at IS DISTINCT FROM OLD.lease_expires_at AND NOT ending
           AND OLD.owner IS DISTINCT FROM session_user THEN
            RAISE EXCEPTION 'rollout #% is % and only its owner renews its lease: % may end it '
                            '(cronpolicy deploy end %), not keep it alive',
                OLD.id, coalesce('owned by ' || nullif(OLD.owner, ''), 'of no owner'),
                session_user, OLD.id
                USING ERRCODE = 'check_violation';
        END IF;
        NEW.id := OLD.id;
        NEW.owner := OLD.owner;
        -- Into range (patch 0009's bounds): a row written past the guards
        -- is mended by the change that ends it, or by any other.  An open
        -- rollout began by now at the latest (patch 0017).
        NEW.began_at := least(greatest(OLD.began_at, '1970-01-01 00:00:00+00'::timestamptz),
                              '9898-12-31 00:00:00+00'::timestamptz);
        IF OLD.ended_at IS NULL THEN
            NEW.began_at := least(NEW.began_at, now());
        END IF;
        IF NOT cronpolicy.interval_in_range(NEW.expected_duration) THEN
            NEW.expected_duration := interval '100 years';
        END IF;
        IF ending THEN
            NEW.ended_at := now();
            NEW.ended_by := session_user;
            NEW.lease_expires_at := NULL;
        ELSE
            NEW.ended_by := OLD.ended_by;
            -- An ended rollout takes no lease (no process keeps it open).
            IF OLD.ended_at IS NOT NULL
               AND NEW.lease_expires_at IS DISTINCT FROM OLD.lease_expires_at THEN
                NEW.lease_expires_at := NULL;
            END IF;
            IF NOT cronpolicy.time_in_range(NEW.ended_at) THEN
                NEW.ended_at := greatest(NEW.began_at, least(NEW.ended_at, now()));
            END IF;
        END IF;
        -- First seen quiet: once, and never before it began nor after now.
        NEW.quiet_at := CASE WHEN OLD.quiet_at IS NOT NULL AND cronpolicy.time_in_range(OLD.quiet_at)
                             THEN OLD.quiet_at
                             WHEN OLD.quiet_at IS NOT NULL
                             THEN greatest(NEW.began_at, least(OLD.quiet_at, now()))
                             WHEN NEW.quiet_at IS NULL THEN NULL
                             ELSE greatest(NEW.began_at, least(NEW.quiet_at, now())) END;
    END IF;
    -- Within the hour (least() would make a missing lease an hour's: NULL
    -- stays NULL), and not before 1970.
    IF NEW.lease_expires_at IS NOT NULL THEN
        NEW.lease_expires_at := greatest(least(NEW.lease_expires_at, now() + interval '1 hour'),
                                         '1970-01-01 00:00:00+00'::timestamptz);
    END IF;
    -- A row mended by another login's change that the audit passes over
    -- (patch 0016's audit trigger skips a beginning and a lease, and this
    -- patch may not replace it: its function is the auditor's): its lease,
    -- the owner's alone, and its beginning would move without a trace.
    IF TG_OP = 'UPDATE' AND OLD.owner IS DISTINCT FROM session_user
       AND (NEW.began_at IS DISTINCT FROM OLD.began_at
            OR NEW.lease_expires_at IS DISTINCT FROM OLD.lease_expires_at)
       AND (NEW.reason, NEW.expected_duration, NEW.quiet_at, NEW.ended_at, NEW.owner_host,
            NEW.owner_pid) IS NOT DISTINCT FROM (OLD.reason, OLD.expected_duration,
            OLD.quiet_at, OLD.ended_at, OLD.owner_host, OLD.owner_pid) THEN
        RAISE EXCEPTION 'rollout #% holds a beginning or a lease past the range guards (%, %): '
                        '% may end it (cronpolicy deploy end %) or change what the audit '
                        'records, which mends it, audited',
            OLD.id, OLD.began_at, coalesce(OLD.lease_expires_at::text, 'no lease'),
            session_user, OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION cronpolicy.touch_rollout() IS
    'Sets a rollout''s owner, began_at, ended_at and ended_by (the login, the database clock; '
    'administrators may say otherwise when they insert one, but never a beginning after now); '
    'keeps its kind and services; an ended rollout stays ended; caps the lease at an hour and '
    'lets only the owner login change it; brings a row written past '
    'the range guards into range as it changes it.';

COMMENT ON COLUMN cronpolicy.rollout.lease_expires_at IS
    'The owning process''s lease (`deploy run` renews it while it lives); past it, and still '
    'open, the rollout''s owner is lost.  NULL: no process keeps one.  At most an hour ahead.  '
    'Changed only by the owner login (unaudited); ending the rollout, which any rollout login '
    'may, clears it, and an ended rollout takes none.';
