//! Cluster mode: the PostgreSQL backend shared by several nodes (see docs/cluster.md).
//!
//! - `schema.rs`: versioned migrations.

pub mod schema;
