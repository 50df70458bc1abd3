-- Users, registrations (location service) and call detail records.
-- Times are i64 epoch milliseconds; `q` is in thousandths.

CREATE TABLE users (
    username       TEXT    NOT NULL,
    realm          TEXT    NOT NULL,
    ha1_md5        TEXT    NOT NULL,
    ha1_sha256     TEXT    NOT NULL,
    display_name   TEXT,
    created_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (username, realm)
);

CREATE TABLE registrations (
    aor            TEXT    NOT NULL,
    contact_uri    TEXT    NOT NULL,
    expires_at_ms  INTEGER NOT NULL,
    q              INTEGER NOT NULL,
    call_id        TEXT    NOT NULL,
    cseq           INTEGER NOT NULL,
    source         TEXT    NOT NULL,
    user_agent     TEXT,
    updated_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (aor, contact_uri)
);

CREATE INDEX registrations_expires ON registrations (expires_at_ms);

CREATE TABLE cdrs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id        TEXT    NOT NULL,
    caller         TEXT    NOT NULL,
    callee         TEXT    NOT NULL,
    start_ms       INTEGER NOT NULL,
    answer_ms      INTEGER,
    end_ms         INTEGER NOT NULL,
    duration_ms    INTEGER NOT NULL,
    cause          TEXT    NOT NULL,
    sip_code       INTEGER NOT NULL,
    packets_a_to_b INTEGER NOT NULL,
    packets_b_to_a INTEGER NOT NULL,
    bytes_a_to_b   INTEGER NOT NULL,
    bytes_b_to_a   INTEGER NOT NULL,
    lost_a_to_b    INTEGER NOT NULL,
    lost_b_to_a    INTEGER NOT NULL
);

CREATE INDEX cdrs_call_id ON cdrs (call_id);
CREATE INDEX cdrs_start ON cdrs (start_ms);
