//! `reach`: how fast a change committed on ONE node reaches N SSE subscribers spread evenly
//! over every node of a cluster (or over a single server, the reference).
//!
//! Two kinds of change, each timed from the write's response (and from its send) to the LAST
//! subscriber having the `change` event:
//! - `rollout`: `PUT /api/v1/flags/{key}/rollout`, sent to the nodes in turn;
//! - `rollback`: a flag in a started release (policy with a zero-tolerance `data_loss` guard);
//!   one `data_loss` signal is posted to the nodes in turn and the controller (the leader, in a
//!   cluster) rolls the flag back to 0 %; the release is then resumed (on the next node) and
//!   the re-ramp to 50 % is awaited on every subscriber too.

use crate::common::{machine_note, ms, run_suffix, signed_us, summary, Pinger, Server};
use crate::sse::{self, Event, Kind};
use anyhow::{anyhow, bail, Context, Result};
use reqwest::Method;
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A rollout PUT on one node.
    Rollout,
    /// A guard-triggered rollback (one data_loss signal posted to one node).
    Rollback,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Further nodes beside --url (base URLs, comma separated or repeated); subscribers are
    /// spread evenly over all of them and the writes go to each in turn.
    #[arg(long = "node", value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// What to change.
    #[arg(long, value_enum, default_value_t = Change::Rollout)]
    pub change: Change,
    /// SSE connections to open (in total, over all nodes).
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Sequential changes to time.
    #[arg(long, default_value_t = 100)]
    pub changes: usize,
    /// Policy of the release for `--change rollback` (a core `max_count = 0` guard on
    /// `data_loss`).
    #[arg(long, default_value = "checkout")]
    pub policy: String,
    /// Connections being opened at once (not yet past their `config` event).
    #[arg(long, default_value_t = 64)]
    pub connect_parallelism: usize,
    /// Pause between two changes, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub gap_ms: u64,
    /// Give up on a change (or on a node learning the setup) after this many seconds.
    #[arg(long, default_value_t = 10)]
    pub timeout_s: u64,
    /// The p99 (from the response) the summary checks against, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub target_p99_ms: u64,
}

/// Arrival times of one change, split by where the subscriber is.
struct Arrivals {
    /// Every subscriber's arrival.
    all: Vec<Instant>,
    /// The last arrival on the node that took the write, and on any other node.
    last_local: Option<Instant>,
    last_remote: Option<Instant>,
}

/// Waits until every one of `n` subscribers has a `change` of `key` to `millis`.
async fn await_all(
    rx: &mut UnboundedReceiver<Event>,
    node_of: &[usize],
    writer: usize,
    key: &str,
    millis: i64,
    deadline: Instant,
    seen: &mut [u32],
) -> Result<Arrivals> {
    let n = node_of.len();
    let mut a = Arrivals {
        all: Vec::with_capacity(n),
        last_local: None,
        last_remote: None,
    };
    let mut unexpected = 0usize;
    let before = seen.to_vec();
    while a.all.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(e)) => e,
            Ok(None) => bail!("every subscriber task ended"),
            Err(_) => {
                let mut per_node =
                    vec![(0usize, 0usize); node_of.iter().max().map_or(1, |m| m + 1)];
                for (conn, node) in node_of.iter().enumerate() {
                    per_node[*node].1 += 1;
                    per_node[*node].0 += usize::from(seen[conn] > before[conn]);
                }
                let per_node: Vec<String> = per_node
                    .iter()
                    .enumerate()
                    .map(|(i, (got, of))| format!("node {i}: {got}/{of}"))
                    .collect();
                bail!(
                    "timed out: {} of {n} subscribers had the change to {}% ({}; {unexpected} other events)",
                    a.all.len(),
                    millis as f64 / 1000.0,
                    per_node.join(", ")
                )
            }
        };
        match e.kind {
            Kind::Change {
                key: k,
                rollout_millis: Some(r),
            } if k == key && r == millis => {
                seen[e.conn] += 1;
                a.all.push(e.at);
                let slot = if node_of[e.conn] == writer {
                    &mut a.last_local
                } else {
                    &mut a.last_remote
                };
                *slot = Some(slot.map_or(e.at, |t: Instant| t.max(e.at)));
            }
            Kind::Closed(why) => bail!(
                "subscriber {} (node {}) disconnected ({} of {n} had the change): {why}",
                e.conn,
                node_of[e.conn],
                a.all.len()
            ),
            Kind::Config => bail!("subscriber {} got a fresh config mid-run", e.conn),
            Kind::Change { .. } => unexpected += 1,
        }
    }
    a.all.sort_unstable();
    Ok(a)
}

