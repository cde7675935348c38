//! The controller's Prometheus families: module states and percentages, each guard's
//! evidence, threshold, breach and rates, signal totals, stream subscribers, webhook outcomes,
//! and reach (live clients; each flag's newest change: revision, confirmed share, latency);
//! and what the shipped alert rules (deploy/prometheus) read besides: paused modules by cause,
//! release events by kind, the node's readiness and whether it leads the controller.

use crate::analysis;
use crate::metrics::Family;
use crate::release::{ModuleState, PauseCause, Release, ReleaseState};
use crate::state::AppState;
use crate::webhooks::WebhookKind;
use std::sync::atomic::Ordering::Relaxed;

/// Control-plane metric families: module states, guard readings, signals, streams, webhooks.
pub fn families(state: &AppState, releases: &[Release]) -> Vec<Family> {
    let live = state.live.load();
    let policies = state.policies.load();
    let now = crate::clock::now_ms();
    let mut module_state = Family::gauge(
        "module_state",
        "1 for the current state of each release module",
    );
    let mut module_pct = Family::gauge(
        "module_percentage",
        "Rollout percentage of each release module",
    );
    let mut evidence = Family::gauge(
        "guard_evidence",
        "Log evidence against the band (fires at guard_threshold)",
    );
    let mut threshold = Family::gauge("guard_threshold", "Log evidence threshold ln(1/alpha)");
    let mut breached = Family::gauge("guard_breached", "1 while the guard is out of band");
    let mut rate = Family::gauge(
        "guard_rate",
        "Per-exposure rate of the guarded metric in the current stage",
    );
    let mut signals = Family::counter("signals", "Signals received by flag, variant and metric");
    for r in releases
        .iter()
        .filter(|r| r.is_live() || r.state() == ReleaseState::RolledBack)
    {
        let policy = r.policy.as_ref().and_then(|p| policies.get(p));
        for m in &r.modules {
            let labels = |extra: Vec<(&'static str, String)>| {
                let mut l = vec![("release", r.name.clone()), ("flag", m.flag.clone())];
                l.extend(extra);
                l
            };
            module_state.push(labels(vec![("state", m.state.as_str().to_owned())]), 1.0);
            let Some(def) = live.get(&m.flag).map(|f| &f.def) else {
                continue;
            };
            module_pct.push(labels(vec![]), def.rollout.as_f64());
            let answers = state.prom.module(r.id, &m.flag);
            let reading =
                analysis::verdict_sourced(policy, &state.signals, Some(&answers), m, def, now);
            for g in reading.guards {
                let with_metric = || labels(vec![("metric", g.metric.clone())]);
                if let Some(e) = g.ln_evidence {
                    evidence.push(with_metric(), e);
                }
                threshold.push(with_metric(), g.ln_threshold);
                breached.push(with_metric(), f64::from(u8::from(g.state == "breach")));
                for (variant, r) in [("new", g.new), ("old", g.old)] {
                    if let Some(x) = r.rate {
                        rate.push(
                            labels(vec![
                                ("metric", g.metric.clone()),
                                ("variant", variant.into()),
                            ]),
                            x,
                        );
                    }
                }
            }
        }
    }
    let saved = state.signals.save();
    for (flag, series, metric, totals) in saved.iter() {
        // A series of signals attributed to a release audience gets an `audience` label.
        let (variant, audience) = crate::signals::split_series_key(series);
        let mut labels = vec![
            ("flag", flag.to_owned()),
            ("variant", variant.to_owned()),
            ("metric", metric.to_owned()),
        ];
        labels.extend(audience.map(|a| ("audience", a.to_owned())));
        signals.push(labels, totals.count as f64);
    }
    let mut subscribers = Family::gauge("stream_subscribers", "Connected streaming clients");
    subscribers.push(vec![], state.hub.subscribers() as f64);
    let stats = state.webhooks.stats();
    let mut hooks = Family::counter(
        "webhook_deliveries",
        "Webhook deliveries by outcome (per event and URL)",
    );
    for (outcome, v) in [
        ("delivered", &stats.delivered),
        ("failed", &stats.failed),
        ("retried", &stats.retried),
        ("dropped", &stats.dropped),
    ] {
        hooks.push(vec![("outcome", outcome.into())], v.load(Relaxed) as f64);
    }
    let mut out = vec![
        module_state,
        module_pct,
        evidence,
        threshold,
        breached,
        rate,
        signals,
        subscribers,
        hooks,
    ];
    out.extend(reach_families(state, now));
    out.extend(node_families(state));
    out.extend(alert_families(state, releases));
    out
}

