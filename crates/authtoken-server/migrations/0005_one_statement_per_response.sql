-- Version 5: one statement per response (issue 38).

-- The whole verdict of an evaluated proof, as one step: under the
-- budget's lock, the budget is read; a spent budget answers 'spent' and
-- records nothing (the proof's result is not used); a wrong proof
-- (p_nonce NULL) is counted ('wrong'); a right one claims its single-use
-- record ('granted', or 'replayed' when any replica claimed it first),
-- and a right proof from a device empties the device's budget (p_reset).
-- 'last' says the budget is now spent; 'retry_after_ms' how long until
-- the oldest of its newest p_limit entries leaves the window.
CREATE FUNCTION authtoken_judge(p_budget text, p_now_ms bigint, p_window_ms bigint,
                                p_limit integer, p_nonce text, p_account text,
                                p_expires_at bigint, p_reset text)
RETURNS TABLE (verdict text, last boolean, retry_after_ms bigint)
LANGUAGE plpgsql AS $$
DECLARE
    held integer;
    oldest bigint;
    claimed integer;
BEGIN
    SELECT b.held, b.oldest INTO held, oldest
      FROM authtoken_budget(p_budget, p_now_ms, p_window_ms, p_limit) AS b;
    IF held >= p_limit THEN
        RETURN QUERY SELECT 'spent'::text, true, oldest + p_window_ms - p_now_ms;
        RETURN;
    END IF;
    IF p_nonce IS NULL THEN
        INSERT INTO authtoken_failures (budget, at_ms) VALUES (p_budget, p_now_ms);
        RETURN QUERY SELECT 'wrong'::text, held + 1 >= p_limit, 0::bigint;
        RETURN;
    END IF;
    INSERT INTO authtoken_replay (nonce, account, expires_at)
        VALUES (p_nonce, p_account, p_expires_at)
        ON CONFLICT (nonce) DO NOTHING;
    GET DIAGNOSTICS claimed = ROW_COUNT;
    IF claimed = 0 THEN
        RETURN QUERY SELECT 'replayed'::text, false, 0::bigint;
        RETURN;
    END IF;
    IF p_reset IS NOT NULL THEN
        DELETE FROM authtoken_failures WHERE budget = p_reset;
    END IF;
    RETURN QUERY SELECT 'granted'::text, false, 0::bigint;
END
$$;
