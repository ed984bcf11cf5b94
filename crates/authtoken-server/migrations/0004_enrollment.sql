-- Version 4: enrollment (issue 37). What the device CA issued, and the
-- join tokens that let a machine ask for it. Changes to either move the
-- store's version counter, so every replica takes a revocation up within
-- a second, as it does a new user.

-- One row per join token: only the SHA-256 of its secret. A use is taken
-- by one UPDATE (uses_left > 0), so a token is used once across replicas.
CREATE TABLE authtoken_join_tokens (
    id         text PRIMARY KEY,
    hash       text NOT NULL,
    expires_at bigint NOT NULL,
    uses_left  integer NOT NULL CHECK (uses_left >= 0),
    name       text,
    created_at bigint NOT NULL
);

-- One row per device certificate, by serial (hex): the fields of a
-- `[devices.SERIAL]` table of the TOML store as a JSON object.
CREATE TABLE authtoken_devices (
    serial text PRIMARY KEY,
    record jsonb NOT NULL
);
CREATE UNIQUE INDEX authtoken_devices_fingerprint ON authtoken_devices ((record->>'fingerprint'));

CREATE TRIGGER authtoken_join_tokens_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON authtoken_join_tokens FOR EACH STATEMENT EXECUTE FUNCTION authtoken_store_changed();
CREATE TRIGGER authtoken_devices_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON authtoken_devices FOR EACH STATEMENT EXECUTE FUNCTION authtoken_store_changed();
