-- Call quality on CDRs (per received direction: A = from the caller, B = from the callee) and
-- the recording index. Times are i64 epoch milliseconds.

ALTER TABLE cdrs ADD COLUMN mos_a REAL;
ALTER TABLE cdrs ADD COLUMN mos_b REAL;
ALTER TABLE cdrs ADD COLUMN jitter_a_ms REAL;
ALTER TABLE cdrs ADD COLUMN jitter_b_ms REAL;
ALTER TABLE cdrs ADD COLUMN codec_a TEXT;
ALTER TABLE cdrs ADD COLUMN codec_b TEXT;
ALTER TABLE cdrs ADD COLUMN recording TEXT;

CREATE TABLE recordings (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id        TEXT    NOT NULL,
    path           TEXT    NOT NULL,
    started_ms     INTEGER NOT NULL,
    duration_ms    INTEGER NOT NULL,
    bytes          INTEGER NOT NULL,
    rate           INTEGER NOT NULL,
    channels       INTEGER NOT NULL,
    legs           TEXT    NOT NULL,
    format         TEXT    NOT NULL,
    created_ms     INTEGER NOT NULL
);

CREATE INDEX recordings_call_id ON recordings (call_id);
