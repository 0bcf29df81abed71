-- Offloaded payloads kept in the database itself when no blob store URL is set: every worker
-- pointed at the database reads what another wrote, with no shared folder to set up.
CREATE TABLE blobs (
    workspace TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    data BYTEA NOT NULL,
    size BIGINT NOT NULL,
    stored_at_ms BIGINT NOT NULL,
    PRIMARY KEY (workspace, sha256)
);
