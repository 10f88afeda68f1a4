-- Classification rules (src/classify.rs): the first enabled rule by position whose conditions
-- all hold sends a new interaction to its queue. A rule dies with what it names.
CREATE TABLE routing_rules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    position INTEGER NOT NULL DEFAULT 100,
    enabled INTEGER NOT NULL DEFAULT 1,
    channel TEXT,
    service_address_id INTEGER REFERENCES service_addresses(id) ON DELETE CASCADE,
    keywords TEXT,
    language TEXT,
    customer_id INTEGER REFERENCES customers(id) ON DELETE CASCADE,
    hours TEXT,
    outside_hours INTEGER NOT NULL DEFAULT 0,
    queue_id INTEGER NOT NULL REFERENCES queues(id) ON DELETE CASCADE,
    priority INTEGER
);
CREATE INDEX routing_rules_tenant ON routing_rules (tenant_id, position, id);
