-- CRM (issue 9): contacts with identities, tags and attributes; merges (audited); interactions
-- seen by the CRM (calls, chats, API messages); ticket types, groups, tickets and notes; and a
-- full-text index (tsvector + GIN here, FTS5 on SQLite) over interaction and ticket text.
-- Times are i64 epoch milliseconds; JSON is TEXT.

CREATE TABLE crm_contacts (
    id             BIGSERIAL PRIMARY KEY,
    name           TEXT,
    attributes     TEXT    NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL,
    merged_into    BIGINT
);

-- kind: phone (E.164), email (lower case), visitor (chat visitor id), or ext:<channel>.
CREATE TABLE crm_identities (
    kind           TEXT    NOT NULL,
    value          TEXT    NOT NULL,
    contact_id     BIGINT NOT NULL REFERENCES crm_contacts (id),
    created_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE INDEX crm_identities_contact ON crm_identities (contact_id);

CREATE TABLE crm_tags (
    contact_id     BIGINT NOT NULL REFERENCES crm_contacts (id),
    tag            TEXT    NOT NULL,
    PRIMARY KEY (contact_id, tag)
);
CREATE INDEX crm_tags_tag ON crm_tags (tag);

CREATE TABLE crm_merges (
    id             BIGSERIAL PRIMARY KEY,
    into_id        BIGINT NOT NULL,
    from_id        BIGINT NOT NULL,
    actor          TEXT    NOT NULL CHECK (length(actor) > 0),
    at_ms          BIGINT NOT NULL,
    moved          TEXT    NOT NULL
);
CREATE INDEX crm_merges_into ON crm_merges (into_id);

-- channel: voice, chat, api, email. source_ref: the Call-ID, chat id or external message id.
CREATE TABLE crm_interactions (
    id             BIGSERIAL PRIMARY KEY,
    contact_id     BIGINT NOT NULL REFERENCES crm_contacts (id),
    channel        TEXT    NOT NULL,
    source_ref     TEXT,
    agent          TEXT,
    queue          TEXT,
    started_at_ms  BIGINT NOT NULL,
    ended_at_ms    BIGINT,
    text           TEXT    NOT NULL,
    details        TEXT    NOT NULL,
    csat           BIGINT,
    csat_at_ms     BIGINT
);
CREATE INDEX crm_interactions_contact ON crm_interactions (contact_id, started_at_ms);
CREATE INDEX crm_interactions_source ON crm_interactions (source_ref);
CREATE INDEX crm_interactions_started ON crm_interactions (started_at_ms);

CREATE TABLE crm_ticket_types (
    name           TEXT    PRIMARY KEY,
    fields         TEXT    NOT NULL,
    updated_at_ms  BIGINT NOT NULL
);

CREATE TABLE crm_groups (
    name           TEXT    PRIMARY KEY,
    config         TEXT    NOT NULL,
    updated_at_ms  BIGINT NOT NULL
);

CREATE TABLE crm_tickets (
    id                   BIGSERIAL PRIMARY KEY,
    contact_id           BIGINT NOT NULL REFERENCES crm_contacts (id),
    interaction_id       BIGINT,
    ticket_type          TEXT,
    subject              TEXT    NOT NULL,
    description          TEXT    NOT NULL,
    fields               TEXT    NOT NULL,
    status               TEXT    NOT NULL,
    group_name           TEXT,
    assignee             TEXT,
    created_at_ms        BIGINT NOT NULL,
    updated_at_ms        BIGINT NOT NULL,
    first_response_at_ms BIGINT,
    solved_at_ms         BIGINT,
    paused_since_ms      BIGINT,
    paused_business_ms   BIGINT NOT NULL,
    csat                 BIGINT,
    csat_at_ms           BIGINT
);
CREATE INDEX crm_tickets_contact ON crm_tickets (contact_id);
CREATE INDEX crm_tickets_interaction ON crm_tickets (interaction_id);
CREATE INDEX crm_tickets_created ON crm_tickets (created_at_ms);

CREATE TABLE crm_ticket_notes (
    id             BIGSERIAL PRIMARY KEY,
    ticket_id      BIGINT NOT NULL REFERENCES crm_tickets (id),
    author         TEXT    NOT NULL,
    body           TEXT    NOT NULL,
    internal       BIGINT NOT NULL,
    at_ms          BIGINT NOT NULL
);
CREATE INDEX crm_ticket_notes_ticket ON crm_ticket_notes (ticket_id);

-- kind: interaction or ticket; ref_id: its id. One row per text added.
CREATE TABLE crm_search (
    kind           TEXT   NOT NULL,
    ref_id         BIGINT NOT NULL,
    body           TEXT   NOT NULL,
    tsv            tsvector GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED
);
CREATE INDEX crm_search_tsv ON crm_search USING GIN (tsv);
CREATE INDEX crm_search_ref ON crm_search (kind, ref_id);
