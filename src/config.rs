//! Command line and configuration: clap flags with environment fallbacks, then an optional
//! TOML file (`--config`), then defaults. Flags win over environment, environment over file.

use crate::cluster::ClusterConfig;
use crate::proxies::TrustedProxies;
use crate::reach::Settings as ReachSettings;
use crate::state::{Limits, Timing};
use crate::tls::ServerTls;
use crate::webhooks::WebhookConfig;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// rollgate — feature flags with module-by-module staged rollouts and automatic rollback.
#[derive(Debug, Parser)]
#[command(name = "rollgate", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the server.
    Serve(ServeArgs),
    /// Check a running server's /healthz (exit 0 when healthy); used by the Docker HEALTHCHECK.
    Health {
        /// Base URL of the server.
        #[arg(long, env = "ROLLGATE_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Extra CA certificates (PEM) trusted beside the system's, for an https:// URL.
        #[arg(long, env = "ROLLGATE_CA_FILE")]
        ca_file: Option<PathBuf>,
    },
    /// Copy a single node's sled data dir into an empty PostgreSQL database (cluster mode).
    Migrate(crate::cli::migrate::MigrateArgs),
    /// Ops commands against a running server (`flags`, `release`, `audit`, `watch`).
    #[command(flatten)]
    Ops(crate::cli::OpsCommand),
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// `rollgate serve` settings.
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "ROLLGATE_BIND")]
    pub bind: Option<String>,
    /// Where sled keeps its data [default: ./rollgate-data].
    #[arg(long, env = "ROLLGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Directory of policy files loaded at start [default: ./policies].
    #[arg(long, env = "ROLLGATE_POLICIES_DIR")]
    pub policies_dir: Option<PathBuf>,
    /// TOML file with further settings (bind, data_dir, policies_dir, log_format, workers,
    /// max_body_bytes, max_eval_body_bytes, trusted_proxies, reach_timeout, public_url,
    /// `[[webhook]]` tables, tls_cert, tls_key, ca_file, …).
    #[arg(long, env = "ROLLGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format [default: human].
    #[arg(long, env = "ROLLGATE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// HTTP worker threads [default: number of cores].
    #[arg(long, env = "ROLLGATE_WORKERS")]
    pub workers: Option<usize>,
    /// Webhook URL notified on pause, rollback and completion (repeatable; env: comma-separated).
    #[arg(
        long = "webhook-url",
        env = "ROLLGATE_WEBHOOK_URLS",
        value_delimiter = ','
    )]
    pub webhook_urls: Vec<String>,
    /// The dashboard's public base URL, for links in Slack and PagerDuty messages
    /// (`<url>/ui#/release/<id>`) [default: none, messages carry no link].
    #[arg(long, env = "ROLLGATE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Proxies whose `Forwarded` / `X-Forwarded-Host` / `X-Forwarded-Proto` headers are
    /// believed: IPs or CIDR ranges (repeatable; env: comma-separated) [default: none].
    #[arg(
        long = "trusted-proxies",
        env = "ROLLGATE_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<String>,
    /// PostgreSQL URL: run as one node of a cluster sharing this database (docs/cluster.md)
    /// [default: none, the embedded sled store only].
    #[arg(long, env = "ROLLGATE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// This node's stable name in a cluster [default: generated once, kept in the data dir].
    #[arg(long, env = "ROLLGATE_NODE_ID")]
    pub node_id: Option<String>,
    /// How long the controller lease lasts without renewal, in a cluster [default: 5s].
    #[arg(long, env = "ROLLGATE_LEASE_TTL")]
    pub lease_ttl: Option<String>,
    /// Safety poll of the change feed beside LISTEN/NOTIFY, in a cluster [default: 1s].
    #[arg(long, env = "ROLLGATE_FEED_POLL")]
    pub feed_poll: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key; re-read on SIGHUP).
    #[arg(long, env = "ROLLGATE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "ROLLGATE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Extra CA certificates (PEM) trusted beside the system's for outgoing TLS: webhooks,
    /// PostgreSQL (`sslmode=verify-ca|verify-full`).
    #[arg(long, env = "ROLLGATE_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

