-- Every command the worker emitted, once (contract §5): what support reads to answer
-- "why was this order suspended?".
CREATE TABLE command_log (
    command_id   text PRIMARY KEY,
    type         text        NOT NULL,
    topic        text        NOT NULL,
    subject_kind text,
    subject_id   text,
    invoice_id   text,
    causation_id text        NOT NULL,
    issued_at    timestamptz NOT NULL,              -- logical time of the command
    recorded_at  timestamptz NOT NULL DEFAULT now(), -- wall time it reached the ledger
    record       jsonb       NOT NULL                -- the record as it went on the wire
);
CREATE INDEX command_log_invoice ON command_log (invoice_id, issued_at);
CREATE INDEX command_log_subject ON command_log (subject_kind, subject_id, issued_at);
