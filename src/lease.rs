//! "Am I the controller?" — the one seam that decides whether this node may step releases.
//!
//! A single node on its embedded store always is. A cluster backend implements [`Lease`] with a
//! fenced lease in its database; the controller asks before every pass and nothing else changes.

/// Whether this node currently leads the controller.
pub trait Lease: Send + Sync + std::fmt::Debug {
    /// True while this node may act as the controller.
    fn held(&self) -> bool;
}

/// The lease of a single node: always held.
#[derive(Debug, Default, Clone, Copy)]
pub struct SingleNode;

impl Lease for SingleNode {
    fn held(&self) -> bool {
        true
    }
}
