-- Webhooks (inferpipe.webhooks): sources of incoming webhooks, subscriptions to run lifecycle
-- events and their deliveries, one record per row with its fields as JSON in `body`. Signing
-- secrets are inside `body` only as Fernet tokens (the workspace secrets' key), never in clear.
-- `parent` is a delivery's subscription id (empty for the other kinds).
CREATE TABLE webhook_records (
    workspace TEXT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    parent TEXT NOT NULL DEFAULT '',
    body TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (workspace, kind, id)
);
CREATE INDEX webhook_records_by_parent
    ON webhook_records (workspace, kind, parent, created_at_ms);

-- The message ids an incoming source has accepted, with the signed timestamp of the accepted
-- request: the same id and timestamp again is a replay (refused), the same id newly signed is
-- the sender's retry (a duplicate, answered 2xx without a second event).
CREATE TABLE webhook_receipts (
    workspace TEXT NOT NULL,
    source TEXT NOT NULL,
    message_id TEXT NOT NULL,
    signed_at TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    PRIMARY KEY (workspace, source, message_id)
);
CREATE INDEX webhook_receipts_by_time ON webhook_receipts (received_at_ms);
