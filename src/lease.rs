//! "Am I the controller?" — the one seam that decides whether this node may step releases.
//!
//! A single node on its embedded store always is. A cluster node holds a fenced lease in the
//! database (`cluster::lease`): the controller asks before every pass, and every decision it
//! commits carries the lease's [`Fence`], which the commit checks in the same transaction.

/// What a controller decision commits under: it commits only while `epoch` is the lease's
/// current epoch and `holder` still holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The lease holder's name (node id and incarnation).
    pub holder: String,
    /// The epoch this holder acquired.
    pub epoch: i64,
}

/// Whether this node currently leads the controller.
pub trait Lease: Send + Sync + std::fmt::Debug {
    /// True while this node may act as the controller.
    fn held(&self) -> bool;

    /// The fence of the current tenure; `None` on a single node (nothing to fence).
    fn fence(&self) -> Option<Fence> {
        None
    }
}

/// The lease of a single node: always held.
#[derive(Debug, Default, Clone, Copy)]
pub struct SingleNode;

impl Lease for SingleNode {
    fn held(&self) -> bool {
        true
    }
}
