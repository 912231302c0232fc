//! The outbox table's DDL, for any table and channel name.
//!
//! `sql/outbox.sql` is this text for the default names (a test keeps the two equal), so an
//! upstream service can apply the file with its own migrations; `create_table = true` makes the
//! relay apply it itself. Every statement is idempotent. Needs PostgreSQL 13 or newer
//! (`gen_random_uuid()` is built in from 13).

use crate::domain::{ChannelName, TableName};

const TEMPLATE: &str = r#"-- The transactional outbox of an upstream service, published to Kafka by eventline-outbox-relay.
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

CREATE TABLE IF NOT EXISTS {table} (
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
CREATE INDEX IF NOT EXISTS {pending_index}
    ON {table} (id)
    WHERE published_at IS NULL AND rejected_at IS NULL;

-- Wakes the relay as soon as a transaction that inserted rows commits (one notification per
-- statement; the relay also polls, so a lost notification only delays).
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], '');
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS {trigger} ON {table};
CREATE TRIGGER {trigger}
    AFTER INSERT ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION {function}('{channel}');
"#;

/// The DDL for `table`, notifying `channel`.
pub fn outbox_ddl(table: &TableName, channel: &ChannelName) -> String {
    TEMPLATE
        .replace("{table}", &table.to_string())
        .replace("{pending_index}", &table.derived_bare("pending"))
        .replace("{function}", &table.derived("notify"))
        .replace("{trigger}", &table.derived_bare("notify"))
        .replace("{channel}", channel.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEFAULT_CHANNEL, DEFAULT_TABLE};

    #[test]
    fn the_shipped_sql_file_is_the_ddl_for_the_default_names() {
        let ddl = outbox_ddl(&TableName::parse(DEFAULT_TABLE).unwrap(), &ChannelName::parse(DEFAULT_CHANNEL).unwrap());
        let file = include_str!("../sql/outbox.sql");
        assert!(file == ddl, "sql/outbox.sql is out of date; it should read:\n{ddl}");
    }

    #[test]
    fn other_names_go_everywhere_and_no_placeholder_is_left() {
        let ddl =
            outbox_ddl(&TableName::parse("app.shop_outbox").unwrap(), &ChannelName::parse("shop_events").unwrap());
        assert!(ddl.contains("CREATE TABLE IF NOT EXISTS app.shop_outbox ("));
        assert!(ddl.contains("CREATE INDEX IF NOT EXISTS shop_outbox_pending\n    ON app.shop_outbox (id)"));
        assert!(ddl.contains("EXECUTE FUNCTION app.shop_outbox_notify('shop_events');"));
        assert!(ddl.contains("DROP TRIGGER IF EXISTS shop_outbox_notify ON app.shop_outbox;"));
        for placeholder in ["{table}", "{pending_index}", "{function}", "{trigger}", "{channel}"] {
            assert!(!ddl.contains(placeholder), "{placeholder} left in:\n{ddl}");
        }
        assert!(!ddl.contains("eventline_outbox"));
    }
}
