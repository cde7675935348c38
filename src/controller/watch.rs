//! What the controller watches: the flags whose signal batches must step the controller at
//! once (modules of running releases, flags ramped by hand under a policy), and the guards
//! armed on hand-ramped flags. The controller owns both; every control-path action that may
//! change them calls [`refresh`] after its commit (a commit never calls back up here).

use super::hand;
use crate::state::AppState;
use crate::writer::Writer;
use std::collections::HashSet;
use std::sync::Arc;

/// Recomputes the watched set and (dis)arms hand guards after a commit.
pub fn refresh(state: &AppState, w: &mut Writer) {
    let mut watched: HashSet<String> = w
        .releases
        .values()
        .filter(|r| r.is_live() && r.started)
        .flat_map(|r| r.modules.iter().map(|m| m.flag.clone()))
        .collect();
    let live = state.live.load();
    watched.extend(
        live.flags()
            .iter()
            .filter(|f| f.def.policy.is_some() && !f.def.rollout.is_zero())
            .map(|f| f.def.key.clone()),
    );
    state.watched.store(Arc::new(watched));
    hand::arm(state, w);
}
