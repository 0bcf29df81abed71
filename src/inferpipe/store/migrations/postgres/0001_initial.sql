-- Events, runs, their journals, waits and logs. Times are Unix milliseconds (BIGINT).
-- Payloads are JSON text (the `json` type keeps them byte-for-byte and queryable by operators).

CREATE TABLE events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    body JSON NOT NULL,
    ts_ms BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL
);
CREATE INDEX events_by_id ON events (workspace, id, received_at_ms);
CREATE INDEX events_by_name ON events (workspace, name, received_at_ms);
CREATE INDEX events_by_time ON events (workspace, received_at_ms);

-- One row per producer-set event id: the unique key makes concurrent intakes of the same id
-- agree on one winner (cron ticks raced by many workers start one run).
CREATE TABLE event_ids (
    workspace TEXT NOT NULL,
    id TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    PRIMARY KEY (workspace, id)
);
CREATE INDEX event_ids_by_time ON event_ids (received_at_ms);

CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    function_id TEXT NOT NULL,
    status TEXT NOT NULL,
    event_ids JSON NOT NULL,
    input JSON NOT NULL,
    output JSON,
    error JSON,
    created_at_ms BIGINT NOT NULL,
    ready_at_ms BIGINT,
    started_at_ms BIGINT,
    finished_at_ms BIGINT,
    parent_run_id TEXT,
    rerun_of TEXT,
    priority INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_expires_at_ms BIGINT,
    lease_token BIGINT NOT NULL DEFAULT 0,
    cancel_requested TEXT,
    wake_pending BOOLEAN NOT NULL DEFAULT FALSE,
    start_deadline_ms BIGINT,
    finish_timeout_ms BIGINT,
    status_reason TEXT
) WITH (fillfactor = 80);
-- The claim query walks this in order: highest priority, then oldest ready.
CREATE INDEX runs_claimable ON runs (workspace, priority DESC, ready_at_ms)
    WHERE status IN ('queued', 'sleeping', 'waiting');
-- When the next parked run is due (workers sleep until then).
CREATE INDEX runs_wakeup ON runs (workspace, ready_at_ms)
    WHERE status IN ('queued', 'sleeping', 'waiting');
-- Takeover of runs whose worker stopped renewing its lease.
CREATE INDEX runs_leased ON runs (workspace, lease_expires_at_ms) WHERE status = 'running';
CREATE INDEX runs_by_workspace ON runs (workspace, id);
CREATE INDEX runs_by_function ON runs (workspace, function_id, id);
CREATE INDEX runs_by_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX runs_finished ON runs (workspace, finished_at_ms) WHERE finished_at_ms IS NOT NULL;

CREATE TABLE run_triggers (
    event_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (event_id, run_id)
);
CREATE INDEX run_triggers_by_run ON run_triggers (run_id);

CREATE TABLE steps (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    input JSON,
    output JSON,
    error JSON,
    started_at_ms BIGINT,
    finished_at_ms BIGINT,
    wake_at_ms BIGINT,
    meta JSON,
    PRIMARY KEY (run_id, key)
);

CREATE TABLE waits (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace TEXT NOT NULL,
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    event_name TEXT NOT NULL,
    expression TEXT,
    pin_path TEXT,
    pin_value TEXT,
    step_key TEXT,
    expires_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX waits_pinned ON waits (workspace, event_name, pin_path, pin_value)
    WHERE pin_path IS NOT NULL;
CREATE INDEX waits_unpinned ON waits (workspace, event_name) WHERE pin_path IS NULL;
CREATE INDEX waits_by_run ON waits (run_id);
-- A step has one wait: a retried write of the same step does not register it twice.
CREATE UNIQUE INDEX waits_by_step ON waits (run_id, step_key) WHERE step_key IS NOT NULL;

-- The pin paths in use per event name, so intake looks up each path instead of scanning waits.
CREATE TABLE wait_pins (
    workspace TEXT NOT NULL,
    event_name TEXT NOT NULL,
    pin_path TEXT NOT NULL,
    PRIMARY KEY (workspace, event_name, pin_path)
);

CREATE TABLE logs (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    ts_ms BIGINT NOT NULL,
    step_key TEXT,
    meta JSON,
    PRIMARY KEY (run_id, seq)
);
