-- Acknowledgements are limited per customer and interval, chat transcripts per chat; both are
-- told by their events (an agent may be called like vacd, a visitor's transcripts have no
-- other record). Partial, like events_escalations: the other events cost nothing to write, and
-- the queries name the kind literally so that the planner may take them.
CREATE INDEX events_acknowledged ON events (tenant_id, interaction_id)
    WHERE kind = 'ticket.acknowledged';
CREATE INDEX events_transcripts ON events (tenant_id, interaction_id)
    WHERE kind = 'chat.transcript_sent';
