//! The one wiring point: `Application::build` opens the store, loads policies, bootstraps the
//! admin token, binds the listener and assembles the HTTP server. `main` and the tests both
//! use it (tests bind port 0 with a throwaway data dir).

use crate::api;
use crate::auth::{Actor, Role};
use crate::config::Config;
use crate::controller::runner;
use crate::lease::SingleNode;
use crate::live::Live;
use crate::policies::{self, Policy};
use crate::state::AppState;
use crate::store::Store;
use actix_web::dev::{Server, Service};
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::Instant;
use tokio::sync::watch;

/// A built, bound, not yet running server.
pub struct Application {
    /// A cluster node's controller lease (its renewal loop starts with the server).
    lease: Option<std::sync::Arc<crate::cluster::lease::PgLease>>,
    port: u16,
    host: String,
    server: Server,
    state: web::Data<AppState>,
    generated_admin_token: Option<String>,
    /// The guard history (its sampler starts with the server).
    history: std::sync::Arc<crate::history::History>,
    /// The server's certificate when it terminates TLS (SIGHUP reloads it).
    tls: Option<std::sync::Arc<crate::tls::CertReloader>>,
    /// Extra CA trusted by the Prometheus poller's HTTPS connections (`ca_file`).
    ca_file: Option<std::path::PathBuf>,
    /// SIGHUP, registered at build so that a hangup never kills the process.
    #[cfg(unix)]
    hangups: Option<tokio::signal::unix::Signal>,
}

impl Application {
    /// Builds everything; fails (and says why) on an unusable data dir, an invalid policy
    /// file or an address that cannot be bound.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let mut policy_set = policies::load_dir(&config.policies_dir)
            .context("invalid policy file; refusing to start")?;
        let store = Store::open(&config.data_dir)
            .with_context(|| format!("opening data dir {}", config.data_dir.display()))?;
        let cluster = match &config.cluster {
            None => None,
            Some(c) => {
                let id = store.node_id(c.node_id.as_deref())?;
                let node = crate::cluster::boot::open(c, &store, id)
                    .await
                    .context("joining the cluster")?;
                Some(std::sync::Arc::new(node))
            }
        };
        // The controller lease of a cluster node: its holder name is the node id and this
        // process's incarnation, so a restarted node is a new holder (a new epoch).
        let pg_lease = cluster.as_ref().map(|node| {
            let holder = format!("{}/{}", node.id, uuid::Uuid::now_v7().simple());
            crate::cluster::lease::PgLease::new(holder, node.config.lease_ttl)
        });
        for (name, source) in store.policies()? {
            let policy: Policy = serde_json::from_str(&source)
                .with_context(|| format!("stored policy {name} is corrupt"))?;
            if policy_set.get(&name).is_some_and(|p| *p != policy) {
                tracing::warn!(policy = %name, "policy changed through the API overrides the file of the same name");
            }
            policy_set = policy_set.with(policy);
        }
        let segments: BTreeMap<_, _> = store
            .segments()?
            .into_iter()
            .map(|s| (s.key.clone(), s))
            .collect();
        let (live, broken) = Live::build(store.flags()?, segments);
        for (key, error) in broken {
            tracing::error!(flag = %key, %error, "stored flag does not compile; it is not served");
        }
        tracing::info!(
            flags = live.flags().len(),
            policies = policy_set.iter().count(),
            "state loaded"
        );
        let webhooks = crate::webhooks::Webhooks::start(config.webhooks.clone());
        let parts = crate::state::StateParts {
            store,
            live,
            policies: policy_set,
            limits: config.limits,
            timing: config.timing,
            webhooks,
            proxies: config.trusted_proxies.clone(),
            reach: config.reach,
            lease: match &pg_lease {
                Some(lease) => lease.clone(),
                None => std::sync::Arc::new(SingleNode),
            },
            cluster,
        };
        let state = web::Data::new(AppState::new(parts)?);
        if let Some(node) = state.cluster.as_ref().filter(|n| n.db_up()) {
            // A (re)started node answers with the global signal totals from its first request
            // and its controller decides on them; the follower keeps them fresh afterwards.
            match crate::cluster::signals::totals(&node.pool, &[]).await {
                Ok(totals) => state.signals.set_totals(&totals),
                Err(e) => {
                    tracing::warn!(error = %e, "global signal totals not read at start; the follower retries")
                }
            }
        }
        let generated_admin_token = match bootstrap_admin(&state, config.admin_token.as_deref())
            .await
        {
            Err(e) if state.cluster.as_ref().is_some_and(|n| !n.db_up()) => {
                tracing::warn!(error = %e, "admin token not bootstrapped: the database is unreachable");
                None
            }
            other => other?,
        };
        {
            // Guards must act on the first signal batch after a restart, not the first commit.
            let mut writer = state.writer.lock().await;
            crate::controller::watch::refresh(&state, &mut writer);
        }

