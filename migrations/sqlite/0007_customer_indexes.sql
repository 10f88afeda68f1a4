-- A customer's card (the agent's screen pop, the ticket desk) reads the customer's identities
-- and recent interactions on every offer; without these indexes each read scanned the tables.
CREATE INDEX interactions_customer ON interactions (tenant_id, customer_id);
CREATE INDEX customer_identities_customer ON customer_identities (tenant_id, customer_id);
