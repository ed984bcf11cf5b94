-- Version 3: what the database may not decide (issue 35).

-- Two users never share a uid, whoever writes: two administrators'
-- add-user at once (each picks the lowest free uid) cannot both commit.
-- A database that already holds a duplicate refuses this migration:
-- give one of the two users another --uid first.
CREATE UNIQUE INDEX authtoken_users_uid ON authtoken_users (((record->>'uid')::bigint))
    WHERE record ? 'uid';

-- Each failure (reservation) by its own id, so a right proof gives back
-- exactly the slot it took.
ALTER TABLE authtoken_failures ADD COLUMN id bigserial PRIMARY KEY;

-- A guessing budget, locked for the rest of the transaction (requests for
-- it on every replica wait their turn) and read: how many of its failures
-- are in the window (at most p_limit) and the oldest of those. Whatever
-- judges a proof against a budget starts here.
CREATE FUNCTION authtoken_budget(p_budget text, p_now_ms bigint, p_window_ms bigint,
                                 p_limit integer, OUT held integer, OUT oldest bigint)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_budget, 7212946));
    SELECT count(*), min(at_ms) INTO held, oldest
      FROM (SELECT at_ms FROM authtoken_failures
             WHERE budget = p_budget AND at_ms > p_now_ms - p_window_ms
             ORDER BY at_ms DESC LIMIT p_limit) AS recent;
END
$$;

-- Reserves one slot of a guessing budget before a proof is evaluated:
-- the check and the count in one step, under a lock per budget, so
-- requests in flight on every replica at once cannot all pass a check
-- none of them has counted against yet. Returns the slot's id and whether
-- it is the budget's last; or, when the budget is spent, no slot and how
-- many milliseconds until the oldest of its newest p_limit entries leaves
-- the window.
CREATE FUNCTION authtoken_reserve(p_budget text, p_now_ms bigint, p_window_ms bigint,
                                  p_limit integer)
RETURNS TABLE (slot bigint, last boolean, retry_after_ms bigint)
LANGUAGE plpgsql AS $$
DECLARE
    held integer;
    oldest bigint;
BEGIN
    SELECT b.held, b.oldest INTO held, oldest
      FROM authtoken_budget(p_budget, p_now_ms, p_window_ms, p_limit) AS b;
    IF held >= p_limit THEN
        RETURN QUERY SELECT NULL::bigint, true, oldest + p_window_ms - p_now_ms;
        RETURN;
    END IF;
    RETURN QUERY
        INSERT INTO authtoken_failures (budget, at_ms) VALUES (p_budget, p_now_ms)
        RETURNING id, held + 1 >= p_limit, 0::bigint;
END
$$;
