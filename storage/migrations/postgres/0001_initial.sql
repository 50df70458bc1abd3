-- Users, registrations (location service) and call detail records.
-- Times are i64 epoch milliseconds; `q` is in thousandths.

CREATE TABLE users (
    username       TEXT   NOT NULL,
    realm          TEXT   NOT NULL,
    ha1_md5        TEXT   NOT NULL,
    ha1_sha256     TEXT   NOT NULL,
    display_name   TEXT,
    created_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (username, realm)
);

CREATE TABLE registrations (
    aor            TEXT   NOT NULL,
    contact_uri    TEXT   NOT NULL,
    expires_at_ms  BIGINT NOT NULL,
    q              BIGINT NOT NULL,
    call_id        TEXT   NOT NULL,
    cseq           BIGINT NOT NULL,
    source         TEXT   NOT NULL,
    user_agent     TEXT,
    updated_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (aor, contact_uri)
);

CREATE INDEX registrations_expires ON registrations (expires_at_ms);

CREATE TABLE cdrs (
    id             BIGSERIAL PRIMARY KEY,
    call_id        TEXT   NOT NULL,
    caller         TEXT   NOT NULL,
    callee         TEXT   NOT NULL,
    start_ms       BIGINT NOT NULL,
    answer_ms      BIGINT,
    end_ms         BIGINT NOT NULL,
    duration_ms    BIGINT NOT NULL,
    cause          TEXT   NOT NULL,
    sip_code       BIGINT NOT NULL,
    packets_a_to_b BIGINT NOT NULL,
    packets_b_to_a BIGINT NOT NULL,
    bytes_a_to_b   BIGINT NOT NULL,
    bytes_b_to_a   BIGINT NOT NULL,
    lost_a_to_b    BIGINT NOT NULL,
    lost_b_to_a    BIGINT NOT NULL
);

CREATE INDEX cdrs_call_id ON cdrs (call_id);
CREATE INDEX cdrs_start ON cdrs (start_ms);
