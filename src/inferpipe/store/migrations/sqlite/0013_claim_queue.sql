-- The queue's index holds queued runs only: sleeping and waiting runs are found by ready time
-- (runs_ready) when it comes (claims._candidates). Holding them too, a claim that found fewer
-- ready runs than its page walked every parked run: ~40 ms a claim with 100 000 runs waiting.
DROP INDEX runs_queue;
CREATE INDEX runs_queue ON runs (workspace,
    (CASE WHEN attempts = 0 AND queue_at_ms IS NOT NULL THEN queue_at_ms
          ELSE ready_at_ms - priority * 1000 END))
    WHERE status = 'queued' AND ready_at_ms IS NOT NULL;