/// The families the alert rules need: `module_paused{cause}`, `release_events_total{kind}`,
/// `ready`, `controller_leader`.
fn alert_families(state: &AppState, releases: &[Release]) -> Vec<Family> {
    let mut paused = Family::gauge(
        "module_paused",
        "1 for each paused release module, by cause (operator, guard, data_quality)",
    );
    for r in releases.iter().filter(|r| r.is_live()) {
        for m in &r.modules {
            // A module with audiences is paused where any of its audiences is.
            let mut causes: Vec<&'static str> = std::iter::once(m)
                .chain(m.audiences.iter().map(|a| &a.phase))
                .filter(|x| x.state == ModuleState::Paused)
                .filter_map(|x| x.paused.as_ref().map(cause_name))
                .collect();
            causes.sort_unstable();
            causes.dedup();
            for cause in causes {
                let labels = vec![
                    ("release", r.name.clone()),
                    ("flag", m.flag.clone()),
                    ("cause", cause.to_owned()),
                ];
                paused.push(labels, 1.0);
            }
        }
    }
    let stats = state.webhooks.stats();
    let mut events = Family::counter(
        "release_events",
        "Release events this node decided (the webhook events), by kind, with or without targets",
    );
    for kind in WebhookKind::ALL {
        let labels = vec![("kind", kind.as_str().into())];
        events.push(labels, stats.events_of(kind) as f64);
    }
    let up = state.store.tokens().is_ok() && state.cluster.as_ref().is_none_or(|c| c.db_up());
    let mut ready = Family::gauge(
        "ready",
        "1 while /readyz answers ready: the store answers and (in a cluster) writes are accepted",
    );
    ready.push(vec![], f64::from(u8::from(up)));
    let mut leader = Family::gauge(
        "controller_leader",
        "1 while this node runs the controller (a single node always does)",
    );
    leader.push(vec![], f64::from(u8::from(state.lease.held())));
    vec![paused, events, ready, leader]
}

fn cause_name(cause: &PauseCause) -> &'static str {
    match cause {
        PauseCause::Operator => "operator",
        PauseCause::Guard { .. } => "guard",
        PauseCause::DataQuality => "data_quality",
    }
}

/// The applied revision (every node), and in a cluster the node's view of it: database
/// reachable, notification connection up, controller lease held.
fn node_families(state: &AppState) -> Vec<Family> {
    let mut applied = Family::gauge(
        "applied_revision",
        "The last revision this node applied (in a cluster: the global revision of docs/cluster.md)",
    );
    applied.push(vec![], state.hub.last_seq() as f64);
    let mut out = vec![applied];
    if let Some(node) = &state.cluster {
        let node_label = || vec![("node", node.id.clone())];
        let flag = |b: bool| f64::from(u8::from(b));
        for (name, help, value) in [
            (
                "cluster_database_up",
                "1 while the database answers (writes are accepted)",
                node.db_up(),
            ),
            (
                "cluster_listening",
                "1 while the notification connection is up",
                node.wakes.connected.load(Relaxed),
            ),
            (
                "cluster_leader",
                "1 while this node holds the controller lease",
                state.lease.held(),
            ),
        ] {
            let mut family = Family::gauge(name, help);
            family.push(node_label(), flag(value));
            out.push(family);
        }
        let mut outbox = Family::gauge(
            "cluster_outbox_pending",
            "Signal batches accepted by this node and not yet counted in the database",
        );
        outbox.push(node_label(), state.store.outbox_len() as f64);
        out.push(outbox);
        let mut epoch = Family::gauge(
            "cluster_lease_epoch",
            "The epoch of the controller lease this node holds (0 when it holds none)",
        );
        epoch.push(
            node_label(),
            state.lease.fence().map_or(0, |f| f.epoch) as f64,
        );
        out.push(epoch);
    }
    out
}

/// Reach: live clients, and for each flag's newest kept change its revision, confirmed share
/// and apply latencies. One row per flag at most (the tracker keeps 1,024 changes).
fn reach_families(state: &AppState, now: u64) -> Vec<Family> {
    let gauges = state.reach.gauges(now);
    let mut live = Family::gauge(
        "reach_live_clients",
        "Clients heard from within the live window",
    );
    live.push(vec![], gauges.live_clients as f64);
    let mut evicted = Family::counter(
        "reach_clients_evicted",
        "Clients forgotten because the tracker was full",
    );
    evicted.push(vec![], gauges.evicted_clients as f64);
    let mut alerts = Family::counter(
        "reach_unconfirmed_rollbacks",
        "Rollbacks alerted on as unconfirmed (rollback_unconfirmed webhooks)",
    );
    alerts.push(vec![], gauges.unconfirmed_alerts as f64);
    let mut revision = Family::gauge(
        "reach_revision",
        "Revision of each flag's newest tracked change",
    );
    let mut ratio = Family::gauge(
        "reach_confirmed_ratio",
        "Share of live clients that applied each flag's newest change",
    );
    let mut latency = Family::gauge(
        "reach_latency_seconds",
        "Time from each flag's newest change to the clients' apply, by quantile",
    );
    for (flag, f) in gauges.latest {
        revision.push(vec![("flag", flag.clone())], f.revision as f64);
        if let Some(share) = f.share {
            ratio.push(vec![("flag", flag.clone())], share);
        }
        for (q, ms) in [("0.5", f.p50_ms), ("0.99", f.p99_ms)] {
            if let Some(ms) = ms {
                latency.push(
                    vec![("flag", flag.clone()), ("quantile", q.into())],
                    ms as f64 / 1000.0,
                );
            }
        }
    }
    vec![live, evicted, alerts, revision, ratio, latency]
}
