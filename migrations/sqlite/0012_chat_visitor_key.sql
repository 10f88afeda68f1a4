-- The key a visitor's browser keeps for a widget (docs/chat-protocol.md, `visitor`): the
-- anonymous chats of one browser find the same customer, so the agent sees the earlier ones.
ALTER TABLE chat_sessions ADD COLUMN visitor_key TEXT;
