//! The PostgreSQL schema: versioned migrations, applied in order at start inside one
//! transaction under an advisory lock (several nodes may start at once). A database whose
//! schema is newer than this build knows is refused.

/// Migrations, oldest first; the version of `MIGRATIONS[i]` is `i + 1`. Never edit a shipped
/// one: add a new one.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Version 1: the whole state, the change feed, the controller lease, signal totals.
const V1: &str = r#"
-- The head of the change feed: the last committed global revision. Every write locks this one
-- row (SELECT ... FOR UPDATE), so revisions are handed out and committed in one order, with no gap.
CREATE TABLE rollgate_head (
    id       int PRIMARY KEY CHECK (id = 1),
    revision bigint NOT NULL
);
INSERT INTO rollgate_head VALUES (1, 0);

-- The change feed: one row per changed object, in revision order. `body` is the object's JSON
-- (NULL = deleted). Kinds: flag, segment, token, policy, release. `cause` is the JSON of what
-- caused a flag or segment change (actor, action, reason, audit id, release), as stream events
-- carry it.
CREATE TABLE rollgate_feed (
    revision     bigint PRIMARY KEY,
    kind         text NOT NULL,
    key          text NOT NULL,
    body         text,
    cause        text,
    committed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The current state, one table per kind; `revision` = the feed row that wrote it.
CREATE TABLE rollgate_flags    (key  text PRIMARY KEY, body text NOT NULL, revision bigint NOT NULL);
CREATE TABLE rollgate_segments (key  text PRIMARY KEY, body text NOT NULL, revision bigint NOT NULL);
CREATE TABLE rollgate_tokens   (name text PRIMARY KEY, body text NOT NULL, revision bigint NOT NULL);
CREATE TABLE rollgate_policies (name text PRIMARY KEY, body text NOT NULL, revision bigint NOT NULL);
CREATE TABLE rollgate_releases (id   uuid PRIMARY KEY, body text NOT NULL, revision bigint NOT NULL);

-- The audit log (append-only; ids are UUIDv7, so id order is time order).
CREATE TABLE rollgate_audit (
    id      uuid PRIMARY KEY,
    flag    text,
    release text,
    body    text NOT NULL
);
CREATE INDEX rollgate_audit_flag ON rollgate_audit (flag, id);
CREATE INDEX rollgate_audit_release ON rollgate_audit (release, id);

-- Settings shared by every node (the server key that signs stream tokens).
CREATE TABLE rollgate_meta (key text PRIMARY KEY, value text NOT NULL);

-- The controller lease. `epoch` grows by one whenever a different holder takes it; every
-- controller decision commits only if its epoch is still the current one (the fence).
-- Times are the database's clock only.
CREATE TABLE rollgate_lease (
    name       text PRIMARY KEY,
    holder     text,
    epoch      bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
INSERT INTO rollgate_lease VALUES ('controller', NULL, 0, '-infinity');

-- Signal batches already counted: (node, seq) of each flushed outbox entry, so a retried or
-- replayed flush counts nothing twice.
CREATE TABLE rollgate_signal_batches (
    node       text NOT NULL,
    seq        bigint NOT NULL,
    flushed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (node, seq)
);

-- Global signal totals per (flag, variant, metric), summed over every node.
CREATE TABLE rollgate_signal_totals (
    flag    text NOT NULL,
    variant text NOT NULL,
    metric  text NOT NULL,
    count   bigint NOT NULL,
    sum     double precision NOT NULL,
    valued  bigint NOT NULL,
    PRIMARY KEY (flag, variant, metric)
);

-- When each flag last received a signal (Unix ms, the latest over every node).
CREATE TABLE rollgate_signal_seen (
    flag           text PRIMARY KEY,
    last_signal_ms bigint NOT NULL
);

-- Which schema versions are applied.
CREATE TABLE rollgate_schema (
    version    int PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
"#;

/// Version 2: kept rollback drill results (the newest 1,000; docs/operations.md, "Drills").
const V2: &str = r#"
CREATE TABLE rollgate_drills (
    id   uuid PRIMARY KEY,
    body text NOT NULL
);
"#;

/// Version 3: the latency sketches. One row per non-empty bucket of the values' sketch of a
/// (flag, variant, metric), summed over every node like `rollgate_signal_totals`, and written
/// in the same flush transaction as the counts (`cluster/signals.rs`, `signals/sketch.rs`).
const V3: &str = r#"
CREATE TABLE rollgate_signal_sketches (
    flag    text NOT NULL,
    variant text NOT NULL,
    metric  text NOT NULL,
    bucket  int NOT NULL,
    count   bigint NOT NULL,
    PRIMARY KEY (flag, variant, metric, bucket)
);
"#;
