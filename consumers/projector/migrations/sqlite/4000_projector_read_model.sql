-- The projector's read model: rows built only from events (see consumers/projector/src/domain).
-- Times are epoch milliseconds; money is minor units. last_event_* is the applied event with
-- the greatest (time, id).

CREATE TABLE projector_orders (
    order_id TEXT PRIMARY KEY,
    customer_id TEXT,
    currency TEXT,
    total_minor BIGINT NOT NULL,
    status TEXT NOT NULL,
    placed_at_ms BIGINT,
    cancelled_at_ms BIGINT,
    cancel_reason TEXT,
    shipped_at_ms BIGINT,
    carrier TEXT,
    tracking_number TEXT,
    captured_minor BIGINT NOT NULL,
    refunded_minor BIGINT NOT NULL,
    last_event_id TEXT NOT NULL,
    last_event_ms BIGINT NOT NULL
);

CREATE INDEX projector_orders_by_customer ON projector_orders (customer_id, placed_at_ms, order_id);

CREATE TABLE projector_customers (
    customer_id TEXT PRIMARY KEY,
    email TEXT,
    name TEXT,
    registered_at_ms BIGINT,
    order_count BIGINT NOT NULL,
    lifetime_value_minor BIGINT NOT NULL,
    last_event_id TEXT NOT NULL,
    last_event_ms BIGINT NOT NULL
);

CREATE TABLE projector_payments (
    payment_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    currency TEXT,
    status TEXT NOT NULL,
    authorized_minor BIGINT NOT NULL,
    captured_minor BIGINT NOT NULL,
    refunded_minor BIGINT NOT NULL,
    failure_reason TEXT,
    last_event_id TEXT NOT NULL,
    last_event_ms BIGINT NOT NULL
);

CREATE INDEX projector_payments_by_order ON projector_payments (order_id);

-- Every event id applied: a second event with the same id is a no-op.
CREATE TABLE projector_applied_events (
    event_id TEXT PRIMARY KEY
);

-- One row every write transaction updates first: batches of different partitions touch the
-- same rows (an order from `orders`, its payments from `payments`), so they apply one at a time
-- (a row lock on PostgreSQL, the write lock on SQLite).
CREATE TABLE projector_write_lock (
    id BIGINT PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO projector_write_lock (id, version) VALUES (1, 0);
