-- The IANA time zone (`Europe/Berlin`) on whose clock a tenant's business hours (mailboxes'
-- first-answer deadlines) and routing rules' hours are read; set through
-- PATCH /api/v1/tenants/{id}. Same in both backends.

ALTER TABLE tenants ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';
