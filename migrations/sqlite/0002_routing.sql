-- Routing state of interactions (so written interactions can be re-queued after a restart in
-- their original order) and per-queue escalation steps. Keep in step with the PostgreSQL file.

ALTER TABLE interactions ADD COLUMN queue_order INTEGER;
ALTER TABLE interactions ADD COLUMN queued_at INTEGER;
ALTER TABLE interactions ADD COLUMN agent_id INTEGER;

CREATE TABLE queue_escalations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    queue_id INTEGER NOT NULL REFERENCES queues(id) ON DELETE CASCADE,
    after_seconds INTEGER NOT NULL,
    action TEXT NOT NULL,
    amount INTEGER,
    overflow_queue_id INTEGER REFERENCES queues(id) ON DELETE CASCADE
);
