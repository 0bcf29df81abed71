-- Run streams kept in the database (inferpipe.streams.store.StorePubSub), shared by every
-- process that opens this file. Times are Unix milliseconds.

-- Each topic's head: the last assigned index (kept while the topic lives, so indices are never
-- reused), the newest event time (never decreasing along a topic), and the final mark.
CREATE TABLE stream_topics (
    topic TEXT PRIMARY KEY,
    last_idx INTEGER NOT NULL,
    last_ts_ms INTEGER NOT NULL,
    final INTEGER NOT NULL DEFAULT 0
);
-- Expired topics (idle or finished for longer than retention) are found by age.
CREATE INDEX stream_topics_by_ts ON stream_topics (last_ts_ms);

-- Retained events: data is the JSON encoding of what was published.
CREATE TABLE stream_events (
    topic TEXT NOT NULL,
    idx INTEGER NOT NULL,
    data BLOB NOT NULL,
    ts_ms INTEGER NOT NULL,
    final INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (topic, idx)
);
-- Purging by age across topics.
CREATE INDEX stream_events_by_ts ON stream_events (ts_ms);
