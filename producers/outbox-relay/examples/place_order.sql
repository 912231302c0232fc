-- An upstream service placing an order: the business row and its event in one transaction.
-- Either both are committed or neither is, so the event is published if and only if the order
-- exists. Needs the outbox table (producers/outbox-relay/sql/outbox.sql).
--
--   psql "$DATABASE_URL" -f producers/outbox-relay/sql/outbox.sql
--   psql "$DATABASE_URL" -f producers/outbox-relay/examples/place_order.sql

CREATE TABLE IF NOT EXISTS shop_orders (
    order_id    TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    currency    TEXT NOT NULL,
    total_minor BIGINT NOT NULL,
    status      TEXT NOT NULL,
    placed_at   TIMESTAMPTZ NOT NULL
);

BEGIN;

INSERT INTO shop_orders (order_id, customer_id, currency, total_minor, status, placed_at)
VALUES ('o-sql-1', 'c-sql-1', 'EUR', 2500, 'placed', '2026-11-23T10:00:00Z');

-- aggregate_id is the event's Kafka key (OrderPlaced is keyed by order_id); event_id defaults
-- to a new UUID and occurred_at to now().
INSERT INTO eventline_outbox (event_type, aggregate_id, payload, source)
VALUES (
    'OrderPlaced',
    'o-sql-1',
    '{"order_id": "o-sql-1", "customer_id": "c-sql-1", "currency": "EUR", "total_minor": 2500,
      "lines": [{"sku": "BOOK-1", "quantity": 2, "unit_price_minor": 1250}],
      "placed_at": "2026-11-23T10:00:00Z"}',
    'urn:shop:checkout'
);

COMMIT;
