-- authtoken-server's PostgreSQL store, version 1: what one authority
-- serves from (the TOML store's content). Applied by
-- `authtoken-server migrate`; never edit an applied migration, add one.

-- `secret`: keys the nonces (so every replica can check every other's
-- challenges) and the decoy salts of unknown users.
CREATE TABLE authtoken_settings (
    name  text PRIMARY KEY,
    value bytea NOT NULL
);

-- One row per user: the fields of a `[users.NAME]` table of the TOML store
-- as a JSON object (policy, scheme and verifier, POSIX account). Verifiers
-- only, never a password.
CREATE TABLE authtoken_users (
    name   text PRIMARY KEY,
    record jsonb NOT NULL
);

-- The directory's named groups.
CREATE TABLE authtoken_groups (
    name text PRIMARY KEY,
    gid  integer NOT NULL UNIQUE
);
