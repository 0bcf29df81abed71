-- API keys. The secret is shown once at creation and never stored: `hash` is
-- sha256$<salt>$<hex digest of salt + secret>, and `prefix` (ip_<workspace hint>_<8 chars>)
-- is kept in clear to find the row and to show the key in listings.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT 'admin' CHECK (role IN ('admin', 'read')),
    created_at_ms BIGINT NOT NULL,
    hash TEXT NOT NULL,
    revoked_at_ms BIGINT,
    rate_limit_per_min INTEGER CHECK (rate_limit_per_min IS NULL OR rate_limit_per_min > 0)
);
CREATE INDEX api_keys_by_prefix ON api_keys (prefix);
CREATE INDEX api_keys_by_workspace ON api_keys (workspace, created_at_ms);
