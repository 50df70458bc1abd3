-- Call quality on CDRs (per received direction: A = from the caller, B = from the callee) and
-- the recording index. Times are i64 epoch milliseconds.

ALTER TABLE cdrs
    ADD COLUMN mos_a       DOUBLE PRECISION,
    ADD COLUMN mos_b       DOUBLE PRECISION,
    ADD COLUMN jitter_a_ms DOUBLE PRECISION,
    ADD COLUMN jitter_b_ms DOUBLE PRECISION,
    ADD COLUMN codec_a     TEXT,
    ADD COLUMN codec_b     TEXT,
    ADD COLUMN recording   TEXT;

CREATE TABLE recordings (
    id             BIGSERIAL PRIMARY KEY,
    call_id        TEXT   NOT NULL,
    path           TEXT   NOT NULL,
    started_ms     BIGINT NOT NULL,
    duration_ms    BIGINT NOT NULL,
    bytes          BIGINT NOT NULL,
    rate           BIGINT NOT NULL,
    channels       BIGINT NOT NULL,
    legs           TEXT   NOT NULL,
    format         TEXT   NOT NULL,
    created_ms     BIGINT NOT NULL
);

CREATE INDEX recordings_call_id ON recordings (call_id);
