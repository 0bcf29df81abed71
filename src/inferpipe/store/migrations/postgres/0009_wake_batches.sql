-- A parked run that was resumed without being able to continue (its code still waits on other
-- steps, e.g. a gather of many invokes) batches its next wake-ups: a resolved wait makes it
-- ready at most this many milliseconds later instead of at once, unless it was its last open
-- wait. NULL: every resolved wait wakes it at once.
ALTER TABLE runs ADD COLUMN wake_batch_ms BIGINT;