/// The `--config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    bind: Option<String>,
    data_dir: Option<PathBuf>,
    policies_dir: Option<PathBuf>,
    log_format: Option<LogFormat>,
    workers: Option<usize>,
    max_body_bytes: Option<usize>,
    max_eval_body_bytes: Option<usize>,
    max_signals_per_batch: Option<usize>,
    max_signals_body_bytes: Option<usize>,
    signals_per_second: Option<u64>,
    controller_tick: Option<String>,
    heartbeat: Option<String>,
    aggregate_flush: Option<String>,
    webhook_urls: Option<Vec<String>>,
    webhook_max_attempts: Option<u32>,
    webhook_initial_backoff: Option<String>,
    /// Typed webhook targets, `[[webhook]]` tables.
    webhook: Option<Vec<crate::webhooks::TargetConfig>>,
    public_url: Option<String>,
    trusted_proxies: Option<Vec<String>>,
    reach_target: Option<f64>,
    reach_timeout: Option<String>,
    reach_live_window: Option<String>,
    database_url: Option<String>,
    node_id: Option<String>,
    lease_ttl: Option<String>,
    feed_poll: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    ca_file: Option<PathBuf>,
}

/// Validated server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address (`127.0.0.1:0` picks a free port).
    pub bind: String,
    /// sled directory.
    pub data_dir: PathBuf,
    /// Policy files.
    pub policies_dir: PathBuf,
    /// Bootstrap admin token from `ROLLGATE_ADMIN_TOKEN`.
    pub admin_token: Option<String>,
    /// Log format.
    pub log_format: LogFormat,
    /// HTTP workers.
    pub workers: usize,
    /// Body limits.
    pub limits: Limits,
    /// Background timing.
    pub timing: Timing,
    /// Outgoing webhooks (`ROLLGATE_WEBHOOK_SECRET` signs them).
    pub webhooks: WebhookConfig,
    /// Peers whose forwarded headers are believed (none by default).
    pub trusted_proxies: TrustedProxies,
    /// Reach tracking: live window, target share, timeout of a rollback (docs/clients.md).
    pub reach: ReachSettings,
    /// Cluster mode on PostgreSQL (`None`: a single node on sled).
    pub cluster: Option<ClusterConfig>,
    /// The guard history's sampling and retention (fixed defaults; tests shorten them).
    pub history: crate::history::Settings,
    /// The server's own certificate and key (`None`: plain HTTP).
    pub tls: Option<ServerTls>,
    /// Extra CA file trusted by outgoing TLS (webhooks, PostgreSQL), beside the system roots.
    pub ca_file: Option<PathBuf>,
}

impl Config {
    /// A configuration with every default, for tests and embedding.
    pub fn defaults() -> Self {
        Config {
            bind: "127.0.0.1:8080".into(),
            data_dir: "./rollgate-data".into(),
            policies_dir: "./policies".into(),
            admin_token: None,
            log_format: LogFormat::Human,
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            limits: Limits {
                max_body: 1 << 20,
                max_eval_body: 64 << 10,
                max_signals: 10_000,
                max_signals_body: 8 << 20,
            },
            timing: Timing {
                controller_tick: Duration::from_millis(20),
                heartbeat: Duration::from_secs(10),
                aggregate_flush: Duration::from_secs(1),
                signals_per_second: 5_000_000,
            },
            webhooks: WebhookConfig::new(Vec::new(), None),
            trusted_proxies: TrustedProxies::default(),
            reach: ReachSettings::default(),
            cluster: None,
            history: crate::history::Settings::default(),
            tls: None,
            ca_file: None,
        }
    }

