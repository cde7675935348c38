//! `rollgate migrate`: copies a single node's sled data dir into an empty cluster database.
//!
//! Invariants:
//! - All or nothing: every write happens in ONE transaction, so a failure (or a kill) part way
//!   leaves the database as it was and the command can simply be run again.
//! - Never merges: the transaction first locks the feed head (as every cluster write does) and
//!   refuses when the database already holds a flag, segment, token, policy or release, or a
//!   head revision above 0. The head lock makes the check and the writes one step even if a
//!   node is already running against the database.
//! - The state looks exactly as if it had been written through the feed: each object gets one
//!   feed row, revisions 1..N in the order segments, flags, tokens, policies, releases (a
//!   flag's segments come before it), its state row names that revision, and the head is N.
//!   Bodies are the JSON the cluster store writes (`serde_json::to_string` of the object; a
//!   policy's body is its stored JSON source).
//! - Counts are `u64` in rollgate and `bigint` in PostgreSQL: they are clamped to `i64::MAX`.

use super::ClusterError;
use crate::signals::SavedAggregates;
use crate::store::{AuditEntry, Store};
use serde::Serialize;
use std::fmt;

/// How many rows one `INSERT … SELECT FROM unnest(…)` carries (audit entries, signal series).
const CHUNK: usize = 2_000;

/// What a migration copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateReport {
    pub flags: usize,
    pub segments: usize,
    pub tokens: usize,
    pub policies: usize,
    pub releases: usize,
    pub audit_entries: usize,
    /// (flag, variant, metric) signal totals.
    pub signal_series: usize,
    /// The head revision afterwards (one per object).
    pub revision: i64,
}

impl fmt::Display for MigrateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "migrated {} flags, {} segments, {} tokens, {} policies, {} releases, \
             {} audit entries, {} signal series (revision {})",
            self.flags,
            self.segments,
            self.tokens,
            self.policies,
            self.releases,
            self.audit_entries,
            self.signal_series,
            self.revision
        )
    }
}

/// A kind of versioned object: its feed `kind`, state table and key column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Segment,
    Flag,
    Token,
    Policy,
    Release,
}

impl Kind {
    /// Feed order: a flag's segments exist before the flag.
    const ORDER: [Kind; 5] = [
        Kind::Segment,
        Kind::Flag,
        Kind::Token,
        Kind::Policy,
        Kind::Release,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Segment => "segment",
            Kind::Flag => "flag",
            Kind::Token => "token",
            Kind::Policy => "policy",
            Kind::Release => "release",
        }
    }

    /// `INSERT` of this kind's state rows from three arrays (keys, bodies, revisions).
    fn insert_sql(self) -> &'static str {
        match self {
            Kind::Segment => "INSERT INTO rollgate_segments (key, body, revision) SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])",
            Kind::Flag => "INSERT INTO rollgate_flags (key, body, revision) SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])",
            Kind::Token => "INSERT INTO rollgate_tokens (name, body, revision) SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])",
            Kind::Policy => "INSERT INTO rollgate_policies (name, body, revision) SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])",
            Kind::Release => "INSERT INTO rollgate_releases (id, body, revision) SELECT k::uuid, b, r FROM unnest($1::text[], $2::text[], $3::bigint[]) AS t(k, b, r)",
        }
    }
}

/// One object as it will be written: kind, key, JSON body; its revision is its position + 1.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Object {
    kind: Kind,
    key: String,
    body: String,
}

fn encode<T: Serialize>(kind: Kind, key: &str, value: &T) -> Result<Object, ClusterError> {
    let body = serde_json::to_string(value).map_err(|e| ClusterError::Encode {
        what: format!("{} {key}", kind.name()),
        message: e.to_string(),
    })?;
    Ok(Object {
        kind,
        key: key.to_owned(),
        body,
    })
}

/// Every versioned object of the store, in feed order.
fn objects(store: &Store) -> Result<Vec<Object>, ClusterError> {
    let mut out = Vec::new();
    for kind in Kind::ORDER {
        match kind {
            Kind::Segment => {
                for s in store.segments()? {
                    out.push(encode(kind, &s.key, &s)?);
                }
            }
            Kind::Flag => {
                for f in store.flags()? {
                    out.push(encode(kind, &f.key, &f)?);
                }
            }
            Kind::Token => {
                for t in store.tokens()? {
                    out.push(encode(kind, &t.name, &t)?);
                }
            }
            Kind::Policy => {
                for (name, source) in store.policies()? {
                    out.push(Object {
                        kind,
                        key: name,
                        body: source,
                    });
                }
            }
            Kind::Release => {
                for r in store.releases()? {
                    out.push(encode(kind, &r.id.to_string(), &r)?);
                }
            }
        }
    }
    Ok(out)
}

