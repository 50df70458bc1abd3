-- CRM (issue 9): contacts with identities, tags and attributes; merges (audited); interactions
-- seen by the CRM (calls, chats, API messages); ticket types, groups, tickets and notes; and a
-- full-text index (FTS5 here, tsvector + GIN on PostgreSQL) over interaction and ticket text.
-- Times are i64 epoch milliseconds; JSON is TEXT.

CREATE TABLE crm_contacts (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT,
    attributes     TEXT    NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    merged_into    INTEGER
);

-- kind: phone (E.164), email (lower case), visitor (chat visitor id), or ext:<channel>.
CREATE TABLE crm_identities (
    kind           TEXT    NOT NULL,
    value          TEXT    NOT NULL,
    contact_id     INTEGER NOT NULL REFERENCES crm_contacts (id),
    created_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE INDEX crm_identities_contact ON crm_identities (contact_id);

CREATE TABLE crm_tags (
    contact_id     INTEGER NOT NULL REFERENCES crm_contacts (id),
    tag            TEXT    NOT NULL,
    PRIMARY KEY (contact_id, tag)
);
CREATE INDEX crm_tags_tag ON crm_tags (tag);

CREATE TABLE crm_merges (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    into_id        INTEGER NOT NULL,
    from_id        INTEGER NOT NULL,
    actor          TEXT    NOT NULL CHECK (length(actor) > 0),
    at_ms          INTEGER NOT NULL,
    moved          TEXT    NOT NULL
);
CREATE INDEX crm_merges_into ON crm_merges (into_id);

-- channel: voice, chat, api, email. source_ref: the Call-ID, chat id or external message id.
CREATE TABLE crm_interactions (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    contact_id     INTEGER NOT NULL REFERENCES crm_contacts (id),
    channel        TEXT    NOT NULL,
    source_ref     TEXT,
    agent          TEXT,
    queue          TEXT,
    started_at_ms  INTEGER NOT NULL,
    ended_at_ms    INTEGER,
    text           TEXT    NOT NULL,
    details        TEXT    NOT NULL,
    csat           INTEGER,
    csat_at_ms     INTEGER
);
CREATE INDEX crm_interactions_contact ON crm_interactions (contact_id, started_at_ms);
CREATE INDEX crm_interactions_source ON crm_interactions (source_ref);
CREATE INDEX crm_interactions_started ON crm_interactions (started_at_ms);

CREATE TABLE crm_ticket_types (
    name           TEXT    PRIMARY KEY,
    fields         TEXT    NOT NULL,
    updated_at_ms  INTEGER NOT NULL
);

CREATE TABLE crm_groups (
    name           TEXT    PRIMARY KEY,
    config         TEXT    NOT NULL,
    updated_at_ms  INTEGER NOT NULL
);

CREATE TABLE crm_tickets (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    contact_id           INTEGER NOT NULL REFERENCES crm_contacts (id),
    interaction_id       INTEGER,
    ticket_type          TEXT,
    subject              TEXT    NOT NULL,
    description          TEXT    NOT NULL,
    fields               TEXT    NOT NULL,
    status               TEXT    NOT NULL,
    group_name           TEXT,
    assignee             TEXT,
    created_at_ms        INTEGER NOT NULL,
    updated_at_ms        INTEGER NOT NULL,
    first_response_at_ms INTEGER,
    solved_at_ms         INTEGER,
    paused_since_ms      INTEGER,
    paused_business_ms   INTEGER NOT NULL,
    csat                 INTEGER,
    csat_at_ms           INTEGER
);
CREATE INDEX crm_tickets_contact ON crm_tickets (contact_id);
CREATE INDEX crm_tickets_interaction ON crm_tickets (interaction_id);
CREATE INDEX crm_tickets_created ON crm_tickets (created_at_ms);

CREATE TABLE crm_ticket_notes (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id      INTEGER NOT NULL REFERENCES crm_tickets (id),
    author         TEXT    NOT NULL,
    body           TEXT    NOT NULL,
    internal       INTEGER NOT NULL,
    at_ms          INTEGER NOT NULL
);
CREATE INDEX crm_ticket_notes_ticket ON crm_ticket_notes (ticket_id);

-- kind: interaction or ticket; ref_id: its id. One row per text added.
CREATE VIRTUAL TABLE crm_search USING fts5 (kind UNINDEXED, ref_id UNINDEXED, body);
