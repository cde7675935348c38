//! What the demo watches and prints: each module's state as the release status shows it, the
//! traffic per variant, how fast the users moved back after the rollback, the reach figures and
//! the summary. The simulation itself is in `main.rs`.

use super::*;

/// What the timeline last printed for a module.
#[derive(Debug, Clone, PartialEq)]
struct Shown {
    state: String,
    stage: Option<u64>,
    percentage: f64,
}

fn module_shown(m: &Value) -> Shown {
    Shown {
        state: m["state"].as_str().unwrap_or("?").to_owned(),
        stage: m["stage"].as_u64(),
        percentage: m["percentage"].as_f64().unwrap_or(0.0),
    }
}

/// Follows the release status and the app's counters, printing the timeline, until the
/// release is no longer live and the app applied the rollback (or the time is up).
pub(super) async fn watch(
    sim: &Sim,
    admin: &Admin,
    release_id: &str,
    instances: &[Arc<Instance>],
) -> Res<(Outcome, Value)> {
    let deadline = sim.start + Duration::from_secs(sim.args.seconds);
    let mut shown: Vec<Option<Shown>> = vec![None; MODULES.len()];
    let mut last_traffic = Instant::now();
    let mut prev_orders = [[0u64; 2]; 2];
    let mut prev_failures = [[0u64; 2]; 2];
    let mut rollback_at_ms: Option<u64> = None;
    let mut moved: Option<(Vec<f64>, Vec<f64>)> = None;
    let mut finished_at: Option<Instant> = None;
    loop {
        let status = admin
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/releases/{release_id}"),
                None,
            )
            .await?;
        let modules = status["modules"].as_array().cloned().unwrap_or_default();
        for (m, module) in modules.iter().enumerate().take(MODULES.len()) {
            let now = module_shown(module);
            if shown[m].as_ref() == Some(&now) {
                continue;
            }
            print_module(sim, module, &now);
            if now.state == "rolled_back" && m == sim.faulty && rollback_at_ms.is_none() {
                rollback_at_ms = module["decision"]["at_ms"].as_u64().or(Some(now_ms()));
            }
            shown[m] = Some(now);
        }
        if last_traffic.elapsed() >= Duration::from_secs(2) {
            print_traffic(sim, &mut prev_orders, &mut prev_failures, last_traffic);
            last_traffic = Instant::now();
        }
        if let (Some(at_ms), None) = (rollback_at_ms, &moved) {
            moved = users_moved_back(sim, instances, at_ms);
        }
        let state = status["state"].as_str().unwrap_or("?").to_owned();
        let live = matches!(state.as_str(), "pending" | "running" | "paused");
        let rolled_back_seen = rollback_at_ms.is_none() || moved.is_some();
        if !live && rolled_back_seen {
            // Give the SDKs a few flushes to report the applied revision (reach figures).
            let done = *finished_at.get_or_insert_with(Instant::now);
            if done.elapsed() >= Duration::from_millis(1_500) || Instant::now() >= deadline {
                return Ok((outcome_of(sim, instances, &status, moved, true), status));
            }
        } else if Instant::now() >= deadline {
            println!(
                "[{:5.1}s] time is up (--seconds {}): release still {state}",
                sim.secs(),
                sim.args.seconds
            );
            return Ok((outcome_of(sim, instances, &status, moved, false), status));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_module(sim: &Sim, module: &Value, now: &Shown) {
    let flag = module["flag"].as_str().unwrap_or("?");
    let stages = module["stages"].as_array().map_or(0, Vec::len);
    let stage = now
        .stage
        .map_or_else(|| "-".to_owned(), |s| format!("{}/{stages}", s + 1));
    let reason = module["decision"]["reason"]
        .as_str()
        .or(module["reason"].as_str())
        .unwrap_or("");
    match now.state.as_str() {
        "rolled_back" => println!(
            "[{:5.1}s] {flag:<12} ROLLED BACK to 0% by {}: {reason}",
            sim.secs(),
            module["decision"]["actor"].as_str().unwrap_or("?")
        ),
        "completed" => println!(
            "[{:5.1}s] {flag:<12} completed at {}%",
            sim.secs(),
            now.percentage
        ),
        state => println!(
            "[{:5.1}s] {flag:<12} {state:<8} {:>5}%  stage {stage}{}",
            sim.secs(),
            now.percentage,
            module["waiting"]
                .as_str()
                .map(|w| format!("  ({w})"))
                .unwrap_or_default()
        ),
    }
}

fn print_traffic(
    sim: &Sim,
    prev_orders: &mut [[u64; 2]; 2],
    prev_failures: &mut [[u64; 2]; 2],
    since: Instant,
) {
    let secs = since.elapsed().as_secs_f64().max(1e-3);
    let mut parts = Vec::new();
    let mut total = 0;
    for (m, flag) in MODULES.iter().enumerate() {
        let mut o = [0u64; 2];
        let mut f = [0u64; 2];
        for v in 0..2 {
            let orders = sim.tallies[m].orders[v].load(Ordering::Relaxed);
            let failures = sim.tallies[m].failures[v].load(Ordering::Relaxed);
            o[v] = orders - prev_orders[m][v];
            f[v] = failures - prev_failures[m][v];
            prev_orders[m][v] = orders;
            prev_failures[m][v] = failures;
        }
        total = o[0] + o[1];
        let rate = |v: usize| {
            if o[v] == 0 {
                "-".to_owned()
            } else {
                format!("{:.2}%", f[v] as f64 * 100.0 / o[v] as f64)
            }
        };
        parts.push(format!(
            "{flag}: new {:.0}% of orders, payment errors new {} old {}",
            o[1] as f64 * 100.0 / (o[0] + o[1]).max(1) as f64,
            rate(1),
            rate(0)
        ));
    }
    println!(
        "[{:5.1}s]   traffic {:.0} orders/s | {}",
        sim.secs(),
        total as f64 / secs,
        parts.join(" | ")
    );
}

/// Once every instance applied a revision that serves no user the faulty module's new
/// variant: per instance, decision → apply and apply → last new-variant order.
fn users_moved_back(
    sim: &Sim,
    instances: &[Arc<Instance>],
    decided_ms: u64,
) -> Option<(Vec<f64>, Vec<f64>)> {
    let mut to_apply = Vec::new();
    let mut moved = Vec::new();
    let mut revision = 0;
    for inst in instances {
        let applied = inst.applied.lock().ok()?.clone();
        // The rollback: the first revision serving nobody the new variant after one that did.
        let i = applied
            .windows(2)
            .position(|w| w[0].on_users > 0 && w[1].on_users == 0)?;
        let a = applied[i + 1];
        revision = revision.max(a.revision);
        let apply_ns = a.at.saturating_duration_since(sim.start).as_nanos() as u64;
        let apply_wall_ms = now_ms() as f64 - a.at.elapsed().as_secs_f64() * 1000.0;
        to_apply.push((apply_wall_ms - decided_ms as f64).max(0.0));
        let last_on = inst.last_faulty_on_ns.load(Ordering::Relaxed);
        moved.push(last_on.saturating_sub(apply_ns) as f64 / 1e6);
    }
    let worst_apply = to_apply.iter().cloned().fold(0.0, f64::max);
    let worst_moved = moved.iter().cloned().fold(0.0, f64::max);
    println!(
        "[{:5.1}s]   every app server applied the rollback (revision {}): {:.0} ms after the \
         decision (slowest of {}); the last order served the new `{}` {:.1} ms after it was \
         applied; the users moved back within {:.0} ms",
        sim.secs(),
        revision,
        worst_apply,
        instances.len(),
        MODULES[sim.faulty],
        worst_moved,
        worst_apply + worst_moved
    );
    Some((to_apply, moved))
}

fn outcome_of(
    sim: &Sim,
    instances: &[Arc<Instance>],
    status: &Value,
    moved: Option<(Vec<f64>, Vec<f64>)>,
    finished: bool,
) -> Outcome {
    let (decision_to_apply_ms, moved_back_ms) = moved.unwrap_or_default();
    let users_on_faulty_after = instances
        .iter()
        .map(|inst| {
            let flags = inst.client.flags();
            inst.users
                .iter()
                .filter(|u| flags.variant_for(MODULES[sim.faulty], u) == Some("on"))
                .count()
        })
        .sum();
    Outcome {
        release: String::new(),
        state: status["state"].as_str().unwrap_or("?").to_owned(),
        module_states: status["modules"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .map(|m| {
                        let s = |k: &str| m[k].as_str().unwrap_or("?").to_owned();
                        (s("flag"), s("state"))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        decision_to_apply_ms,
        moved_back_ms,
        users_on_faulty_after,
        orders: 0,
        finished,
    }
}

/// The reach figures of each module's newest change, from the release status.
pub(super) fn print_reach(status: &Value) {
    println!("reach (from the release status):");
    let Some(modules) = status["modules"].as_array() else {
        return;
    };
    if !modules.iter().any(|m| m.get("reach").is_some()) {
        println!("  (reach not available on this server)");
        return;
    }
    for m in modules {
        let flag = m["flag"].as_str().unwrap_or("?");
        let r = &m["reach"];
        if r.is_null() {
            println!("  {flag:<12} no change tracked");
            continue;
        }
        let ms = |k: &str| r[k].as_u64().map_or("-".to_owned(), |v| format!("{v} ms"));
        println!(
            "  {flag:<12} revision {} ({}{}): {} of {} live clients applied it ({}), p50 {}, \
             p99 {}, {}",
            r["revision"],
            r["action"].as_str().unwrap_or("?"),
            if r["rollback"] == true {
                ", a rollback"
            } else {
                ""
            },
            r["confirmed"],
            r["live_clients"],
            r["share"]
                .as_f64()
                .map_or("-".to_owned(), |s| format!("{:.0}%", s * 100.0)),
            ms("p50_ms"),
            ms("p99_ms"),
            r["state"].as_str().unwrap_or("?")
        );
    }
}

pub(super) fn print_summary(sim: &Sim, o: &Outcome) {
    println!("summary:");
    println!(
        "  release {}: {} ({})",
        o.release,
        o.state,
        o.module_states
            .iter()
            .map(|(f, s)| format!("{f} {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  {} orders in {:.1} s; users still served the new `{}`: {}",
        o.orders,
        sim.secs(),
        MODULES[sim.faulty],
        o.users_on_faulty_after
    );
    if let (Some(apply), Some(moved)) = (
        o.decision_to_apply_ms.iter().cloned().reduce(f64::max),
        o.moved_back_ms.iter().cloned().reduce(f64::max),
    ) {
        let verdict = if apply + moved <= 1000.0 {
            "within a second"
        } else {
            "SLOWER THAN A SECOND"
        };
        println!(
            "  rollback decision -> applied by every app server: {apply:.0} ms; -> last \
             new-variant order: +{moved:.1} ms ({verdict})"
        );
    }
    if !o.finished {
        println!(
            "  the release did not finish within --seconds {}",
            sim.args.seconds
        );
    }
}