        let history = std::sync::Arc::new(crate::history::History::new(
            state.store.clone(),
            config.history,
        ));
        let server_history = web::Data::from(history.clone());
        let tls = match &config.tls {
            Some(files) => Some(crate::tls::CertReloader::load(files.clone())?),
            None => None,
        };
        let listener =
            TcpListener::bind(&config.bind).with_context(|| format!("binding {}", config.bind))?;
        let address = listener.local_addr()?;
        let server_state = state.clone();
        let server = HttpServer::new(move || {
            let metrics_state = server_state.clone();
            App::new()
                .app_data(server_state.clone())
                .app_data(web::Data::from(server_state.tokens.clone()))
                .app_data(server_history.clone())
                .wrap_fn(move |req, srv| {
                    let started = Instant::now();
                    let metrics = metrics_state.clone();
                    let call = srv.call(req);
                    async move {
                        let response = call.await?;
                        record_request(&metrics, &response, started);
                        Ok(response)
                    }
                })
                .configure(|cfg| api::configure(cfg, &server_state.limits))
                // Clients that join URLs naively send `//ofrep/...`.
                .wrap_fn(|mut req, srv| {
                    api::merge_slashes(&mut req);
                    srv.call(req)
                })
                .default_service(web::to(api::not_found))
        })
        .workers(config.workers)
        .shutdown_timeout(10)
        .disable_signals();
        let server = match &tls {
            Some(reloader) => server.listen_rustls_0_23(listener, reloader.server_config()?)?,
            None => server.listen(listener)?,
        }
        .run();
        Ok(Application {
            port: address.port(),
            host: address.ip().to_string(),
            server,
            state,
            generated_admin_token,
            lease: pg_lease,
            history,
            tls,
            ca_file: config.ca_file.clone(),
            #[cfg(unix)]
            hangups: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .map_err(|error| tracing::error!(%error, "cannot listen for SIGHUP"))
                .ok(),
        })
    }

    /// Starts the controller, the Prometheus poller, the aggregate flusher and the reach check;
    /// they stop with the server.
    fn spawn_background(&self) -> (watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>) {
        let (stop, stopped) = watch::channel(false);
        let state = &self.state;
        let mut tasks = vec![
            tokio::spawn(runner::run_controller(state.clone(), stopped.clone())),
            tokio::spawn(runner::run_reach_check(state.clone(), stopped.clone())),
            tokio::spawn(crate::controller::prom_poll::run_prom_poller(
                state.clone(),
                self.ca_file.clone(),
                stopped.clone(),
            )),
            tokio::spawn(crate::history::run(
                state.clone(),
                self.history.clone(),
                stopped.clone(),
            )),
        ];
        match &state.cluster {
            // A single node keeps its aggregates in its own store.
            None => tasks.push(tokio::spawn(runner::run_aggregate_flusher(
                state.clone(),
                stopped,
            ))),
            Some(node) => {
                let url = node.config.database_url.clone();
                let ca_file = node.config.ca_file.clone();
                let listen =
                    crate::cluster::listen::run(url, ca_file, node.wakes.clone(), stopped.clone());
                tasks.push(tokio::spawn(listen));
                let follow = crate::follow::run(state.clone(), node.clone(), stopped.clone());
                tasks.push(tokio::spawn(follow));
                let flush = crate::cluster::signals::run_flusher(
                    state.store.clone(),
                    node.pool.clone(),
                    node.id.clone(),
                    node.outbox.clone(),
                    std::time::Duration::from_secs(1),
                    stopped.clone(),
                );
                tasks.push(tokio::spawn(flush));
                let totals =
                    crate::follow::run_totals(state.clone(), node.clone(), stopped.clone());
                tasks.push(tokio::spawn(totals));
                if let Some(lease) = &self.lease {
                    let woken = state.clone();
                    let run = lease.clone().run(node.pool.clone(), stopped, move || {
                        woken.wakeup.notify_one()
                    });
                    tasks.push(tokio::spawn(run));
                }
            }
        }
        (stop, tasks)
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://HOST:PORT` (`https://` when serving TLS) of the bound listener.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }

    /// The admin token generated on first start, if this start generated one.
    pub fn generated_admin_token(&self) -> Option<&str> {
        self.generated_admin_token.as_deref()
    }

    /// The shared state (tests inspect it).
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// The guard history (tests and benches seed it).
    pub fn history(&self) -> std::sync::Arc<crate::history::History> {
        self.history.clone()
    }

    /// Serves until SIGINT/SIGTERM, then drains requests and flushes the store.
    pub async fn run_until_stopped(mut self) -> anyhow::Result<()> {
        let (stop, tasks) = self.spawn_background();
        let handle = self.server.handle();
        let hub = self.state.hub.clone();
        #[cfg(unix)]
        if let Some(hangups) = self.hangups.take() {
            tokio::spawn(reload_on_hangup(hangups, self.tls.clone()));
        }
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutdown requested: closing streams, draining requests");
            hub.close();
            handle.stop(true).await;
        });
        let served = self.server.await;
        let _ = stop.send(true);
        for task in tasks {
            let _ = task.await;
        }
        self.state
            .webhooks
            .shutdown(std::time::Duration::from_secs(5))
            .await;
        served?;
        self.state.store.flush().await?;
        tracing::info!("stopped; store flushed");
        Ok(())
    }
}

