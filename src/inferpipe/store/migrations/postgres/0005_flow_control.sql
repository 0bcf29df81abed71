-- Flow control (inferpipe.engine.flow). Keys are scoped strings planned by the engine, e.g.
-- fn:<function id>:<expression>=<value>. Times are Unix milliseconds (BIGINT).

-- The concurrency keys a run holds while it executes (status running), with their limits. A
-- claim locks the keys of its candidates (advisory locks), counts the running runs per key,
-- and takes no run whose key is at its limit.
ALTER TABLE runs ADD COLUMN concurrency_key1 TEXT;
ALTER TABLE runs ADD COLUMN concurrency_limit1 INTEGER;
ALTER TABLE runs ADD COLUMN concurrency_key2 TEXT;
ALTER TABLE runs ADD COLUMN concurrency_limit2 INTEGER;
-- One unfinished run per singleton key, and one executing.
ALTER TABLE runs ADD COLUMN singleton_key TEXT;
-- The run's start tag in the fair queue of its function: keys take turns (start-time fair
-- queueing). Used to order runs that never started, NULL without a concurrency key.
ALTER TABLE runs ADD COLUMN queue_at_ms BIGINT;
-- The throttle on the run's first start, as JSON [key, limit, period_ms, burst], and the
-- start it reserved when the throttle delayed it.
ALTER TABLE runs ADD COLUMN throttle JSON;
ALTER TABLE runs ADD COLUMN throttled_until_ms BIGINT;
-- Insertion order: breaks ties in the queue (runs inserted together share their times).
ALTER TABLE runs ADD COLUMN queue_seq BIGINT GENERATED ALWAYS AS IDENTITY;

-- The claim order: a run that never started by its fair queue tag (else its ready time),
-- moved `priority` seconds, then insertion order. Replaces the order by priority first.
DROP INDEX runs_claimable;
CREATE INDEX runs_queue ON runs (workspace,
    (COALESCE(CASE WHEN attempts = 0 THEN queue_at_ms END, ready_at_ms) - priority * 1000),
    queue_seq)
    WHERE status IN ('queued', 'sleeping', 'waiting');
-- Running runs per concurrency key, counted by every claim of a run with that key.
CREATE INDEX runs_running_key1 ON runs (workspace, concurrency_key1)
    WHERE status = 'running' AND concurrency_key1 IS NOT NULL;
CREATE INDEX runs_running_key2 ON runs (workspace, concurrency_key2)
    WHERE status = 'running' AND concurrency_key2 IS NOT NULL;
-- Unfinished runs per singleton key (a newcomer is skipped or replaces them; one runs at once).
CREATE INDEX runs_singleton ON runs (workspace, singleton_key)
    WHERE singleton_key IS NOT NULL
      AND status NOT IN ('completed', 'failed', 'cancelled', 'skipped');
-- Runs not started yet of a fair function, by start tag: the head of its queue is the
-- virtual time a newly busy key starts from.
CREATE INDEX runs_fair_queue ON runs (workspace, function_id, queue_at_ms)
    WHERE status = 'queued' AND attempts = 0 AND queue_at_ms IS NOT NULL;

-- Per fair key: the start tag its next run gets at the earliest (its last tag + 1 ms).
CREATE TABLE flow_queues (
    workspace TEXT NOT NULL,
    key TEXT NOT NULL,
    next_tag_ms BIGINT NOT NULL,
    PRIMARY KEY (workspace, key)
);

-- Per throttle key: the GCRA theoretical arrival time, in units of 1/rate_limit ms so that
-- period/limit steps are exact integers.
CREATE TABLE flow_throttles (
    workspace TEXT NOT NULL,
    key TEXT NOT NULL,
    tat BIGINT NOT NULL,
    rate_limit BIGINT NOT NULL,
    PRIMARY KEY (workspace, key)
);

-- Per rate-limit key: the runs admitted in the last period (a sliding window log).
CREATE TABLE flow_rate_hits (
    workspace TEXT NOT NULL,
    key TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX flow_rate_hits_by_key ON flow_rate_hits (workspace, key, at_ms);

-- Per idempotency key: the run that used it, until it expires (24 h).
CREATE TABLE flow_idempotency (
    workspace TEXT NOT NULL,
    key TEXT NOT NULL,
    run_id TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    PRIMARY KEY (workspace, key)
);

-- Per debounce or batch key: the pending run collecting events, while it has not started.
CREATE TABLE flow_buffers (
    workspace TEXT NOT NULL,
    key TEXT NOT NULL,
    run_id TEXT NOT NULL,
    first_at_ms BIGINT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (workspace, key)
);