/// Waits until `node` evaluates `key` with `token` (the token and the flag were created on
/// another node and arrive through the feed).
async fn await_setup(server: &Server, token: &str, key: &str, deadline: Instant) -> Result<()> {
    let url = format!("{}/ofrep/v1/evaluate/flags/{key}", server.base);
    loop {
        let resp = server
            .http
            .post(&url)
            .bearer_auth(token)
            .json(&json!({"context": {"targetingKey": "reach"}}))
            .send()
            .await;
        if matches!(&resp, Ok(r) if r.status().is_success()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} never evaluated {key} with the new client token: {:?}",
                server.base,
                resp.map(|r| r.status())
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Default)]
struct Samples {
    from_resp: Vec<i64>,
    from_send: Vec<i64>,
    first_to_last: Vec<i64>,
    local_from_resp: Vec<i64>,
    remote_from_resp: Vec<i64>,
    write_rtt: Vec<i64>,
}

impl Samples {
    fn push(&mut self, sent: Instant, answered: Instant, a: &Arrivals) {
        let (first, last) = (a.all[0], *a.all.last().unwrap_or(&a.all[0]));
        self.from_resp.push(signed_us(answered, last));
        self.from_send.push(signed_us(sent, last));
        self.first_to_last.push(signed_us(first, last));
        if let Some(t) = a.last_local {
            self.local_from_resp.push(signed_us(answered, t));
        }
        if let Some(t) = a.last_remote {
            self.remote_from_resp.push(signed_us(answered, t));
        }
        self.write_rtt.push(signed_us(sent, answered));
    }

    fn print(&self, what: &str, write: &str) {
        let line = |name: String, s: &[i64]| {
            if s.is_empty() {
                return;
            }
            let (p50, p99, max, min) = summary(s);
            println!(
                "  {name:<62} p50 {:>8} ms  p99 {:>8} ms  max {:>8} ms  min {:>8} ms",
                ms(p50),
                ms(p99),
                ms(max),
                ms(min)
            );
        };
        println!("  {what}:");
        line(
            format!("{write} response -> LAST subscriber"),
            &self.from_resp,
        );
        line(
            format!("{write} sent     -> LAST subscriber"),
            &self.from_send,
        );
        line(
            "FIRST subscriber -> LAST subscriber".to_owned(),
            &self.first_to_last,
        );
        line(
            format!("{write} response -> last on the node that took it"),
            &self.local_from_resp,
        );
        line(
            format!("{write} response -> last on the other nodes"),
            &self.remote_from_resp,
        );
        line(format!("{write} round trip"), &self.write_rtt);
    }
}

