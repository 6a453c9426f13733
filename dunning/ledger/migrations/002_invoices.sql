-- The invoices as the worker last wrote them (its table's changelog): what support and
-- `dunning inspect` read, and what dunning_invoices{status} counts.
CREATE TABLE invoices (
    invoice_id     text PRIMARY KEY,
    customer_id    text        NOT NULL,
    order_id       text,
    status         text        NOT NULL,
    currency       text        NOT NULL,
    amount         numeric     NOT NULL,
    amount_paid    numeric     NOT NULL,
    amount_due     numeric     NOT NULL,
    due_at         timestamptz NOT NULL,
    next_action    text,
    next_action_at timestamptz,
    state          jsonb       NOT NULL,  -- the whole state, as GET /invoices/{id} shows it
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invoices_status ON invoices (status);
