-- Idempotency records of the HTTP ingest service. Times are epoch milliseconds.
-- scope is `event` (key: an event id) or `request:<client>` (key: an Idempotency-Key header).
-- A row without status is claimed by the request claim_id that is still running.
CREATE TABLE ingest_idempotency (
    scope         TEXT   NOT NULL,
    idem_key      TEXT   NOT NULL,
    fingerprint   TEXT   NOT NULL,
    claim_id      TEXT   NOT NULL,
    status        BIGINT,
    response      TEXT,
    claimed_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    PRIMARY KEY (scope, idem_key)
);
CREATE INDEX ingest_idempotency_expires ON ingest_idempotency (expires_at_ms);
