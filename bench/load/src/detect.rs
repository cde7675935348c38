//! `detect`: from a breaching signal batch (one `data_loss` event) to the rollback `change`
//! event on the stream; then resume and repeat.

use crate::common::{machine_note, ms, run_suffix, signed_us, summary, Pinger, Server};
use crate::sse::{self, Event, Kind};
use anyhow::{anyhow, bail, Context, Result};
use reqwest::Method;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Rollback / resume cycles to time.
    #[arg(long, default_value_t = 100)]
    pub iterations: usize,
    /// Policy of the release (must have a core `max_count = 0` guard on `data_loss`).
    #[arg(long, default_value = "checkout")]
    pub policy: String,
    /// Give up waiting for an event after this many seconds.
    #[arg(long, default_value_t = 5)]
    pub timeout_s: u64,
    /// Pause after each re-ramp, in milliseconds.
    #[arg(long, default_value_t = 10)]
    pub gap_ms: u64,
    /// Keep-alive connections posting 1,000-signal batches for another flag (one not in any
    /// release) throughout, so detection is timed under ingestion load (0 = idle server).
    #[arg(long, default_value_t = 0)]
    pub background: usize,
}

/// Waits for a `change` of `key` to `millis`; returns its arrival and the other events seen.
async fn wait_change(
    rx: &mut UnboundedReceiver<Event>,
    key: &str,
    millis: i64,
    deadline: Instant,
) -> Result<(Instant, usize)> {
    let mut other = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(e)) => e,
            Ok(None) => bail!("the subscriber task ended"),
            Err(_) => bail!(
                "no change event with rollout {}% within the timeout ({other} other events)",
                millis as f64 / 1000.0
            ),
        };
        match e.kind {
            Kind::Change {
                key: k,
                rollout_millis: Some(r),
            } if k == key && r == millis => return Ok((e.at, other)),
            Kind::Closed(why) => bail!("the subscriber's stream ended: {why}"),
            _ => other += 1,
        }
    }
}

