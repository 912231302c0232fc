-- The effect ledger: side effects of consumer services (an email, a webhook call), recorded as
-- due in the transaction that consumes their event and performed afterwards by the service's
-- effect worker. (service, effect_id) is unique: effect_id is derived from (event id, kind,
-- recipient), so a redelivered, replayed or rebuilt event finds its effect already recorded and
-- records nothing. state: due -> done, or failed once its retry schedule is spent. due_at_ms is
-- when it may be tried next; a worker trying it moves due_at_ms past its lease first, so a
-- worker that dies mid-try leaves it to be tried again once the lease ends. Times are Unix ms.
-- Portable SQL: the same text on PostgreSQL and SQLite.
CREATE TABLE eventline_effects (
    service       TEXT   NOT NULL,
    effect_id     TEXT   NOT NULL,
    event_id      TEXT   NOT NULL,
    kind          TEXT   NOT NULL,
    recipient     TEXT   NOT NULL,
    payload       TEXT   NOT NULL,
    state         TEXT   NOT NULL,
    attempts      BIGINT NOT NULL,
    due_at_ms     BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    done_at_ms    BIGINT,
    last_error    TEXT,
    PRIMARY KEY (service, effect_id)
);
CREATE INDEX eventline_effects_due ON eventline_effects (service, state, due_at_ms);
