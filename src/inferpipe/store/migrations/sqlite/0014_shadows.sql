-- Shadow runs (inferpipe.workflows.shadow): a policy runs a candidate (another saved version of
-- a graph, or the same version with overrides) beside a sampled share of the graph's runs.
-- `body` holds the policy's fields as JSON, `enabled` is 1 for at most one policy per graph
-- (enabling one turns the others off, in the same transaction).
CREATE TABLE shadow_policies (
    workspace TEXT NOT NULL,
    id TEXT NOT NULL,
    graph_id TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (workspace, id)
);
CREATE INDEX shadow_policies_by_graph ON shadow_policies (workspace, graph_id, enabled);

-- One comparison per shadow run: its primary run, and the per-node and per-run differences
-- (JSON in `body`), written by the shadow run's last step. A policy's parity report reads them.
CREATE TABLE shadow_comparisons (
    workspace TEXT NOT NULL,
    shadow_run_id TEXT NOT NULL,
    policy_id TEXT NOT NULL,
    primary_run_id TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (workspace, shadow_run_id)
);
CREATE INDEX shadow_comparisons_by_policy
    ON shadow_comparisons (workspace, policy_id, created_at_ms);
CREATE INDEX shadow_comparisons_by_primary ON shadow_comparisons (workspace, primary_run_id);
