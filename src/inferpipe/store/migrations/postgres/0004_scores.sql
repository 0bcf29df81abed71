-- Scores judge runs: inline (a step), from a scorer run, or feedback posted later.
CREATE TABLE scores (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    run_id TEXT NOT NULL,
    function_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    reason TEXT,
    metadata JSON,
    source TEXT NOT NULL,
    scorer_id TEXT,
    scorer_run_id TEXT,
    experiment TEXT,
    variant TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX scores_by_run ON scores (run_id);
CREATE INDEX scores_by_function ON scores (workspace, function_id, created_at_ms);
CREATE INDEX scores_by_scorer ON scores (workspace, scorer_id, created_at_ms);
CREATE INDEX scores_by_experiment ON scores (workspace, experiment, variant, name);
