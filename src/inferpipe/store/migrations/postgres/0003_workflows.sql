-- Saved versions of workflow graphs (inferpipe.workflows.graphstore), the same tables as
-- SQLite migration 0003. A version is immutable: `graph` is the document as saved (without
-- its version number), `plan` the execution plan compiled from it (no secret values),
-- `content_hash` the plan's hash and `document_hash` the document's (a save that changes
-- nothing makes no new version). `workflow_heads` points at the current version of each
-- graph: a rollback moves the pointer.
CREATE TABLE workflow_versions (
    workspace TEXT NOT NULL,
    graph_id TEXT NOT NULL,
    version INTEGER NOT NULL CHECK (version >= 1),
    name TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    document_hash TEXT NOT NULL,
    graph JSON NOT NULL,
    plan JSON NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (workspace, graph_id, version)
);
CREATE INDEX workflow_versions_by_hash ON workflow_versions (workspace, graph_id, content_hash);
CREATE TABLE workflow_heads (
    workspace TEXT NOT NULL,
    graph_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (workspace, graph_id),
    FOREIGN KEY (workspace, graph_id, version)
        REFERENCES workflow_versions (workspace, graph_id, version)
);
