-- Website chat. Keep in step with the PostgreSQL file. Times are Unix ms.
-- `chat_widgets`: how a widget (a service address of kind `widget`) looks and what its pre-chat
-- form asks (`prechat`: a comma-separated subset of name,email,topic; `topics`: the topic
-- choices, comma-separated).
-- `chat_sessions`: one per chat; the visitor's resume token is kept as its SHA-256 only. The
-- interaction is created with the visitor's first message. `state` is `open` or `ended`.
-- `messages.client_id`: the author's own id of a message, so a resend is stored once.

CREATE TABLE chat_widgets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    service_address_id INTEGER NOT NULL UNIQUE REFERENCES service_addresses(id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    color TEXT NOT NULL,
    logo_url TEXT,
    welcome TEXT NOT NULL,
    offline_text TEXT NOT NULL,
    prechat TEXT NOT NULL,
    topics TEXT
);

CREATE TABLE chat_sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    service_address_id INTEGER NOT NULL REFERENCES service_addresses(id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    interaction_id INTEGER REFERENCES interactions(id) ON DELETE CASCADE,
    customer_id INTEGER REFERENCES customers(id),
    visitor_name TEXT NOT NULL,
    visitor_email TEXT,
    topic TEXT,
    language TEXT,
    state TEXT NOT NULL,
    ended_reason TEXT,
    created_at INTEGER NOT NULL,
    ended_at INTEGER
);
CREATE INDEX chat_sessions_open ON chat_sessions (state);

ALTER TABLE messages ADD COLUMN client_id TEXT;
ALTER TABLE messages ADD COLUMN whisper INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX messages_client_id ON messages (interaction_id, author, client_id);
