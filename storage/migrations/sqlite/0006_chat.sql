-- Web chat and the API channel (issue 9): conversations, their messages (seq per chat) and
-- attachment metadata (the bytes live under the data directory). Times are epoch milliseconds.

CREATE TABLE chat_sessions (
    id                TEXT    PRIMARY KEY,
    -- 'chat' (web widget) or 'messaging' (API channel).
    channel           TEXT    NOT NULL,
    -- The API channel's name (`[channels.NAME]`), empty for web chats.
    source            TEXT    NOT NULL DEFAULT '',
    -- The widget's visitor id or the platform's user id: CRM links contacts by it.
    external_user_id  TEXT,
    -- SHA-256 (hex) of the resume token; the token itself is never stored.
    token_hash        TEXT    NOT NULL,
    name              TEXT    NOT NULL DEFAULT '',
    email             TEXT,
    phone             TEXT,
    queue             TEXT,
    attributes        TEXT    NOT NULL DEFAULT '{}',
    interaction_id    INTEGER,
    agent             TEXT,
    -- 'queued', 'active', 'ended'.
    state             TEXT    NOT NULL,
    ended_by          TEXT,
    csat              INTEGER,
    created_at_ms     INTEGER NOT NULL,
    ended_at_ms       INTEGER
);
CREATE INDEX chat_sessions_external ON chat_sessions (source, external_user_id, state);
CREATE INDEX chat_sessions_created ON chat_sessions (created_at_ms);

CREATE TABLE chat_messages (
    chat_id        TEXT    NOT NULL,
    seq            INTEGER NOT NULL,
    -- 'customer', 'agent' or 'system'.
    sender         TEXT    NOT NULL,
    author         TEXT    NOT NULL DEFAULT '',
    body           TEXT    NOT NULL,
    attachment_id  TEXT,
    created_at_ms  INTEGER NOT NULL,
    delivered_at_ms INTEGER,
    read_at_ms     INTEGER,
    PRIMARY KEY (chat_id, seq)
);

CREATE TABLE chat_attachments (
    id             TEXT    PRIMARY KEY,
    chat_id        TEXT    NOT NULL,
    file_name      TEXT    NOT NULL,
    mime_type      TEXT    NOT NULL,
    size_bytes     INTEGER NOT NULL,
    -- Relative to the data directory.
    path           TEXT    NOT NULL,
    created_at_ms  INTEGER NOT NULL
);
CREATE INDEX chat_attachments_chat ON chat_attachments (chat_id);
