//! The writer lock as handlers hold it: the local `Writer` and, in a cluster, the open database
//! transaction that holds the global head lock (`cluster::pg::WriteTx`). Taking it (see
//! `AppState::write`) catches the node up to that head first, so every change is built on the
//! newest state of the whole cluster and no two nodes' changes can interleave.

use super::Writer;
use crate::cluster::pg::WriteTx;
use std::ops::{Deref, DerefMut};

/// The single writer, locked (and in a cluster, the head locked too).
pub struct WriteGuard<'a> {
    writer: tokio::sync::MutexGuard<'a, Writer>,
    /// The open transaction holding the head lock; taken by the commit.
    pub(super) tx: Option<WriteTx>,
}

impl<'a> WriteGuard<'a> {
    /// The local lock only: on a single node, all there is; in a cluster, the commit begins
    /// the database transaction itself and refuses the batch if another node wrote since
    /// this node's applied revision (the controller's pass decides this way).
    pub fn local(writer: tokio::sync::MutexGuard<'a, Writer>) -> Self {
        WriteGuard { writer, tx: None }
    }

    /// The lock of a cluster node, holding `tx`.
    pub fn cluster(writer: tokio::sync::MutexGuard<'a, Writer>, tx: WriteTx) -> Self {
        WriteGuard {
            writer,
            tx: Some(tx),
        }
    }
}

impl Deref for WriteGuard<'_> {
    type Target = Writer;

    fn deref(&self) -> &Writer {
        &self.writer
    }
}

impl DerefMut for WriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut Writer {
        &mut self.writer
    }
}
