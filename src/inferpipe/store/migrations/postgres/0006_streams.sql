-- Run streams kept in the database (inferpipe.streams.store.StorePubSub), shared by every
-- process connected to it. New events are announced with NOTIFY inferpipe_streams, payload
-- '<index> <topic>'. Times are Unix milliseconds.

-- Each topic's head: the last assigned index (kept while the topic lives, so indices are never
-- reused), the newest event time (never decreasing along a topic), and the final mark. An
-- append locks this row, so appends to one topic commit in index order.
CREATE TABLE stream_topics (
    topic TEXT PRIMARY KEY,
    last_idx BIGINT NOT NULL,
    last_ts_ms BIGINT NOT NULL,
    final BOOLEAN NOT NULL DEFAULT FALSE
);
-- Expired topics (idle or finished for longer than retention) are found by age.
CREATE INDEX stream_topics_by_ts ON stream_topics (last_ts_ms);

-- Retained events: data is the JSON encoding of what was published.
CREATE TABLE stream_events (
    topic TEXT NOT NULL,
    idx BIGINT NOT NULL,
    data BYTEA NOT NULL,
    ts_ms BIGINT NOT NULL,
    final BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (topic, idx)
);
-- Purging by age across topics.
CREATE INDEX stream_events_by_ts ON stream_events (ts_ms);
