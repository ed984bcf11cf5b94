-- Version 2: several replicas on one database.

-- A counter every change to users or groups moves, so each replica notices
-- (one cheap read a second) and reloads its copy.
CREATE TABLE authtoken_store_version (
    id      boolean PRIMARY KEY DEFAULT true CHECK (id),
    version bigint NOT NULL
);
INSERT INTO authtoken_store_version (id, version) VALUES (true, 1);

CREATE FUNCTION authtoken_store_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE authtoken_store_version SET version = version + 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER authtoken_users_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON authtoken_users FOR EACH STATEMENT EXECUTE FUNCTION authtoken_store_changed();
CREATE TRIGGER authtoken_groups_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON authtoken_groups FOR EACH STATEMENT EXECUTE FUNCTION authtoken_store_changed();

-- Accepted responses, by their server nonce: the primary key is the replay
-- guard (a second claim, on any replica, conflicts). Rows past expires_at
-- (Unix seconds) are swept.
CREATE TABLE authtoken_replay (
    nonce      text PRIMARY KEY,
    account    text NOT NULL,
    expires_at bigint NOT NULL
);
CREATE INDEX authtoken_replay_expiry ON authtoken_replay (expires_at);

-- Wrong proofs evaluated, per guessing budget (an account, or an account
-- from one enrolled device), with their time (Unix milliseconds): all
-- replicas count into the same budget. Rows older than the window are swept.
CREATE TABLE authtoken_failures (
    budget text NOT NULL,
    at_ms  bigint NOT NULL
);
CREATE INDEX authtoken_failures_budget ON authtoken_failures (budget, at_ms);
