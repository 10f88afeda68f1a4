-- Tickets: the written channels (email, fax, letter, SMS). Keep in step with the PostgreSQL file.
-- Times are Unix ms.
--
-- A ticket is the written side of one interaction (`interactions` keeps routing state): where
-- replies go (`contact`: the customer's email address or phone number, NULL when the message
-- named no sender), its status (`open` waiting for an answer, `answered` waiting for the
-- customer, `closed`), follow-up date and first-answer SLA.
-- `messages` gains what mail threading needs; `source_key` says where an inbound message came
-- from (account, mailbox generation, server id) and is unique, so a message fetched again after
-- a crash is recognised and never stored twice.
-- `mail_accounts`: one IMAP or POP3 account (and its SMTP server for replies) per email service
-- address, administered through the API; accounts in the config file are used beside them.

CREATE TABLE tickets (
    interaction_id INTEGER PRIMARY KEY REFERENCES interactions(id) ON DELETE CASCADE,
    tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    service_address_id INTEGER REFERENCES service_addresses(id) ON DELETE SET NULL,
    contact TEXT,
    status TEXT NOT NULL,
    follow_up_at INTEGER,
    first_answer_due INTEGER,
    first_answered_at INTEGER,
    closed_at INTEGER,
    updated_at INTEGER NOT NULL
);
CREATE INDEX tickets_tenant_status ON tickets (tenant_id, status);

ALTER TABLE messages ADD COLUMN subject TEXT;
ALTER TABLE messages ADD COLUMN html_body TEXT;
ALTER TABLE messages ADD COLUMN sender TEXT;
ALTER TABLE messages ADD COLUMN recipients TEXT;
ALTER TABLE messages ADD COLUMN message_id TEXT;
ALTER TABLE messages ADD COLUMN source_key TEXT;
CREATE UNIQUE INDEX messages_source_key ON messages (tenant_id, source_key);
CREATE INDEX messages_message_id ON messages (tenant_id, message_id);

CREATE TABLE mail_accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    service_address_id INTEGER NOT NULL UNIQUE REFERENCES service_addresses(id) ON DELETE CASCADE,
    protocol TEXT NOT NULL,
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    security TEXT NOT NULL,
    username TEXT NOT NULL,
    password TEXT NOT NULL,
    folder TEXT NOT NULL,
    after_fetch TEXT NOT NULL,
    smtp_host TEXT,
    smtp_port INTEGER,
    smtp_security TEXT,
    smtp_username TEXT,
    smtp_password TEXT,
    auto_reply_template TEXT,
    enabled INTEGER NOT NULL
);
