-- One row per workspace, rewritten by the readiness check: a store that cannot commit this
-- write (read-only file, full disk, a standby or a primary that is down) is not ready.
CREATE TABLE store_probes (
    workspace TEXT PRIMARY KEY,
    at_ms BIGINT NOT NULL
);
