-- A parked run that was resumed without being able to continue (its code still waits on other
-- steps, e.g. a gather of many invokes) batches its next wake-ups: a resolved wait makes it
-- ready at most this many milliseconds later instead of at once, unless it was its last open
-- wait. NULL: every resolved wait wakes it at once.
ALTER TABLE runs ADD COLUMN wake_batch_ms INTEGER;

-- The claim order (claims.QUEUE_ORDER) of the runs that can become ready: a claim walks it
-- instead of sorting every parked run (a backlog of N queued runs costs a claim O(page), not
-- O(N)). Runs waiting for an event only (no ready time) are left out.
CREATE INDEX runs_queue ON runs (workspace,
    (COALESCE(CASE WHEN attempts = 0 THEN queue_at_ms END, ready_at_ms) - priority * 1000))
    WHERE status IN ('queued', 'sleeping', 'waiting') AND ready_at_ms IS NOT NULL;