/// Re-reads the certificate and key on every SIGHUP; handshakes after a good reload use the new
/// pair, established connections (streams included) keep theirs, a bad pair is logged and the
/// old one kept.
/// Without TLS a SIGHUP is logged and otherwise ignored.
#[cfg(unix)]
async fn reload_on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    reloader: Option<std::sync::Arc<crate::tls::CertReloader>>,
) {
    while hangups.recv().await.is_some() {
        let Some(reloader) = &reloader else {
            tracing::info!("SIGHUP: nothing to reload (no --tls-cert)");
            continue;
        };
        match reloader.reload() {
            Ok(()) => tracing::info!("SIGHUP: TLS certificate and key reloaded"),
            Err(error) => {
                tracing::error!(%error, "SIGHUP: TLS certificate not reloaded; keeping the current one")
            }
        }
    }
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn record_request(state: &AppState, response: &actix_web::dev::ServiceResponse, started: Instant) {
    let request = response.request();
    let route = match api::route_of(request.path()) {
        Some(route) => Cow::Borrowed(route),
        None => Cow::Owned(
            request
                .match_pattern()
                .unwrap_or_else(|| "unmatched".to_owned()),
        ),
    };
    let labels = crate::metrics::RouteLabels {
        method: method_label(request.method()),
        route,
        status: response.status().as_u16(),
    };
    state
        .metrics
        .latency
        .get_or_create(&labels)
        .observe(started.elapsed());
    state.metrics.requests.get_or_create(&labels).inc();
}

/// The method as a label: a static string for the standard ones.
fn method_label(method: &actix_web::http::Method) -> Cow<'static, str> {
    const STANDARD: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
    ];
    match STANDARD.iter().find(|m| **m == method.as_str()) {
        Some(m) => Cow::Borrowed(m),
        None => Cow::Owned(method.as_str().to_owned()),
    }
}

/// Ensures an admin token exists: `ROLLGATE_ADMIN_TOKEN` (stored as token `admin`), or a new
/// one generated on first start and returned so `main` can print it once.
async fn bootstrap_admin(
    state: &AppState,
    from_env: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let actor = Actor {
        name: "bootstrap".into(),
        reason: Some("first admin token".into()),
    };
    if let Some(secret) = from_env {
        let known = state
            .tokens
            .load()
            .authenticate(secret)
            .is_some_and(|p| p.role == Role::Admin);
        if !known {
            crate::ops::tokens::store(state, &actor, "admin", Role::Admin, secret, true)
                .await
                .context("storing the admin token from ROLLGATE_ADMIN_TOKEN")?;
        }
        return Ok(None);
    }
    if state.store.has_admin_token()? {
        return Ok(None);
    }
    let secret = crate::auth::new_token_secret();
    crate::ops::tokens::store(state, &actor, "admin", Role::Admin, &secret, true)
        .await
        .context("storing the generated admin token")?;
    Ok(Some(secret))
}
