-- Parked events of consumers with key_order = "key" (transactional offset mode): while an event of
-- a key is retrying or dead-lettered, the later events of that key on its partition wait here, in
-- offset order, and the partition moves on. The lowest offset of a (group, topic, partition, key)
-- is the key's head: state 'retry' (retried at next_try_at_ms), 'dead' (dead-lettered, released
-- by a redrive of the same event id) or 'parked' (released now). A row is written before the
-- offsets that pass it are saved and deleted in the transaction of the handler call that applies
-- it. The record itself is kept (key, value, headers, timestamp) to hand it to the handler again.
CREATE TABLE eventline_parked (
    group_id            TEXT    NOT NULL,
    topic               TEXT    NOT NULL,
    partition           BIGINT  NOT NULL,
    record_offset       BIGINT  NOT NULL,
    record_key          TEXT    NOT NULL,
    event_id            TEXT    NOT NULL,
    state               TEXT    NOT NULL,
    reason              TEXT,
    error               TEXT,
    attempts            BIGINT  NOT NULL,
    rounds              BIGINT  NOT NULL,
    next_try_at_ms      BIGINT  NOT NULL,
    parked_at_ms        BIGINT  NOT NULL,
    record_timestamp_ms BIGINT,
    record_value        BYTEA,
    record_headers      TEXT    NOT NULL,
    PRIMARY KEY (group_id, topic, partition, record_offset)
);
CREATE INDEX eventline_parked_key ON eventline_parked (group_id, topic, partition, record_key, record_offset);
CREATE INDEX eventline_parked_event ON eventline_parked (group_id, record_key, event_id);
