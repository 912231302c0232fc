-- Generations of the read model (consumers/projector/src/generations): the read model can be
-- built again from the start of the log into tables of its own, under a consumer group of its
-- own, while the active one keeps serving, and then swapped in (eventline rebuild projector).
-- Generation 1 is the original tables (prefix projector_) and the configured consumer group,
-- which group_id NULL stands for. Later generations' tables are created by the projector.
-- Times are epoch milliseconds.

CREATE TABLE projector_generations (
    generation BIGINT PRIMARY KEY,
    group_id TEXT,
    table_prefix TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    activated_at_ms BIGINT,
    heartbeat_at_ms BIGINT
);

-- Exactly one generation is served; at most one is being built.
CREATE UNIQUE INDEX projector_generations_one_active ON projector_generations (state) WHERE state = 'active';
CREATE UNIQUE INDEX projector_generations_one_building ON projector_generations (state) WHERE state = 'building';

INSERT INTO projector_generations (generation, group_id, table_prefix, state, created_at_ms, activated_at_ms)
VALUES (1, NULL, 'projector_', 'active',
        CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT),
        CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT));
