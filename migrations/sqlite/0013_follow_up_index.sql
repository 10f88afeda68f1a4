-- The follow-up check (src/channels/follow_up.rs) looks for due dates every poll interval: only
-- the tickets that have one are indexed.
CREATE INDEX tickets_follow_up ON tickets (follow_up_at) WHERE follow_up_at IS NOT NULL;
