-- The queue's index holds queued runs only: sleeping and waiting runs are found by ready time
-- (runs_wakeup) when it comes (claims._ready_in_order). Holding them too, a claim that found
-- fewer ready runs than its page walked every parked run: ~50 ms a claim with 100 000 runs
-- waiting, until an ANALYZE let the planner sort the few ready runs instead.
DROP INDEX runs_queue;
CREATE INDEX runs_queue ON runs (workspace,
    (CASE WHEN attempts = 0 AND queue_at_ms IS NOT NULL THEN queue_at_ms
          ELSE ready_at_ms - priority * 1000 END),
    queue_seq)
    WHERE status = 'queued';
