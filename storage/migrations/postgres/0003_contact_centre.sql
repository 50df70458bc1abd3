-- Contact centre (issue 8): configuration rows and the append-only routing journal.
-- Configuration is stored as JSON text the actors validate; times are i64 epoch milliseconds
-- (or the router's clock, which is epoch milliseconds in production).

CREATE TABLE contact_queues (
    id             BIGINT PRIMARY KEY,
    name           TEXT   NOT NULL UNIQUE,
    config         TEXT   NOT NULL,
    updated_at_ms  BIGINT NOT NULL
);

CREATE TABLE contact_agents (
    id             BIGINT PRIMARY KEY,
    name           TEXT   NOT NULL UNIQUE,
    sip_user       TEXT,
    config         TEXT   NOT NULL,
    updated_at_ms  BIGINT NOT NULL
);

CREATE TABLE contact_workflows (
    version        BIGSERIAL PRIMARY KEY,
    spec           TEXT   NOT NULL,
    created_at_ms  BIGINT NOT NULL
);

-- stream: 'interaction' (a new interaction), 'routing' (RoutingEvent), 'queue' (QueueEvent).
CREATE TABLE contact_events (
    seq            BIGSERIAL PRIMARY KEY,
    at_ms          BIGINT NOT NULL,
    stream         TEXT   NOT NULL,
    queue_id       BIGINT,
    interaction_id BIGINT,
    body           TEXT   NOT NULL
);

CREATE INDEX contact_events_stream ON contact_events (stream, seq);
CREATE INDEX contact_events_at ON contact_events (at_ms);
