-- Offsets of consumers in the transactional offset mode (PostgreSQL): the handler saves them in
-- the same transaction as its effects, and the runtime seeks to them on assignment.
-- next_offset is the offset of the next event to handle (what Kafka would commit).
CREATE TABLE eventline_consumer_offsets (
    group_id    TEXT   NOT NULL,
    topic       TEXT   NOT NULL,
    partition   BIGINT NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
);
