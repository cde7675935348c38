//! `fanout`: memory per idle SSE subscriber and change fan-out latency to N subscribers.

use crate::common::{
    machine_note, ms, proc_kib, run_suffix, sched_ns, signed_us, summary, Pinger, Server,
};
use crate::sse::{self, Event, Kind};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// SSE connections to open.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Sequential rollout changes to time.
    #[arg(long, default_value_t = 100)]
    pub changes: usize,
    /// The server's process id, to read its RSS from /proc (memory figures are skipped without it).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Connections being opened at once (not yet past their `config` event).
    #[arg(long, default_value_t = 64)]
    pub connect_parallelism: usize,
    /// Pause between two changes, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub gap_ms: u64,
    /// Give up on a change (or on connecting) after this many seconds.
    #[arg(long, default_value_t = 10)]
    pub timeout_s: u64,
    /// Seconds to let the server settle before reading its RSS after connecting.
    #[arg(long, default_value_t = 1.0)]
    pub settle_s: f64,
}

async fn next_event(rx: &mut UnboundedReceiver<Event>, deadline: Instant) -> Result<Event> {
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, rx.recv()).await {
        Ok(Some(e)) => Ok(e),
        Ok(None) => bail!("every subscriber task ended"),
        Err(_) => bail!("timed out"),
    }
}

