//! # ordering-app: the loop closed, from a client app's side
//!
//! A restaurant's ordering app with thousands of users goes through one release of two
//! modules: `qr-ordering` (order at the table by QR code) and `points` (loyalty points at
//! payment). The new version of one module (`--faulty`, default `points`) fails payments more
//! often (`--fail-rate`, default 8%, against `--base-fail-rate`, 0.5%, everywhere else).
//!
//! The app evaluates both flags locally with the SDK for every order and reports each failed
//! payment against both flags, with the variant each one served: it does not know which
//! module broke the payment. The two modules bucket users independently, so rollgate can tell
//! them apart: it ramps the healthy module to 100% and rolls the faulty one back **by itself**,
//! from the signals the SDK sends. The demo prints that as a timeline, measures how fast the
//! users moved back (from the SDK applying the rollback's revision to the last order served
//! with the faulty module's new variant), prints the reach figures of the release status, and
//! exits with a summary.
//!
//! ```sh
//! cargo run --release -- serve                                        # one shell
//! cargo run --release -p rollgate-client --example ordering-app       # another
//! ```
//!
//! It sets itself up with an admin token (`--token`, `ROLLGATE_TOKEN` or `ROLLGATE_ADMIN_TOKEN`)
//! on the server at `--url` / `ROLLGATE_URL` (default `http://127.0.0.1:8080`): a client
//! token, the policy `ordering-app` (one core guard on `payment_error`), the two flags (reset
//! to 0%) and a release `lunch-rush-<time>` with short stages that overlap.
//!
//! Time is compressed: `--users` users (default 5,000) each place `--order-rate` orders a
//! second (default 4), spread over `--instances` app servers (default 4, each one SDK client
//! and one thread), so half a minute holds the traffic of a long lunch rush. Because of that
//! the policy asks each stage to be able to detect a tripling of the payment error rate
//! (`detect = 2.0`), not the default +50%, which would need hours of traffic at 0.5%.
//!
//! The demo logic is [`run`]; `tests/ordering_app.rs` includes this file and runs it against
//! an in-process server.

mod watch;

use clap::Parser;
use rollgate_client::{Client, Context, Measure};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use watch::{print_reach, print_summary, watch};

/// The two modules of the release, in plan order.
pub const MODULES: [&str; 2] = ["qr-ordering", "points"];
/// The policy the demo installs.
pub const POLICY: &str = "ordering-app";
/// The metric of a failed payment.
pub const PAYMENT_ERROR: &str = "payment_error";

/// The command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "ordering-app",
    about = "A restaurant ordering app going through a two-module rollgate release"
)]
pub struct Args {
    /// The rollgate server.
    #[arg(long, env = "ROLLGATE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An admin token, to set the demo up (else `ROLLGATE_ADMIN_TOKEN` is read).
    #[arg(long, env = "ROLLGATE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Simulated users (at least 1,000: with fewer, the users actually in a 10% cohort
    /// differ from 10% by chance and the server's sample-ratio check pauses the module).
    #[arg(long, default_value_t = 5_000)]
    pub users: usize,
    /// Orders per user per second (time is compressed).
    #[arg(long, default_value_t = 4.0)]
    pub order_rate: f64,
    /// App servers: each one SDK client and one thread serving its share of the users.
    #[arg(long, default_value_t = 4)]
    pub instances: usize,
    /// The longest the demo runs before giving up.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Bake time of each stage, in seconds.
    #[arg(long, default_value_t = 7.0)]
    pub stage_seconds: f64,
    /// Stage percentages, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,25,50,100")]
    pub stages: Vec<f64>,
    /// The module whose new version fails payments more often.
    #[arg(long, default_value = "points", value_parser = ["qr-ordering", "points"])]
    pub faulty: String,
    /// Payment failure rate of the faulty module's new version.
    #[arg(long, default_value_t = 0.08)]
    pub fail_rate: f64,
    /// Payment failure rate everywhere else.
    #[arg(long, default_value_t = 0.005)]
    pub base_fail_rate: f64,
    /// The SDK's flush interval, in milliseconds.
    #[arg(long, default_value_t = 250)]
    pub flush_ms: u64,
}