/// A `u64` count as a `bigint`.
fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Copies everything in `store` into the database behind `client` (migrating its schema
/// first), in one transaction. Refuses a database that already holds state.
pub async fn from_sled(
    store: &Store,
    client: &mut tokio_postgres::Client,
) -> Result<MigrateReport, ClusterError> {
    super::db::migrate(client).await?;
    let objects = objects(store)?;
    let aggregates = store.aggregates::<SavedAggregates>()?.unwrap_or_default();
    let server_key = hex::encode(store.server_key()?);

    let tx = client.transaction().await?;
    let head: i64 = tx
        .query_one(
            "SELECT revision FROM rollgate_head WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await?
        .get(0);
    refuse_unless_empty(&tx, head).await?;

    let mut report = MigrateReport::default();
    let revisions: Vec<i64> = (1..=clamp(objects.len() as u64)).collect();
    for kind in Kind::ORDER {
        let (mut keys, mut bodies, mut revs) = (Vec::new(), Vec::new(), Vec::new());
        for (o, rev) in objects
            .iter()
            .zip(&revisions)
            .filter(|(o, _)| o.kind == kind)
        {
            keys.push(o.key.as_str());
            bodies.push(o.body.as_str());
            revs.push(*rev);
        }
        tx.execute(kind.insert_sql(), &[&keys, &bodies, &revs])
            .await?;
        let n = keys.len();
        match kind {
            Kind::Segment => report.segments = n,
            Kind::Flag => report.flags = n,
            Kind::Token => report.tokens = n,
            Kind::Policy => report.policies = n,
            Kind::Release => report.releases = n,
        }
    }
    let kinds: Vec<&str> = objects.iter().map(|o| o.kind.name()).collect();
    let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    let bodies: Vec<&str> = objects.iter().map(|o| o.body.as_str()).collect();
    tx.execute(
        "INSERT INTO rollgate_feed (revision, kind, key, body) \
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])",
        &[&revisions, &kinds, &keys, &bodies],
    )
    .await?;
    report.revision = revisions.last().copied().unwrap_or(0);
    tx.execute(
        "UPDATE rollgate_head SET revision = $1 WHERE id = 1",
        &[&report.revision],
    )
    .await?;

    report.audit_entries = copy_audit(&tx, store).await?;
    report.signal_series = copy_signals(&tx, &aggregates).await?;
    tx.execute(
        "INSERT INTO rollgate_meta (key, value) VALUES ('server_key', $1) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&server_key],
    )
    .await?;
    // Running nodes (if any) learn of the new head at commit, like after any write.
    tx.execute(
        "SELECT pg_notify('rollgate_feed', $1)",
        &[&report.revision.to_string()],
    )
    .await?;
    tx.commit().await?;
    Ok(report)
}

/// `Err(NotEmpty)` naming what the database holds, unless it holds no versioned state.
async fn refuse_unless_empty(
    tx: &tokio_postgres::Transaction<'_>,
    head: i64,
) -> Result<(), ClusterError> {
    let row = tx
        .query_one(
            "SELECT (SELECT count(*) FROM rollgate_flags), (SELECT count(*) FROM rollgate_segments), \
                    (SELECT count(*) FROM rollgate_tokens), (SELECT count(*) FROM rollgate_policies), \
                    (SELECT count(*) FROM rollgate_releases)",
            &[],
        )
        .await?;
    let mut held: Vec<String> = ["flags", "segments", "tokens", "policies", "releases"]
        .iter()
        .enumerate()
        .filter_map(|(i, what)| {
            let n: i64 = row.get(i);
            (n > 0).then(|| format!("{n} {what}"))
        })
        .collect();
    if head > 0 {
        held.insert(0, format!("head revision {head}"));
    }
    if held.is_empty() {
        Ok(())
    } else {
        Err(ClusterError::NotEmpty(held.join(", ")))
    }
}

/// Copies the audit log, oldest first, in chunks; returns how many entries.
async fn copy_audit(
    tx: &tokio_postgres::Transaction<'_>,
    store: &Store,
) -> Result<usize, ClusterError> {
    let insert = tx
        .prepare(
            "INSERT INTO rollgate_audit (id, flag, release, body) \
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])",
        )
        .await?;
    let mut total = 0;
    let mut chunk: Vec<AuditEntry> = Vec::with_capacity(CHUNK);
    let mut entries = store.audit_oldest_first();
    loop {
        let next = entries.next().transpose()?;
        let done = next.is_none();
        chunk.extend(next);
        if chunk.len() == CHUNK || (done && !chunk.is_empty()) {
            let ids: Vec<uuid::Uuid> = chunk.iter().map(|e| e.id).collect();
            let flags: Vec<Option<&str>> = chunk.iter().map(|e| e.flag.as_deref()).collect();
            let releases: Vec<Option<&str>> = chunk.iter().map(|e| e.release.as_deref()).collect();
            let bodies = chunk
                .iter()
                .map(|e| {
                    serde_json::to_string(e).map_err(|err| ClusterError::Encode {
                        what: format!("audit entry {}", e.id),
                        message: err.to_string(),
                    })
                })
                .collect::<Result<Vec<String>, _>>()?;
            tx.execute(&insert, &[&ids, &flags, &releases, &bodies])
                .await?;
            total += chunk.len();
            chunk.clear();
        }
        if done {
            return Ok(total);
        }
    }
}

/// Adds the saved signal totals and last-signal times (to whatever the database already
/// counted, so nodes that flushed signals before the migration lose nothing); returns how many
/// series.
async fn copy_signals(
    tx: &tokio_postgres::Transaction<'_>,
    saved: &SavedAggregates,
) -> Result<usize, ClusterError> {
    let series: Vec<_> = saved.iter().collect();
    for chunk in series.chunks(CHUNK) {
        let flags: Vec<&str> = chunk.iter().map(|s| s.0).collect();
        let variants: Vec<&str> = chunk.iter().map(|s| s.1).collect();
        let metrics: Vec<&str> = chunk.iter().map(|s| s.2).collect();
        let counts: Vec<i64> = chunk.iter().map(|s| clamp(s.3.count)).collect();
        let sums: Vec<f64> = chunk.iter().map(|s| s.3.sum).collect();
        let valued: Vec<i64> = chunk.iter().map(|s| clamp(s.3.valued)).collect();
        tx.execute(
            "INSERT INTO rollgate_signal_totals AS t (flag, variant, metric, count, sum, valued) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::float8[], $6::bigint[]) \
             ON CONFLICT (flag, variant, metric) DO UPDATE SET \
               count = least(t.count::numeric + excluded.count, 9223372036854775807)::bigint, \
               sum = t.sum + excluded.sum, \
               valued = least(t.valued::numeric + excluded.valued, 9223372036854775807)::bigint",
            &[&flags, &variants, &metrics, &counts, &sums, &valued],
        )
        .await?;
    }
    super::signals::add_sketches(tx, saved).await?;
    let seen: Vec<(&str, u64)> = saved.last_signals().collect();
    for chunk in seen.chunks(CHUNK) {
        let flags: Vec<&str> = chunk.iter().map(|s| s.0).collect();
        let ms: Vec<i64> = chunk.iter().map(|s| clamp(s.1)).collect();
        tx.execute(
            "INSERT INTO rollgate_signal_seen AS s (flag, last_signal_ms) \
             SELECT * FROM unnest($1::text[], $2::bigint[]) \
             ON CONFLICT (flag) DO UPDATE SET last_signal_ms = greatest(s.last_signal_ms, excluded.last_signal_ms)",
            &[&flags, &ms],
        )
        .await?;
    }
    Ok(series.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_beyond_bigint_are_clamped() {
        assert_eq!(clamp(7), 7);
        assert_eq!(clamp(u64::MAX), i64::MAX);
        assert_eq!(clamp(i64::MAX as u64 + 1), i64::MAX);
    }

    #[test]
    fn the_summary_names_every_kind_and_the_revision() {
        let report = MigrateReport {
            flags: 12,
            segments: 3,
            tokens: 2,
            policies: 1,
            releases: 4,
            audit_entries: 40,
            signal_series: 5,
            revision: 22,
        };
        assert_eq!(
            report.to_string(),
            "migrated 12 flags, 3 segments, 2 tokens, 1 policies, 4 releases, 40 audit entries, \
             5 signal series (revision 22)"
        );
    }

    #[tokio::test]
    async fn objects_come_in_feed_order_with_their_stored_json() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("opens");
        let entry = AuditEntry {
            id: uuid::Uuid::now_v7(),
            time: "2026-01-01T00:00:00.000Z".into(),
            actor: "test".into(),
            action: "policy.put".into(),
            flag: None,
            release: None,
            subject: None,
            reason: None,
            before: None,
            after: None,
            node: None,
        };
        let policy = r#"{"name":"p"}"#;
        store
            .commit(
                crate::store::Change::PutPolicy {
                    name: "p",
                    source: policy,
                },
                &entry,
            )
            .await
            .expect("commit");

        let objects = objects(&store).expect("reads");

        assert_eq!(
            objects,
            vec![Object {
                kind: Kind::Policy,
                key: "p".into(),
                body: policy.into()
            }]
        );
        let audit: Vec<_> = store.audit_oldest_first().collect();
        assert_eq!(audit.len(), 1);
    }
}
