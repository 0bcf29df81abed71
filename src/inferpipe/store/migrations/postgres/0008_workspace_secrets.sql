-- Secrets of a workspace (inferpipe.workflows.secret_store), referenced by HTTP nodes as
-- {{ secrets.NAME }}. `ciphertext` is a Fernet token of the value bound to its workspace and
-- name. The key is the operator's (INFERPIPE_SECRETS_KEY, or a key file beside the SQLite
-- database) and is never stored here. Listings show names only.
CREATE TABLE workspace_secrets (
    workspace TEXT NOT NULL,
    name TEXT NOT NULL,
    ciphertext TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (workspace, name)
);
