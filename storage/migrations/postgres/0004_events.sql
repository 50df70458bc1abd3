-- The event stream (issue 10): every `noun.verb` event the engine published, by its sequence
-- number (assigned by the engine, never by the database: it continues after the largest stored
-- one on restart). `data` is the event's JSON object as text. Pruned by `at_ms`.

CREATE TABLE events (
    seq    BIGINT  PRIMARY KEY,
    at_ms  BIGINT  NOT NULL,
    kind   TEXT    NOT NULL,
    data   TEXT    NOT NULL
);

CREATE INDEX events_at ON events (at_ms);
