-- The transactional outbox of an upstream service, published to Kafka by eventline-outbox-relay.
--
-- Write the outbox row in the same transaction as the business change it describes (see
-- producers/outbox-relay/examples/). The relay publishes rows in id order per aggregate_id and
-- fills published_at (and kafka_*) once the broker has acknowledged; a row it can never publish
-- gets rejected_at and last_error instead, and the aggregate's later rows still go out. To send a
-- rejected row after fixing it, set rejected_at = NULL (it then follows those later rows).
-- Published rows can be deleted at will. Every statement here is idempotent; PostgreSQL 13+.
--
--   event_id        the CloudEvents id (ce_id): the idempotency key downstream. Defaults to a new
--                   UUID; set it yourself to make the write itself idempotent.
--   event_type      the catalog's event type, e.g. OrderPlaced (or its full name).
--   aggregate_id    the aggregate the event belongs to; must equal the event's Kafka key (the
--                   catalog's key field in payload, e.g. order_id).
--   payload         the event's data as JSON for its Avro schema (the CloudEvents data).
--   source, subject optional CloudEvents attributes (source defaults to outbox_relay.source).
--   traceparent,    optional W3C trace context and correlation id, carried into Kafka headers.
--   correlation_id
--   occurred_at     the event time (ce_time).

CREATE TABLE IF NOT EXISTS eventline_outbox (
    id              BIGSERIAL PRIMARY KEY,
    event_id        UUID NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    event_type      TEXT NOT NULL,
    aggregate_id    TEXT NOT NULL,
    payload         JSONB NOT NULL,
    source          TEXT,
    subject         TEXT,
    traceparent     TEXT,
    correlation_id  TEXT,
    occurred_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at    TIMESTAMPTZ,
    rejected_at     TIMESTAMPTZ,
    attempts        INT NOT NULL DEFAULT 0,
    last_error      TEXT,
    kafka_topic     TEXT,
    kafka_partition INT,
    kafka_offset    BIGINT
);

-- What the relay scans: the rows still to publish, oldest first.
CREATE INDEX IF NOT EXISTS eventline_outbox_pending
    ON eventline_outbox (id)
    WHERE published_at IS NULL AND rejected_at IS NULL;

-- Wakes the relay as soon as a transaction that inserted rows commits (one notification per
-- statement; the relay also polls, so a lost notification only delays).
CREATE OR REPLACE FUNCTION eventline_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], '');
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS eventline_outbox_notify ON eventline_outbox;
CREATE TRIGGER eventline_outbox_notify
    AFTER INSERT ON eventline_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION eventline_outbox_notify('eventline_outbox');
