-- Live members of consumer groups whose offsets are in this database (the transactional offset
-- mode): each running consumer registers here, refreshes heartbeat_at_ms every few seconds and
-- deletes its row on a clean shutdown. A row whose heartbeat is older than the TTL is a dead
-- member (a killed process); `eventline replay` refuses to reset offsets while a live one exists.
-- Times are Unix milliseconds. Portable SQL: the same text on PostgreSQL and SQLite.
CREATE TABLE eventline_consumer_members (
    group_id        TEXT   NOT NULL,
    member_id       TEXT   NOT NULL,
    host            TEXT   NOT NULL,
    pid             BIGINT NOT NULL,
    started_at_ms   BIGINT NOT NULL,
    heartbeat_at_ms BIGINT NOT NULL,
    PRIMARY KEY (group_id, member_id)
);