pub async fn run(server: Server, args: Args) -> Result<()> {
    if args.iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    let timeout = Duration::from_secs(args.timeout_s);
    let suffix = run_suffix();
    let key = format!("load-detect-{suffix}");
    server.put_flag(&key, 0.0).await?;
    let token = server.client_token(&key).await?;
    let addr: SocketAddr = tokio::net::lookup_host(server.authority())
        .await?
        .next()
        .ok_or_else(|| anyhow!("cannot resolve {}", server.authority()))?;
    println!("{}", machine_note());
    println!(
        "detect: release with policy {:?}, one module {key} (stages [50, 100], 1h, 0 exposures), \
         {} cycles of one data_loss signal -> rollback event, then resume -> re-ramp event",
        args.policy, args.iterations
    );

    let (tx, mut rx) = unbounded_channel::<Event>();
    tokio::spawn(sse::subscribe(
        addr,
        server.authority().to_owned(),
        token.clone(),
        0,
        tx,
    ));
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(Event {
                kind: Kind::Config, ..
            })) => break,
            Ok(Some(Event {
                kind: Kind::Closed(why),
                ..
            })) => bail!("stream: {why}"),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => bail!("no config event on the stream"),
        }
    }

    let plan = json!({
        "name": key,
        "policy": args.policy,
        "modules": [{"flag": key, "stages": {"percentages": [50, 100], "min_duration": "1h", "min_exposures": 0}}]
    });
    let created = server
        .admin(Method::POST, "/api/v1/releases", Some(plan))
        .await?;
    let id = created["id"]
        .as_str()
        .ok_or_else(|| anyhow!("POST /api/v1/releases: no id in {created}"))?
        .to_owned();
    server
        .admin(Method::POST, &format!("/api/v1/releases/{id}/start"), None)
        .await?;
    wait_change(&mut rx, &key, 50_000, Instant::now() + timeout)
        .await
        .context("after start")?;

    let signals_url = format!("{}/api/v1/signals", server.base);
    let pinger = Pinger::start()?;
    let stop = Arc::new(AtomicBool::new(false));
    let accepted_bg = Arc::new(AtomicU64::new(0));
    let failed_bg = Arc::new(AtomicU64::new(0));
    let mut background = Vec::new();
    // Background load runs on its own runtime (one thread), apart from the stream reader.
    let bg_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("background")
        .enable_all()
        .build()?;
    if args.background > 0 {
        let bg_key = format!("{key}-bg");
        server.put_flag(&bg_key, 50.0).await?;
        let (body, _) = crate::ingest::build_body(&bg_key, 1000, 0.85, false, 7)?;
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(args.background)
            .timeout(Duration::from_secs(30))
            .build()?;
        for _ in 0..args.background {
            let (client, url, token, body) = (
                client.clone(),
                signals_url.clone(),
                token.clone(),
                body.clone(),
            );
            let (stop, accepted, failed) = (stop.clone(), accepted_bg.clone(), failed_bg.clone());
            background.push(bg_runtime.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let ok = match client
                        .post(&url)
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                    {
                        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    if ok {
                        accepted.fetch_add(1000, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }));
        }
        // Let the background load reach its pace.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let bg_started = Instant::now();
    let bg_accepted0 = accepted_bg.load(Ordering::Relaxed);
    let breach = serde_json::to_vec(
        &json!({"signals": [{"flag": key, "variant": "on", "metric": "data_loss"}]}),
    )?;
    let (mut from_resp, mut from_send, mut post_rtt, mut resume_lat) =
        (vec![], vec![], vec![], vec![]);
    let mut before_response = 0usize;
    let mut stray = 0usize;
    for i in 0..args.iterations {
        while let Ok(e) = rx.try_recv() {
            if let Kind::Closed(why) = e.kind {
                bail!("stream ended: {why}");
            }
            stray += 1;
        }
        let timed = pinger
            .request(
                Method::POST,
                signals_url.clone(),
                &token,
                Some(breach.clone()),
            )
            .await
            .with_context(|| format!("iteration {i}: POST signals"))?;
        let (t0, t1) = (timed.sent, timed.answered);
        if !String::from_utf8_lossy(&timed.body).contains("\"accepted\":1") {
            bail!(
                "iteration {i}: the breaching signal was not accepted: {}",
                String::from_utf8_lossy(&timed.body)
            );
        }
        let (at, other) = wait_change(&mut rx, &key, 0, t1 + timeout)
            .await
            .with_context(|| format!("iteration {i}: waiting for the rollback"))?;
        stray += other;
        let lat = signed_us(t1, at);
        if lat <= 0 {
            before_response += 1;
        }
        from_resp.push(lat);
        from_send.push(signed_us(t0, at));
        post_rtt.push(signed_us(t0, t1));

        let resumed = pinger
            .request(
                Method::POST,
                format!("{}/api/v1/releases/{id}/resume", server.base),
                &server.token,
                None,
            )
            .await
            .with_context(|| format!("iteration {i}: resume"))?;
        let r0 = resumed.sent;
        let (at, other) = wait_change(&mut rx, &key, 50_000, Instant::now() + timeout)
            .await
            .with_context(|| format!("iteration {i}: waiting for the re-ramp after resume"))?;
        stray += other;
        resume_lat.push(signed_us(r0, at));
        tokio::time::sleep(Duration::from_millis(args.gap_ms)).await;
    }
    let bg_rate = (accepted_bg.load(Ordering::Relaxed) - bg_accepted0) as f64
        / bg_started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in background {
        let _ = t.await;
    }
    bg_runtime.shutdown_background();
    let status = server
        .admin(Method::GET, &format!("/api/v1/releases/{id}"), None)
        .await?;
    let module = &status["modules"][0];

    let n = args.iterations;
    let line = |name: &str, s: &[i64]| {
        let (p50, p99, max, min) = summary(s);
        println!(
            "  {name:<58} p50 {:>8} ms  p99 {:>8} ms  max {:>8} ms  min {:>8} ms",
            ms(p50),
            ms(p99),
            ms(max),
            ms(min)
        );
    };
    if args.background > 0 {
        println!(
            "  background: {} connections posting 1,000-signal batches for another flag: {:.0} \
             signals/s during the measurement ({} failed requests)",
            args.background,
            bg_rate,
            failed_bg.load(Ordering::Relaxed)
        );
    } else {
        println!("  background: none (idle server apart from this cycle)");
    }
    println!("  over {n} rollbacks:");
    line(
        "breaching batch's response -> rollback change event",
        &from_resp,
    );
    line(
        "breaching batch sent       -> rollback change event",
        &from_send,
    );
    line(
        "POST /api/v1/signals round trip (incl. controller step)",
        &post_rtt,
    );
    line("POST resume sent -> re-ramp change event", &resume_lat);
    println!(
        "  {before_response} of {n} rollback events reached the subscriber before (or at) the \
         batch's response: the rollback is committed and published inside the request"
    );
    if stray > 0 {
        println!("  {stray} other events seen on the stream");
    }
    println!(
        "  release state at the end: {}, module {} at {}%",
        status["state"], module["state"], module["percentage"]
    );
    let (p50, p99, max, _) = summary(&from_resp);
    println!(
        "summary: detect background={} iterations={n} p50_ms={} p99_ms={} max_ms={} before_response={before_response} send_p99_ms={} target_p99={}",
        args.background,
        ms(p50),
        ms(p99),
        ms(max),
        ms(summary(&from_send).1),
        if p99 <= 50_000 { "met" } else { "MISSED" }
    );
    Ok(())
}