pub async fn run(admin: Server, args: Args) -> Result<()> {
    let n = args.subscribers;
    let m = args.changes;
    if n == 0 || m == 0 {
        bail!("--subscribers and --changes must be at least 1");
    }
    let mut nodes = vec![admin.clone()];
    for url in &args.nodes {
        nodes.push(Server::new(url, &admin.token)?);
    }
    let k = nodes.len();
    let timeout = Duration::from_secs(args.timeout_s);
    let key = format!("load-reach-{}", run_suffix());
    admin.put_flag(&key, 0.0).await?;
    let token = admin.client_token(&key).await?;
    let setup_deadline = Instant::now() + timeout;
    for node in &nodes {
        await_setup(node, &token, &key, setup_deadline).await?;
    }
    let mut addrs: Vec<(SocketAddr, String)> = Vec::with_capacity(k);
    for node in &nodes {
        let addr = tokio::net::lookup_host(node.authority())
            .await?
            .next()
            .ok_or_else(|| anyhow!("cannot resolve {}", node.authority()))?;
        addrs.push((addr, node.authority().to_owned()));
    }
    println!("{}", machine_note());
    let write = match args.change {
        Change::Rollout => "PUT rollout",
        Change::Rollback => "data_loss batch",
    };
    println!(
        "reach: {n} SSE subscribers spread over {k} node(s), {m} sequential changes of {key} \
         ({}), each written on one node in turn",
        match args.change {
            Change::Rollout => "PUT /api/v1/flags/{key}/rollout".to_owned(),
            Change::Rollback => format!(
                "one data_loss signal -> guard rollback by the controller (policy {:?}), then \
                 resume on the next node",
                args.policy
            ),
        }
    );

    // --- connect, round-robin over the nodes ---------------------------------------------
    let (tx, mut rx) = unbounded_channel::<Event>();
    let node_of: Vec<usize> = (0..n).map(|i| i % k).collect();
    let started = Instant::now();
    let deadline = started + timeout.max(Duration::from_secs(n as u64 / 20));
    let (mut spawned, mut configured) = (0usize, 0usize);
    let mut has_config = vec![false; n];
    while configured < n {
        while spawned < n && spawned - configured < args.connect_parallelism.max(1) {
            let (addr, host) = addrs[node_of[spawned]].clone();
            tokio::spawn(sse::subscribe(
                addr,
                host,
                token.clone(),
                spawned,
                tx.clone(),
            ));
            spawned += 1;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let e = match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(e)) => e,
            _ => bail!("connecting: {configured} of {n} subscribers had their config"),
        };
        match e.kind {
            Kind::Config if !has_config[e.conn] => {
                has_config[e.conn] = true;
                configured += 1;
            }
            Kind::Config => bail!("subscriber {} got a second config event", e.conn),
            Kind::Closed(why) => bail!(
                "subscriber {} (node {}) closed while connecting: {why}",
                e.conn,
                node_of[e.conn]
            ),
            Kind::Change { .. } => {}
        }
    }
    println!(
        "  {n} subscribers connected ({} per node) in {:.2} s",
        n / k,
        started.elapsed().as_secs_f64()
    );

    let pinger = Pinger::start()?;
    let mut seen = vec![0u32; n];
    let mut main = Samples::default();
    let mut resumes = Samples::default();
    let mut expected_events = 0u32;
    // Rollbacks that reached a subscriber before their data_loss signal was even sent: a
    // controller rolled back on an older signal (after the resume), not on this one.
    let mut early = 0usize;
    match args.change {
        Change::Rollout => {
            for i in 0..m {
                let w = i % k;
                // Distinct percentages in [1, 99): 731 and 98000 are coprime.
                let millis = 1000 + (i as i64 * 731) % 98_000;
                let body = serde_json::to_vec(&json!({"percentage": millis as f64 / 1000.0}))?;
                let url = format!("{}/api/v1/flags/{key}/rollout", nodes[w].base);
                let t = pinger
                    .request(Method::PUT, url, &admin.token, Some(body))
                    .await
                    .with_context(|| format!("change {i} on node {w}"))?;
                let a = await_all(
                    &mut rx,
                    &node_of,
                    w,
                    &key,
                    millis,
                    t.answered + timeout,
                    &mut seen,
                )
                .await
                .with_context(|| format!("change {i} written on node {w}"))?;
                main.push(t.sent, t.answered, &a);
                expected_events += 1;
                tokio::time::sleep(Duration::from_millis(args.gap_ms)).await;
            }
        }
        Change::Rollback => {
            let plan = json!({
                "name": key,
                "policy": args.policy,
                "modules": [{"flag": key, "stages": {"percentages": [50, 100], "min_duration": "1h", "min_exposures": 0}}]
            });
            let created = admin
                .admin(Method::POST, "/api/v1/releases", Some(plan))
                .await?;
            let id = created["id"]
                .as_str()
                .ok_or_else(|| anyhow!("POST /api/v1/releases: no id in {created}"))?
                .to_owned();
            admin
                .admin(Method::POST, &format!("/api/v1/releases/{id}/start"), None)
                .await?;
            await_all(
                &mut rx,
                &node_of,
                0,
                &key,
                50_000,
                Instant::now() + timeout,
                &mut seen,
            )
            .await
            .context("after starting the release")?;
            expected_events += 1;
            let breach = serde_json::to_vec(
                &json!({"signals": [{"flag": key, "variant": "on", "metric": "data_loss"}]}),
            )?;
            for i in 0..m {
                let w = i % k;
                let url = format!("{}/api/v1/signals", nodes[w].base);
                let t = pinger
                    .request(Method::POST, url, &token, Some(breach.clone()))
                    .await
                    .with_context(|| format!("iteration {i}: data_loss to node {w}"))?;
                if !String::from_utf8_lossy(&t.body).contains("\"accepted\":1") {
                    bail!(
                        "iteration {i}: the breaching signal was not accepted: {}",
                        String::from_utf8_lossy(&t.body)
                    );
                }
                let a = await_all(
                    &mut rx,
                    &node_of,
                    w,
                    &key,
                    0,
                    t.answered + timeout,
                    &mut seen,
                )
                .await
                .with_context(|| format!("iteration {i}: rollback after data_loss on node {w}"))?;
                if a.all[0] < t.sent {
                    early += 1;
                }
                main.push(t.sent, t.answered, &a);
                let r = (i + 1) % k;
                let url = format!("{}/api/v1/releases/{id}/resume", nodes[r].base);
                let t = pinger
                    .request(Method::POST, url, &admin.token, None)
                    .await
                    .with_context(|| format!("iteration {i}: resume on node {r}"))?;
                let a = await_all(
                    &mut rx,
                    &node_of,
                    r,
                    &key,
                    50_000,
                    t.answered + timeout,
                    &mut seen,
                )
                .await
                .with_context(|| format!("iteration {i}: re-ramp after resume on node {r}"))?;
                resumes.push(t.sent, t.answered, &a);
                expected_events += 2;
                tokio::time::sleep(Duration::from_millis(args.gap_ms)).await;
            }
        }
    }

    let exactly_once = seen.iter().all(|c| *c == expected_events);
    if early > 0 {
        println!(
            "  {early} of {m} rollbacks reached a subscriber BEFORE their data_loss signal was \
             sent: a controller rolled back again on an older signal after the resume"
        );
    }
    println!("  over {m} changes ({n} subscribers on {k} node(s) each):");
    main.print(
        match args.change {
            Change::Rollout => "rollout changes",
            Change::Rollback => "guard rollbacks (data_loss -> rollout 0 %)",
        },
        write,
    );
    if args.change == Change::Rollback {
        resumes.print("resumes (re-ramp to 50 %)", "POST resume");
    }
    println!(
        "  every subscriber received every change exactly once: {}",
        if exactly_once { "yes" } else { "NO" }
    );
    let (p50, p99, max, _) = summary(&main.from_resp);
    let (sp50, sp99, _, _) = summary(&main.from_send);
    let (_, fl99, _, _) = summary(&main.first_to_last);
    println!(
        "summary: reach change={} nodes={k} subscribers={n} changes={m} p50_ms={} p99_ms={} \
         max_ms={} send_p50_ms={} send_p99_ms={} spread_p99_ms={} early={early} target_p99={}",
        match args.change {
            Change::Rollout => "rollout",
            Change::Rollback => "rollback",
        },
        ms(p50),
        ms(p99),
        ms(max),
        ms(sp50),
        ms(sp99),
        ms(fl99),
        if p99 <= args.target_p99_ms as i64 * 1000 {
            "met"
        } else {
            "MISSED"
        }
    );
    if !exactly_once {
        bail!("some subscriber missed or duplicated a change");
    }
    if early > 0 {
        bail!("{early} rollbacks were not caused by the signal they are timed from");
    }
    Ok(())
}
