-- A restart counts the escalation steps an interaction got since its last move (a move starts
-- escalation over): its moves are found per interaction. Partial, like events_escalations.
CREATE INDEX events_moved ON events (tenant_id, interaction_id)
    WHERE kind = 'routing.moved';
