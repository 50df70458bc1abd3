-- Ticket attachments (issue 9) and the SLA breach marks of the CRM's sweeper.
-- The bytes are files under the data directory (`tickets/<ticket>/<id>`); this table holds
-- their metadata. `breach_*_at_ms` record when the sweeper announced a breach (once per timer).

CREATE TABLE crm_ticket_attachments (
    id             TEXT    PRIMARY KEY,
    ticket_id      INTEGER NOT NULL REFERENCES crm_tickets (id),
    file_name      TEXT    NOT NULL,
    mime_type      TEXT    NOT NULL,
    size_bytes     INTEGER NOT NULL,
    path           TEXT    NOT NULL,
    uploaded_by    TEXT,
    created_at_ms  INTEGER NOT NULL
);
CREATE INDEX crm_ticket_attachments_ticket ON crm_ticket_attachments (ticket_id, created_at_ms);

ALTER TABLE crm_tickets ADD COLUMN breach_first_response_at_ms INTEGER;
ALTER TABLE crm_tickets ADD COLUMN breach_resolution_at_ms INTEGER;