pub async fn run(server: Server, args: Args) -> Result<()> {
    let n = args.subscribers;
    let m = args.changes;
    if n == 0 || m == 0 {
        bail!("--subscribers and --changes must be at least 1");
    }
    let timeout = Duration::from_secs(args.timeout_s);
    let suffix = run_suffix();
    let key = format!("load-fanout-{suffix}");
    server.put_flag(&key, 0.0).await?;
    let token = server.client_token(&key).await?;
    let addr: SocketAddr = tokio::net::lookup_host(server.authority())
        .await?
        .next()
        .ok_or_else(|| anyhow!("cannot resolve {}", server.authority()))?;
    let host = server.authority().to_owned();
    println!("{}", machine_note());
    println!(
        "fanout: {n} SSE subscribers (GET /api/v1/stream, raw TCP), {m} sequential \
         PUT /api/v1/flags/{key}/rollout"
    );

    // --- connect ------------------------------------------------------------------------
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = args.server_pid.map(|p| proc_kib(p, "VmRSS")).transpose()?;
    let (tx, mut rx) = unbounded_channel::<Event>();
    let started = Instant::now();
    let deadline = started + timeout.max(Duration::from_secs(n as u64 / 20));
    let (mut spawned, mut configured) = (0usize, 0usize);
    let mut has_config = vec![false; n];
    while configured < n {
        while spawned < n && spawned - configured < args.connect_parallelism.max(1) {
            tokio::spawn(sse::subscribe(
                addr,
                host.clone(),
                token.clone(),
                spawned,
                tx.clone(),
            ));
            spawned += 1;
        }
        let e = next_event(&mut rx, deadline).await.with_context(|| {
            format!("connecting: {configured} of {n} subscribers had their config")
        })?;
        match e.kind {
            Kind::Config if !has_config[e.conn] => {
                has_config[e.conn] = true;
                configured += 1;
            }
            Kind::Config => bail!("subscriber {} got a second config event", e.conn),
            Kind::Closed(why) => bail!(
                "subscriber {} closed while connecting ({configured} of {n} connected): {why}",
                e.conn
            ),
            Kind::Change { .. } => {}
        }
    }
    let connect_s = started.elapsed().as_secs_f64();
    println!("  {n} subscribers connected and received their config event in {connect_s:.2} s");
    tokio::time::sleep(Duration::from_secs_f64(args.settle_s)).await;
    let rss_idle = args.server_pid.map(|p| proc_kib(p, "VmRSS")).transpose()?;
    if let (Some(b), Some(a)) = (rss_before, rss_idle) {
        let per = (a as f64 - b as f64) * 1024.0 / n as f64;
        println!(
            "  server RSS: {:.1} MiB before, {:.1} MiB with {n} idle subscribers (+{:.1} MiB) \
             -> {:.0} bytes = {:.2} KiB per idle subscriber (target <= 16 KB) [{}]",
            b as f64 / 1024.0,
            a as f64 / 1024.0,
            (a as f64 - b as f64) / 1024.0,
            per,
            per / 1024.0,
            if per <= 16_000.0 { "met" } else { "MISSED" }
        );
    }

    // --- changes ------------------------------------------------------------------------
    let url = format!("{}/api/v1/flags/{key}/rollout", server.base);
    let pinger = Pinger::start()?;
    let mut per_conn = vec![0u32; n];
    let (
        mut last_from_resp,
        mut last_from_send,
        mut first_from_resp,
        mut median_from_resp,
        mut put_rtt,
    ) = (vec![], vec![], vec![], vec![], vec![]);
    let mut unexpected = 0usize;
    let server_pid = args.server_pid.map(|p| p.to_string());
    let server_sched0 = server_pid.as_deref().map(sched_ns);
    let self_sched0 = sched_ns("self");
    let changes_started = Instant::now();
    for i in 0..m {
        // Distinct percentages in [1, 99): 731 and 98000 are coprime.
        let millis = 1000 + (i as i64 * 731) % 98_000;
        let body = serde_json::to_vec(&json!({"percentage": millis as f64 / 1000.0}))?;
        let timed = pinger
            .request(reqwest::Method::PUT, url.clone(), &server.token, Some(body))
            .await
            .with_context(|| format!("change {i}"))?;
        let (t0, t1) = (timed.sent, timed.answered);
        let deadline = t1 + timeout;
        let mut arrivals: Vec<Instant> = Vec::with_capacity(n);
        while arrivals.len() < n {
            let e = next_event(&mut rx, deadline).await.with_context(|| {
                format!(
                    "change {i} ({}%): {} of {n} subscribers received it",
                    millis as f64 / 1000.0,
                    arrivals.len()
                )
            })?;
            match e.kind {
                Kind::Change {
                    key: k,
                    rollout_millis: Some(r),
                } if k == key && r == millis => {
                    per_conn[e.conn] += 1;
                    arrivals.push(e.at);
                }
                Kind::Closed(why) => bail!(
                    "change {i}: subscriber {} disconnected ({} of {n} had the change): {why}",
                    e.conn,
                    arrivals.len()
                ),
                Kind::Config => bail!("subscriber {} got a fresh config mid-run", e.conn),
                Kind::Change { .. } => unexpected += 1,
            }
        }
        arrivals.sort_unstable();
        let first = arrivals[0];
        let last = *arrivals.last().unwrap();
        last_from_resp.push(signed_us(t1, last));
        last_from_send.push(signed_us(t0, last));
        first_from_resp.push(signed_us(t1, first));
        median_from_resp.push(signed_us(t1, arrivals[n / 2]));
        put_rtt.push(signed_us(t0, t1));
        tokio::time::sleep(Duration::from_millis(args.gap_ms)).await;
    }
    let changes_wall = changes_started.elapsed().as_secs_f64() * 1000.0;
    let server_sched1 = server_pid.as_deref().map(sched_ns);
    let self_sched1 = sched_ns("self");
    let rss_end = args.server_pid.map(|p| proc_kib(p, "VmRSS")).transpose()?;
    let hwm = args.server_pid.map(|p| proc_kib(p, "VmHWM")).transpose()?;

    let exactly_once = per_conn.iter().all(|c| *c as usize == m);
    let line = |name: &str, s: &[i64]| {
        let (p50, p99, max, min) = summary(s);
        println!(
            "  {name:<52} p50 {:>8} ms  p99 {:>8} ms  max {:>8} ms  min {:>8} ms",
            ms(p50),
            ms(p99),
            ms(max),
            ms(min)
        );
    };
    println!("  over {m} changes ({n} subscribers each):");
    line(
        "PUT response -> LAST subscriber has the change",
        &last_from_resp,
    );
    line(
        "PUT sent     -> LAST subscriber has the change",
        &last_from_send,
    );
    line(
        "PUT response -> median subscriber has it",
        &median_from_resp,
    );
    line("PUT response -> FIRST subscriber has it", &first_from_resp);
    line("PUT round trip (send -> response read)", &put_rtt);
    println!(
        "  (the PUTs run on their own thread and runtime, so their timestamps do not queue \
         behind the {n} stream readers; both still share the 2 cores with the server)"
    );
    println!(
        "  (negative = the event reached the subscriber before the PUT's response: the server \
         publishes the change before it answers)"
    );
    println!(
        "  every subscriber received every change exactly once: {}{}",
        if exactly_once { "yes" } else { "NO" },
        if unexpected > 0 {
            format!(" ({unexpected} unexpected change events)")
        } else {
            String::new()
        }
    );
    let per = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / 1e6 / m as f64;
    if let (Some(a), Some(b)) = (server_sched0, server_sched1) {
        println!(
            "  CPU per change: server ran {:.2} ms and waited {:.2} ms runnable for a core; load \
             generator ran {:.2} ms, waited {:.2} ms (wall {:.2} ms per change incl. the {} ms gap)",
            per(a.0, b.0),
            per(a.1, b.1),
            per(self_sched0.0, self_sched1.0),
            per(self_sched0.1, self_sched1.1),
            changes_wall / m as f64,
            args.gap_ms
        );
    }
    if let (Some(e), Some(h)) = (rss_end, hwm) {
        println!(
            "  server RSS after the changes: {:.1} MiB (peak {:.1} MiB)",
            e as f64 / 1024.0,
            h as f64 / 1024.0
        );
    }
    let (_, p99, _, _) = summary(&last_from_resp);
    println!(
        "summary: fanout subscribers={n} changes={m} p50_ms={} p99_ms={} max_ms={} per_subscriber_bytes={} target_p99={}",
        ms(summary(&last_from_resp).0),
        ms(p99),
        ms(summary(&last_from_resp).2),
        match (rss_before, rss_idle) {
            (Some(b), Some(a)) => format!("{:.0}", (a as f64 - b as f64) * 1024.0 / n as f64),
            _ => "n/a".into(),
        },
        if p99 <= 50_000 { "met" } else { "MISSED" }
    );
    if !exactly_once {
        bail!("some subscriber missed or duplicated a change");
    }
    Ok(())
}