/// What a run found, for the summary and for tests (which check the server, not this).
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The release's name.
    pub release: String,
    /// Its final state in the release status.
    pub state: String,
    /// Each module's final state, in plan order.
    pub module_states: Vec<(String, String)>,
    /// Per app instance: milliseconds from the server's rollback decision to the SDK
    /// applying it.
    pub decision_to_apply_ms: Vec<f64>,
    /// Per app instance: milliseconds from the SDK applying the rollback to the last order
    /// served with the faulty module's new variant (0 when none came after it).
    pub moved_back_ms: Vec<f64>,
    /// Users served the faulty module's new variant after the rollback was applied
    /// (re-evaluated for every user of every instance).
    pub users_on_faulty_after: usize,
    /// Orders placed.
    pub orders: u64,
    /// Whether the release finished within `--seconds`.
    pub finished: bool,
}

type Res<T> = Result<T, String>;

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ordering-app: cannot start a Tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(outcome) if outcome.finished => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ordering-app: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The admin API, for setting up and watching the release.
struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Res<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(10));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(|e| {
            format!(
                "cannot reach rollgate at {} ({e}); start it with `cargo run --release -- serve`",
                self.base
            )
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!("{method} {path}: {status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("{method} {path}: not JSON ({e})"))
    }
}

/// Counters of one module's variant (`[old, new]`).
#[derive(Default)]
struct Tally {
    orders: [AtomicU64; 2],
    failures: [AtomicU64; 2],
}

/// A revision an instance's SDK applied, and how many of its users the faulty module then
/// served its new variant.
#[derive(Debug, Clone, Copy)]
struct Applied {
    revision: u64,
    at: Instant,
    on_users: usize,
}

/// One app server: an SDK client, its users, what it saw.
struct Instance {
    client: Client,
    users: Vec<Context>,
    applied: Mutex<Vec<Applied>>,
    /// Nanoseconds since the demo's start of the last order served the faulty module's new
    /// variant.
    last_faulty_on_ns: AtomicU64,
}

struct Sim {
    args: Args,
    start: Instant,
    stop: AtomicBool,
    tallies: [Tally; 2],
    faulty: usize,
}

impl Sim {
    fn secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn user(i: usize) -> Context {
    let mut ctx = Context::new();
    ctx.insert("targetingKey".into(), format!("guest-{i:05}").into());
    let tier = match i % 10 {
        0 => "gold",
        1..=3 => "silver",
        _ => "basic",
    };
    ctx.insert("tier".into(), tier.into());
    ctx.insert("restaurant".into(), format!("r{}", i % 40).into());
    ctx
}

fn check(args: &Args) -> Res<()> {
    if args.users < 1_000 {
        return Err(format!(
            "--users {}: at least 1,000 (with fewer, the users in a 10% cohort differ from 10% by \
             chance and the server's sample-ratio check pauses the module)",
            args.users
        ));
    }
    let rates = [args.fail_rate, args.base_fail_rate];
    if rates.iter().any(|r| !(0.0..=1.0).contains(r)) {
        return Err("--fail-rate and --base-fail-rate are probabilities in [0, 1]".into());
    }
    if !(args.order_rate > 0.0 && args.order_rate.is_finite()) {
        return Err("--order-rate must be a positive number".into());
    }
    if !(args.stage_seconds >= 0.0 && args.stage_seconds.is_finite()) {
        return Err("--stage-seconds must be a number >= 0".into());
    }
    if args.instances == 0 || args.instances > 64 {
        return Err("--instances: 1 to 64".into());
    }
    if args.stages.is_empty() {
        return Err("--stages: at least one percentage".into());
    }
    Ok(())
}

/// Sets up the demo on the server, runs the simulated app until the release has finished (or
/// `--seconds` have passed), and prints the timeline and a summary.
pub async fn run(args: Args) -> Res<Outcome> {
    check(&args)?;
    let token = args
        .token
        .clone()
        .or_else(|| std::env::var("ROLLGATE_ADMIN_TOKEN").ok())
        .ok_or("an admin token is needed: --token, ROLLGATE_TOKEN or ROLLGATE_ADMIN_TOKEN")?;
    let admin = Admin {
        http: reqwest::Client::new(),
        base: args.url.trim_end_matches('/').to_owned(),
        token,
    };
    let faulty = MODULES
        .iter()
        .position(|m| *m == args.faulty)
        .ok_or("--faulty: qr-ordering or points")?;
    let suffix = chrono_suffix();
    let release_name = format!("lunch-rush-{suffix}");

    // --- set up: a client token, the policy, the flags, the release ---
    let client_token = admin
        .call(
            reqwest::Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": format!("ordering-app-{suffix}"), "role": "client"})),
        )
        .await?["token"]
        .as_str()
        .ok_or("the token answer has no token")?
        .to_owned();
    admin
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/policies/{POLICY}"),
            Some(json!({
                "name": POLICY,
                "guard": [{"metric": PAYMENT_ERROR, "class": "core",
                           "max_relative_increase": 0.0, "max_rate": 0.05, "detect": 2.0}]
            })),
        )
        .await?;
    for flag in MODULES {
        admin
            .call(
                reqwest::Method::PUT,
                &format!("/api/v1/flags/{flag}"),
                Some(json!({
                    "key": flag, "type": "boolean", "variants": {"off": false, "on": true},
                    "off_variant": "off", "on_variant": "on", "enabled": true, "rollout": 0,
                    "rules": [], "policy": POLICY
                })),
            )
            .await
            .map_err(|e| {
                format!("{e}\n(is an earlier demo's release still live? `rollgate release list`)")
            })?;
    }
    let stage_ms = (args.stage_seconds * 1000.0).round() as u64;
    let release = admin
        .call(
            reqwest::Method::POST,
            "/api/v1/releases",
            Some(json!({
                "name": release_name, "policy": POLICY, "overlap": true,
                "stages": {"percentages": args.stages, "min_duration": format!("{stage_ms}ms"),
                           "min_exposures": 500},
                "modules": MODULES.iter().map(|f| json!({"flag": f})).collect::<Vec<_>>()
            })),
        )
        .await?;
    let release_id = release["id"]
        .as_str()
        .ok_or("the release answer has no id")?
        .to_owned();

    // --- the app: one SDK client per instance, users split between them ---
    let mut instances = Vec::new();
    let per = args.users.div_ceil(args.instances);
    for n in 0..args.instances {
        let client = Client::builder(&admin.base, &client_token)
            .start_timeout(Duration::from_secs(5))
            .flush_interval(Duration::from_millis(args.flush_ms.max(1)))
            .heartbeat_interval(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| format!("SDK client: {e}"))?;
        if !client.status().ready {
            return Err("the SDK got no config within 5 s".into());
        }
        let users = (n * per..((n + 1) * per).min(args.users))
            .map(user)
            .collect();
        instances.push(Arc::new(Instance {
            client,
            users,
            applied: Mutex::new(Vec::new()),
            last_faulty_on_ns: AtomicU64::new(0),
        }));
    }
    let sim = Arc::new(Sim {
        args: args.clone(),
        start: Instant::now(),
        stop: AtomicBool::new(false),
        tallies: Default::default(),
        faulty,
    });
    println!(
        "ordering-app: {} users on {} app servers, {:.0} orders/s; the new `{}` fails {:.1}% of \
         payments (everything else {:.1}%)",
        args.users,
        args.instances,
        args.users as f64 * args.order_rate,
        MODULES[faulty],
        args.fail_rate * 100.0,
        args.base_fail_rate * 100.0
    );
    println!(
        "release {release_name}: modules {} and {}, overlapping, stages {:?}% of {}s each, policy \
         {POLICY} (core guard {PAYMENT_ERROR})",
        MODULES[0], MODULES[1], args.stages, args.stage_seconds
    );
    let threads: Vec<_> = instances
        .iter()
        .enumerate()
        .map(|(n, inst)| {
            let (sim, inst) = (sim.clone(), inst.clone());
            std::thread::spawn(move || serve_orders(&sim, &inst, n as u64))
        })
        .collect();

    admin
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/releases/{release_id}/start"),
            Some(json!({"reason": "ordering-app demo"})),
        )
        .await?;
    println!("[{:5.1}s] release started", sim.secs());

    let watched = watch(&sim, &admin, &release_id, &instances).await;
    sim.stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    for inst in &instances {
        inst.client.shutdown().await;
    }
    let (mut outcome, status) = watched?;
    outcome.release = release_name;
    // Every order evaluates both modules: the first module's tally counts each order once.
    outcome.orders = sim.tallies[0]
        .orders
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum();
    print_reach(&status);
    print_summary(&sim, &outcome);
    Ok(outcome)
}

