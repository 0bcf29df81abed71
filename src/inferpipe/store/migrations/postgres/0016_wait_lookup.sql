-- Whether events may resolve a wait, read with a snapshot of its own. A statement's snapshot is
-- taken when it begins, before it is granted the advisory locks it takes on event names: a
-- wait with a lookback committed while it waited for them would be missed. A VOLATILE plpgsql
-- function takes a fresh snapshot for each query it runs, so a finish can take the locks and
-- look the waits up in one statement (store/postgres/direct_finish.py). `pin_*`: the (name, path,
-- value) triples at which a pinned wait may select the events (`intake.pin_values`).
CREATE FUNCTION inferpipe_waits_may_match(
    ws TEXT,
    names TEXT[],
    now_ms BIGINT,
    pin_names TEXT[],
    pin_paths TEXT[],
    pin_values TEXT[]
) RETURNS BOOLEAN LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    may_match BOOLEAN;
BEGIN
    SELECT EXISTS (
        SELECT 1 FROM waits
        WHERE workspace = ws AND event_name = ANY(names) AND pin_path IS NULL
          AND (expires_at_ms IS NULL OR expires_at_ms > now_ms)
    ) OR EXISTS (
        SELECT 1 FROM waits
        WHERE workspace = ws AND (expires_at_ms IS NULL OR expires_at_ms > now_ms)
          AND (event_name, pin_path, pin_value) IN (
              SELECT t.* FROM unnest(pin_names, pin_paths, pin_values) AS t(name, path, value)
              JOIN wait_pins p ON p.workspace = ws AND p.event_name = t.name
                  AND p.pin_path = t.path)
    ) INTO may_match;
    RETURN may_match;
END
$$;
