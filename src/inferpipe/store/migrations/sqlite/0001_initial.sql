-- Events, runs, their journals, waits and logs. Times are Unix milliseconds.
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    body BLOB NOT NULL,
    ts_ms INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL
);
CREATE INDEX events_by_id ON events (workspace, id, received_at_ms);
CREATE INDEX events_by_name ON events (workspace, name, received_at_ms);
CREATE INDEX events_by_time ON events (workspace, received_at_ms);

CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    function_id TEXT NOT NULL,
    status TEXT NOT NULL,
    event_ids BLOB NOT NULL,
    input BLOB NOT NULL,
    output BLOB,
    error BLOB,
    created_at_ms INTEGER NOT NULL,
    ready_at_ms INTEGER,
    started_at_ms INTEGER,
    finished_at_ms INTEGER,
    parent_run_id TEXT,
    rerun_of TEXT,
    priority INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_expires_at_ms INTEGER,
    lease_token INTEGER NOT NULL DEFAULT 0,
    cancel_requested TEXT,
    wake_pending INTEGER NOT NULL DEFAULT 0,
    start_deadline_ms INTEGER,
    finish_timeout_ms INTEGER,
    status_reason TEXT
);
CREATE INDEX runs_ready ON runs (workspace, status, ready_at_ms);
CREATE INDEX runs_leased ON runs (status, lease_expires_at_ms);
CREATE INDEX runs_by_function ON runs (workspace, function_id, id);
CREATE INDEX runs_by_parent ON runs (parent_run_id);
CREATE INDEX runs_finished ON runs (workspace, finished_at_ms);

CREATE TABLE run_triggers (
    event_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (event_id, run_id)
);

CREATE TABLE steps (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    input BLOB,
    output BLOB,
    error BLOB,
    started_at_ms INTEGER,
    finished_at_ms INTEGER,
    wake_at_ms INTEGER,
    meta BLOB,
    PRIMARY KEY (run_id, key)
);

CREATE TABLE waits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace TEXT NOT NULL,
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    event_name TEXT NOT NULL,
    expression TEXT,
    pin_path TEXT,
    pin_value TEXT,
    step_key TEXT,
    expires_at_ms INTEGER,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX waits_pinned ON waits (workspace, event_name, pin_path, pin_value);
CREATE INDEX waits_by_run ON waits (run_id);

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
    ts_ms INTEGER NOT NULL,
    step_key TEXT,
    meta BLOB,
    PRIMARY KEY (run_id, seq)
);
