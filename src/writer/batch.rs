//! A batch: every change of one control-path action, committed together or not at all.

use super::Ahead;
use crate::auth::StoredToken;
use crate::policies::Policy;
use crate::release::Release;
use crate::store::AuditEntry;
use crate::webhooks::WebhookEvent;
use rollgate_eval::{FlagDef, SegmentDef};

/// Changes committed together.
#[derive(Default)]
pub struct Batch {
    /// Flags created or replaced.
    pub flags: Vec<FlagDef>,
    /// Flags deleted.
    pub deleted_flags: Vec<String>,
    /// Segments created or replaced.
    pub segments: Vec<SegmentDef>,
    /// Segments deleted (no flag or segment uses them: the caller checks).
    pub deleted_segments: Vec<String>,
    /// Releases created or changed.
    pub releases: Vec<Release>,
    /// Tokens created or replaced.
    pub tokens: Vec<StoredToken>,
    /// Tokens revoked.
    pub deleted_tokens: Vec<String>,
    /// Policies created or replaced.
    pub policies: Vec<Policy>,
    /// Policies deleted (no flag or release names them: the caller checks).
    pub deleted_policies: Vec<String>,
    /// Audit entries.
    pub audit: Vec<AuditEntry>,
    /// Webhook events to send once committed.
    pub webhooks: Vec<WebhookEvent>,
    /// The next snapshot, prepared before the writer lock (see [`super::Ahead`]).
    pub ahead: Option<Ahead>,
    /// A controller decision's fence: in a cluster the commit checks, in the same
    /// transaction, that this lease tenure is still current (`None`: not a decision).
    pub fence: Option<crate::lease::Fence>,
}

impl Batch {
    /// A batch holding only an audit entry (a decision that changes nothing else).
    pub fn audit_only(entry: AuditEntry) -> Self {
        Batch {
            audit: vec![entry],
            ..Batch::default()
        }
    }

    /// True when there is nothing to commit.
    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
            && self.deleted_flags.is_empty()
            && self.segments.is_empty()
            && self.deleted_segments.is_empty()
            && self.releases.is_empty()
            && self.tokens.is_empty()
            && self.deleted_tokens.is_empty()
            && self.policies.is_empty()
            && self.deleted_policies.is_empty()
            && self.audit.is_empty()
            && self.webhooks.is_empty()
    }
}