    /// Merges flags/environment (already merged by clap), the config file and defaults.
    pub fn from_args(args: ServeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let d = Config::defaults();
        let admin_token = std::env::var("ROLLGATE_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty());
        if let Some(token) = &admin_token {
            anyhow::ensure!(
                token.len() >= 16,
                "ROLLGATE_ADMIN_TOKEN must be at least 16 characters"
            );
        }
        let reach = reach_settings(&file, d.reach)?;
        let (tls, ca_file) = tls_settings(&args, &file)?;
        let mut cluster = cluster_settings(&args, &file)?;
        if let Some(c) = &mut cluster {
            c.ca_file = ca_file.clone();
        }
        let workers = args.workers.or(file.workers).unwrap_or(d.workers);
        anyhow::ensure!(
            (1..=256).contains(&workers),
            "workers must be between 1 and 256"
        );
        Ok(Config {
            bind: args.bind.or(file.bind).unwrap_or(d.bind),
            data_dir: args.data_dir.or(file.data_dir).unwrap_or(d.data_dir),
            policies_dir: args
                .policies_dir
                .or(file.policies_dir)
                .unwrap_or(d.policies_dir),
            admin_token,
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            workers,
            limits: Limits {
                max_body: file.max_body_bytes.unwrap_or(d.limits.max_body),
                max_eval_body: file.max_eval_body_bytes.unwrap_or(d.limits.max_eval_body),
                max_signals: file.max_signals_per_batch.unwrap_or(d.limits.max_signals),
                max_signals_body: file
                    .max_signals_body_bytes
                    .unwrap_or(d.limits.max_signals_body),
            },
            timing: Timing {
                controller_tick: duration(file.controller_tick.as_deref(), "controller_tick")?
                    .unwrap_or(d.timing.controller_tick),
                heartbeat: duration(file.heartbeat.as_deref(), "heartbeat")?
                    .unwrap_or(d.timing.heartbeat),
                aggregate_flush: duration(file.aggregate_flush.as_deref(), "aggregate_flush")?
                    .unwrap_or(d.timing.aggregate_flush),
                signals_per_second: file
                    .signals_per_second
                    .unwrap_or(d.timing.signals_per_second),
            },
            webhooks: {
                let urls = if args.webhook_urls.is_empty() {
                    file.webhook_urls.unwrap_or_default()
                } else {
                    args.webhook_urls
                };
                let secret = std::env::var("ROLLGATE_WEBHOOK_SECRET")
                    .ok()
                    .filter(|s| !s.is_empty());
                let mut w = WebhookConfig::new(
                    urls.into_iter()
                        .map(|u| u.trim().to_owned())
                        .filter(|u| !u.is_empty())
                        .collect(),
                    secret,
                );
                w.targets = file.webhook.unwrap_or_default();
                w.public_url = args
                    .public_url
                    .or(file.public_url)
                    .map(|u| u.trim().to_owned())
                    .filter(|u| !u.is_empty());
                w.ca_file = ca_file.clone();
                if let Some(n) = file.webhook_max_attempts {
                    w.max_attempts = n;
                }
                if let Some(b) = duration(
                    file.webhook_initial_backoff.as_deref(),
                    "webhook_initial_backoff",
                )? {
                    w.initial_backoff = b;
                }
                w.validate().map_err(|e| anyhow::anyhow!("webhooks: {e}"))?;
                w
            },
            reach,
            cluster,
            history: d.history,
            tls,
            ca_file,
            trusted_proxies: {
                let entries = if args.trusted_proxies.is_empty() {
                    file.trusted_proxies.unwrap_or_default()
                } else {
                    args.trusted_proxies
                };
                TrustedProxies::parse(&entries)
                    .map_err(|e| anyhow::anyhow!("trusted_proxies: {e}"))?
            },
        })
    }
}

/// `tls_cert` + `tls_key` (both or neither; both readable, valid and matching) and `ca_file`
/// (readable PEM certificates), flag or env over the file. Checked here so a bad file stops the
/// start with the setting named, instead of failing at the first handshake.
fn tls_settings(
    args: &ServeArgs,
    file: &FileConfig,
) -> anyhow::Result<(Option<ServerTls>, Option<PathBuf>)> {
    let cert = args.tls_cert.clone().or(file.tls_cert.clone());
    let key = args.tls_key.clone().or(file.tls_key.clone());
    let tls = match (cert, key) {
        (None, None) => None,
        (Some(_), None) => {
            anyhow::bail!("tls_cert is set but tls_key is not: give both or neither")
        }
        (None, Some(_)) => {
            anyhow::bail!("tls_key is set but tls_cert is not: give both or neither")
        }
        (Some(cert), Some(key)) => {
            let files = ServerTls { cert, key };
            crate::tls::load_certified_key(&files)?;
            Some(files)
        }
    };
    let ca_file = args.ca_file.clone().or(file.ca_file.clone());
    if let Some(path) = &ca_file {
        crate::tls::read_certificates(path, "ca_file")?;
    }
    Ok((tls, ca_file))
}

/// The cluster settings, when a database URL is given (flag or env over the file).
fn cluster_settings(args: &ServeArgs, file: &FileConfig) -> anyhow::Result<Option<ClusterConfig>> {
    let Some(url) = args
        .database_url
        .clone()
        .or(file.database_url.clone())
        .filter(|u| !u.trim().is_empty())
    else {
        return Ok(None);
    };
    let mut c = ClusterConfig::new(url.trim());
    c.node_id = args.node_id.clone().or(file.node_id.clone());
    if let Some(id) = &c.node_id {
        anyhow::ensure!(
            (1..=64).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "node_id must be 1 to 64 characters of A-Z, a-z, 0-9, '-', '_', '.'"
        );
    }
    let bounded = |text: Option<&str>, field: &str| -> anyhow::Result<Option<Duration>> {
        let d = duration(text, field)?;
        if let Some(d) = d {
            anyhow::ensure!(
                (Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&d),
                "{field} must be between 100ms and 1h"
            );
        }
        Ok(d)
    };
    let lease = args.lease_ttl.as_deref().or(file.lease_ttl.as_deref());
    if let Some(ttl) = bounded(lease, "lease_ttl")? {
        c.lease_ttl = ttl;
    }
    let poll = args.feed_poll.as_deref().or(file.feed_poll.as_deref());
    if let Some(poll) = bounded(poll, "feed_poll")? {
        c.feed_poll = poll;
    }
    Ok(Some(c))
}

/// `reach_target` (0 < t ≤ 1), `reach_timeout` and `reach_live_window` (at least 100 ms, at most
/// a day) from the file, over `d`.
fn reach_settings(file: &FileConfig, d: ReachSettings) -> anyhow::Result<ReachSettings> {
    let target = file.reach_target.unwrap_or(d.target);
    anyhow::ensure!(
        target > 0.0 && target <= 1.0,
        "reach_target must be above 0 and at most 1"
    );
    let ms = |text: Option<&str>, field: &str, default: u64| -> anyhow::Result<u64> {
        let Some(d) = duration(text, field)? else {
            return Ok(default);
        };
        anyhow::ensure!(
            (Duration::from_millis(100)..=Duration::from_secs(86_400)).contains(&d),
            "{field} must be between 100ms and 24h"
        );
        Ok(d.as_millis() as u64)
    };
    Ok(ReachSettings {
        target,
        timeout_ms: ms(file.reach_timeout.as_deref(), "reach_timeout", d.timeout_ms)?,
        live_window_ms: ms(
            file.reach_live_window.as_deref(),
            "reach_live_window",
            d.live_window_ms,
        )?,
        ..d
    })
}

fn duration(text: Option<&str>, field: &str) -> anyhow::Result<Option<Duration>> {
    text.map(|t| {
        crate::policies::parse_duration(t)
            .ok_or_else(|| anyhow::anyhow!("{field}: {t:?} is not a duration"))
    })
    .transpose()
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    use anyhow::Context;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_file(text: &str) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("rollgate.toml");
        std::fs::write(&path, text)?;
        Config::from_args(ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        })
    }

    #[test]
    fn typed_webhooks_and_the_public_url_come_from_the_file() {
        let config = from_file(
            r#"
            webhook_urls = ["http://hooks.local/plain"]
            public_url = "https://rollgate.example.com"
            [[webhook]]
            type = "slack"
            url = "http://slack.local/services/T/B/X"
            [[webhook]]
            type = "pagerduty"
            url = "http://pd.local/v2/enqueue"
            routing_key = "R0UTING"
            "#,
        )
        .unwrap();
        let w = &config.webhooks;
        assert_eq!(w.urls, ["http://hooks.local/plain"]);
        assert_eq!(
            w.public_url.as_deref(),
            Some("https://rollgate.example.com")
        );
        let kinds: Vec<_> = w.targets.iter().map(|t| t.kind).collect();
        assert_eq!(
            kinds,
            [
                crate::webhooks::TargetKind::Slack,
                crate::webhooks::TargetKind::Pagerduty
            ]
        );
    }

    #[test]
    fn a_bad_webhook_table_names_the_file_the_target_and_the_field() {
        let misplaced = from_file(
            "[[webhook]]\ntype = \"slack\"\nurl = \"http://s.local/x\"\nrouting_key = \"k\"\n",
        );
        let text = format!("{:#}", misplaced.unwrap_err());
        assert!(
            text.contains("webhook #0 (type slack): routing_key is not a setting of this type"),
            "{text}"
        );
        let unknown = from_file(
            "[[webhook]]\ntype = \"slack\"\nurl = \"http://s.local/x\"\nchannel = \"#ops\"\n",
        );
        let text = format!("{:#}", unknown.unwrap_err());
        assert!(
            text.contains("rollgate.toml") && text.contains("channel"),
            "{text}"
        );
        let kind = from_file("[[webhook]]\ntype = \"teams\"\nurl = \"http://s.local/x\"\n");
        let text = format!("{:#}", kind.unwrap_err());
        assert!(
            text.contains("teams") && text.contains("pagerduty"),
            "{text}"
        );
        let public = from_file("public_url = \"rollgate.example.com\"\n");
        assert!(format!("{:#}", public.unwrap_err()).contains("public_url"));
    }

    #[test]
    fn the_public_url_flag_or_environment_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rollgate.toml");
        std::fs::write(&path, "public_url = \"https://file.example\"\n").unwrap();
        let config = Config::from_args(ServeArgs {
            config: Some(path),
            public_url: Some("https://flag.example".into()),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(
            config.webhooks.public_url.as_deref(),
            Some("https://flag.example")
        );
        let cli = Cli::try_parse_from(["rollgate", "serve", "--public-url", "https://x.example"]);
        let Ok(Cli {
            command: Command::Serve(args),
        }) = cli
        else {
            panic!("serve --public-url parses");
        };
        assert_eq!(args.public_url.as_deref(), Some("https://x.example"));
    }

    #[test]
    fn ca_file_reaches_webhooks_and_the_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["ca.test".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(&ca, cert.pem()).unwrap();
        let args = ServeArgs {
            ca_file: Some(ca.clone()),
            webhook_urls: vec!["https://hooks.example/rollgate".into()],
            database_url: Some("postgres://db.example/rollgate?sslmode=verify-full".into()),
            ..ServeArgs::default()
        };
        let config = Config::from_args(args).unwrap();
        assert_eq!(config.ca_file.as_deref(), Some(ca.as_path()));
        assert_eq!(config.webhooks.ca_file.as_deref(), Some(ca.as_path()));
        let cluster = config.cluster.unwrap();
        assert_eq!(cluster.ca_file.as_deref(), Some(ca.as_path()));
        assert!(config.tls.is_none());
    }
}
