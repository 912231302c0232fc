-- Generations of the tables of rebuildable consumer services (crates/common/src/generations):
-- a service's tables can be built again from the start of the log into tables of their own,
-- under a consumer group of their own, while the active generation keeps serving, and then
-- swapped in (eventline rebuild <service>). One row per (service, generation). Generation 1 is
-- the service's original tables (prefix <service>_) and its configured consumer group, which
-- group_id NULL stands for; generation N > 1 has tables <service>_g<N>_* and group <group>.g<N>.
-- A service's first row is written by the service at first use, not here: the projector's
-- rows, kept in projector_generations before this table existed, are copied then (its
-- migrations and these run in either order, so the copy cannot be a migration of either).
-- Times are Unix milliseconds. Portable SQL: the same text on PostgreSQL and SQLite.

CREATE TABLE eventline_generations (
    service TEXT NOT NULL,
    generation BIGINT NOT NULL,
    group_id TEXT,
    table_prefix TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    activated_at_ms BIGINT,
    heartbeat_at_ms BIGINT,
    PRIMARY KEY (service, generation)
);

-- Per service, exactly one generation is served and at most one is being built.
CREATE UNIQUE INDEX eventline_generations_one_active ON eventline_generations (service) WHERE state = 'active';
CREATE UNIQUE INDEX eventline_generations_one_building ON eventline_generations (service) WHERE state = 'building';
