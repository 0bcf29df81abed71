-- A blob's compressed bytes in rows of about a megabyte each, in order: a put sends and a read
-- receives one row at a time, and no statement carries a 100 MB value whole. Blobs written
-- before keep their bytes in `blobs.data` (read as before); a blob written now has NULL there.
-- Deleting the `blobs` row deletes its chunks in the same statement (the sweep's conditional
-- delete stays one statement).
ALTER TABLE blobs ALTER COLUMN data DROP NOT NULL;

CREATE TABLE blob_chunks (
    workspace TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (workspace, sha256, seq),
    FOREIGN KEY (workspace, sha256) REFERENCES blobs (workspace, sha256) ON DELETE CASCADE
);
