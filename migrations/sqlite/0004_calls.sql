-- Call detail records: one row per phone call, written by the call actor when the call starts
-- and completed when it ends. Keep in step with the PostgreSQL file. Times are Unix ms.
-- `direction` is `inbound` (a trunk's call to a service number) or `outbound` (click-to-dial).
-- `result` is `connected` (an agent talked to the caller, or the dialled number answered),
-- `abandoned` (the caller left while queued or ringing) or `failed` (vacd could not route it,
-- or the dialled number never answered); `hangup_by` is `caller`, `agent`, `remote` (the
-- external party of a transfer out or a click-to-dial) or `system`.

CREATE TABLE call_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    interaction_id INTEGER NOT NULL REFERENCES interactions(id) ON DELETE CASCADE,
    call_id TEXT NOT NULL,
    trunk TEXT NOT NULL,
    caller TEXT NOT NULL,
    dialled TEXT NOT NULL,
    agent_id INTEGER,
    started_at INTEGER NOT NULL,
    connected_at INTEGER,
    ended_at INTEGER,
    result TEXT,
    hangup_by TEXT,
    direction TEXT NOT NULL
);
CREATE UNIQUE INDEX call_records_interaction ON call_records (interaction_id);
