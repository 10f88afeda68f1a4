-- Routing settings of a tenant, changed live through PATCH /api/v1/tenants/{id}. Keep in step
-- with the PostgreSQL file. `blending` is how an agent mixes calls, chats and tickets
-- (`call_blocks_others`, `exclusive` or `independent`); `missed_offer` is what a rejected or
-- timed-out offer does to the agent: `not_ready` (with `missed_offer_reason`) or `stay_ready`.
-- `users.blending` overrides the tenant's blending for one agent; NULL takes the tenant's.

ALTER TABLE tenants ADD COLUMN blending TEXT NOT NULL DEFAULT 'call_blocks_others';
ALTER TABLE tenants ADD COLUMN missed_offer TEXT NOT NULL DEFAULT 'not_ready';
ALTER TABLE tenants ADD COLUMN missed_offer_reason TEXT NOT NULL DEFAULT 'missed';
ALTER TABLE users ADD COLUMN blending TEXT;
