-- The schema registry's tables (SQLite). Times are epoch milliseconds.

-- One row per distinct schema (by canonical fingerprint): the id is global and never reused.
CREATE TABLE registry_schemas (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint   TEXT   NOT NULL UNIQUE,
    guid          TEXT   NOT NULL UNIQUE,
    schema_type   TEXT   NOT NULL,
    schema_text   TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- One row per version of a subject; soft-deleted versions keep their row with deleted_at_ms set.
CREATE TABLE registry_versions (
    subject       TEXT   NOT NULL,
    version       BIGINT NOT NULL,
    schema_id     BIGINT NOT NULL REFERENCES registry_schemas (id),
    created_at_ms BIGINT NOT NULL,
    deleted_at_ms BIGINT,
    PRIMARY KEY (subject, version)
);
CREATE INDEX registry_versions_schema_id ON registry_versions (schema_id);

-- Compatibility levels: scope '' is the global level, any other scope is a subject.
CREATE TABLE registry_config (
    scope         TEXT   PRIMARY KEY,
    compatibility TEXT   NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