/// A short unique suffix: the wall-clock time of day, HHMMSS, plus milliseconds.
fn chrono_suffix() -> String {
    let ms = now_ms();
    let s = (ms / 1000) % 86_400;
    format!(
        "{:02}{:02}{:02}-{:03}",
        s / 3600,
        (s / 60) % 60,
        s % 60,
        ms % 1000
    )
}

/// One app server's order loop: every 5 ms, the orders due since the last tick.
fn serve_orders(sim: &Sim, inst: &Instance, seed: u64) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x0dde_5eed ^ seed);
    let rate = inst.users.len() as f64 * sim.args.order_rate;
    let begin = Instant::now();
    let mut done = 0u64;
    let mut last_revision = None;
    while !sim.stop.load(Ordering::Relaxed) {
        let due = (begin.elapsed().as_secs_f64() * rate) as u64;
        for _ in done..due {
            let u = rng.gen_range(0..inst.users.len());
            order(sim, inst, &inst.users[u], rng.gen::<f64>());
        }
        done = due.max(done);
        let revision = inst.client.flags().revision();
        if revision != last_revision {
            last_revision = revision;
            note_applied(sim, inst);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One order: both modules evaluated on one snapshot, the payment, its report.
fn order(sim: &Sim, inst: &Instance, ctx: &Context, draw: f64) {
    let flags = inst.client.flags();
    let mut served = [None, None];
    for (m, flag) in MODULES.iter().enumerate() {
        served[m] = flags.evaluate(flag, ctx).ok().map(|s| s.variant);
    }
    let new = served.map(|v| v == Some("on"));
    let fail_rate = if new[sim.faulty] {
        inst.last_faulty_on_ns
            .fetch_max(sim.start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        sim.args.fail_rate
    } else {
        sim.args.base_fail_rate
    };
    let failed = draw < fail_rate;
    for (m, flag) in MODULES.iter().enumerate() {
        let v = usize::from(new[m]);
        sim.tallies[m].orders[v].fetch_add(1, Ordering::Relaxed);
        if failed {
            sim.tallies[m].failures[v].fetch_add(1, Ordering::Relaxed);
            // The app cannot tell which module broke the payment: it reports it against
            // every flag, with the variant that flag served this user.
            if let Some(variant) = served[m] {
                inst.client
                    .report_variant(flag, variant, PAYMENT_ERROR, Measure::Count(1));
            }
        }
    }
}

/// Records the revision the instance's SDK applied, when, and how many of its users the
/// faulty module now serves its new variant.
fn note_applied(sim: &Sim, inst: &Instance) {
    let status = inst.client.status();
    let Some(revision) = status.revision else {
        return;
    };
    let at = Instant::now()
        .checked_sub(status.applied_ago.unwrap_or_default())
        .unwrap_or_else(Instant::now);
    let flags = inst.client.flags();
    let on_users = inst
        .users
        .iter()
        .filter(|u| flags.variant_for(MODULES[sim.faulty], u) == Some("on"))
        .count();
    if let Ok(mut applied) = inst.applied.lock() {
        applied.push(Applied {
            revision,
            at,
            on_users,
        });
    }
}
