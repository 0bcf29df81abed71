-- Priority as "seconds ahead" (claims.QUEUE_ORDER): a fair queue tag is a turn of its key, not
-- moved by priority: the run that starts in a key's turn is the one of its group (same
-- function, concurrency, singleton and throttle keys) first by ready time minus priority.
ALTER TABLE runs ADD COLUMN queue_group TEXT;
DROP INDEX runs_queue;
CREATE INDEX runs_queue ON runs (workspace,
    (CASE WHEN attempts = 0 AND queue_at_ms IS NOT NULL THEN queue_at_ms
          ELSE ready_at_ms - priority * 1000 END),
    queue_seq)
    WHERE status IN ('queued', 'sleeping', 'waiting');
-- The runs of a group not started yet, in the order they take its turns.
CREATE INDEX runs_queue_group ON runs (workspace, queue_group,
    (ready_at_ms - priority * 1000), queue_seq)
    WHERE status = 'queued' AND attempts = 0 AND queue_group IS NOT NULL;
