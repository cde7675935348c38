//! Webhook settings, their validation, and how URLs are shown in logs (no credentials, no query;
//! for Slack and PagerDuty targets no path either, since Slack's path is its secret).
//!
//! Targets come in two forms that may be mixed: `urls` (generic targets signed with `secret`,
//! the original setting) and typed `targets` (the config file's `[[webhook]]` tables). A
//! typed target's fields are checked per type: `url` is required except for PagerDuty (default
//! [`PAGERDUTY_EVENTS_URL`]), `routing_key` only and always for PagerDuty, `secret` only for
//! generic targets (without one, a generic target uses `secret`).

use serde::Deserialize;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Where PagerDuty's Events API v2 takes events when a `pagerduty` target names no `url`.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// What a target receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// The signed JSON event (`WebhookEvent`), every kind.
    #[default]
    Generic,
    /// A Slack incoming-webhook message, every kind.
    Slack,
    /// PagerDuty Events API v2: trigger on rollbacks, resolve on completion or resume.
    Pagerduty,
}

impl TargetKind {
    /// The config-file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Generic => "generic",
            TargetKind::Slack => "slack",
            TargetKind::Pagerduty => "pagerduty",
        }
    }
}

/// One `[[webhook]]` table of the config file. `Debug` hides the URL's path, the routing key
/// and the secret.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// `generic` (default), `slack` or `pagerduty`.
    #[serde(rename = "type", default)]
    pub kind: TargetKind,
    /// Where to POST; required except for `pagerduty`.
    pub url: Option<String>,
    /// PagerDuty integration (routing) key; `pagerduty` only, required there.
    pub routing_key: Option<String>,
    /// HMAC-SHA256 key of this generic target (default: the global `secret`).
    pub secret: Option<String>,
}

impl fmt::Debug for TargetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.url.as_deref().map(|u| redact_for(self.kind, u));
        f.debug_struct("TargetConfig")
            .field("kind", &self.kind)
            .field("url", &url)
            .field(
                "routing_key",
                &self.routing_key.as_ref().map(|_| "<redacted>"),
            )
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A typed target checked: its URL parsed, its format resolved.
pub(super) struct Resolved {
    pub(super) target: Target,
    pub(super) format: Format,
}

/// How a target's body is made.
#[derive(Clone)]
pub(super) enum Format {
    Generic { secret: Option<String> },
    Slack,
    Pagerduty { routing_key: String },
}

/// Webhook settings. `Debug` shows neither the secret nor URL credentials or queries.
#[derive(Clone)]
pub struct WebhookConfig {
    /// Generic targets (`webhook_urls`, `http://` or `https://`); each receives every event.
    pub urls: Vec<String>,
    /// HMAC-SHA256 key; when set, `X-Rollgate-Signature: sha256=<hex>` signs the body bytes
    /// of generic targets.
    pub secret: Option<String>,
    /// Typed targets (`[[webhook]]` tables), after the `urls`.
    pub targets: Vec<TargetConfig>,
    /// The dashboard's public base URL (`public_url`), for links in Slack and PagerDuty
    /// messages: `<public_url>/ui#/release/<id>`. Without it the messages carry no link.
    pub public_url: Option<String>,
    /// Attempts per event and URL, the first included (default 6).
    pub max_attempts: u32,
    /// Wait before the first retry (default 200 ms); doubles each retry, capped at
    /// [`super::MAX_BACKOFF`], each wait jittered down to between half and all of it.
    pub initial_backoff: Duration,
    /// Limit of one attempt, connecting included (default 5 s).
    pub timeout: Duration,
    /// Capacity of each URL's queue of events waiting for delivery (default 1024).
    pub queue: usize,
    /// Extra CA file (PEM) trusted for `https://` receivers beside the system roots.
    pub ca_file: Option<std::path::PathBuf>,
}

impl WebhookConfig {
    /// Settings with the defaults above.
    pub fn new(urls: Vec<String>, secret: Option<String>) -> Self {
        WebhookConfig {
            urls,
            secret,
            targets: Vec::new(),
            public_url: None,
            max_attempts: 6,
            initial_backoff: Duration::from_millis(200),
            timeout: Duration::from_secs(5),
            queue: 1024,
            ca_file: None,
        }
    }

    /// Checks what [`super::Webhooks::start`] would otherwise log and work around: unparsable or
    /// non-`http(s)` URLs are skipped, zero counts and durations raised.
    pub fn validate(&self) -> Result<(), WebhookConfigError> {
        for (index, url) in self.urls.iter().enumerate() {
            Target::parse(index, url)?;
        }
        for index in 0..self.targets.len() {
            self.resolve(index)?;
        }
        if let Some(url) = &self.public_url {
            let parsed = reqwest::Url::parse(url).map_err(|e| WebhookConfigError::PublicUrl {
                reason: e.to_string(),
            })?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err(WebhookConfigError::PublicUrl {
                    reason: "must be an http:// or https:// URL with a host".into(),
                });
            }
        }
        let zero = [
            ("max_attempts", self.max_attempts == 0),
            ("timeout", self.timeout.is_zero()),
            ("queue", self.queue == 0),
        ];
        match zero.into_iter().find(|(_, is_zero)| *is_zero) {
            Some((field, _)) => Err(WebhookConfigError::Zero { field }),
            None => Ok(()),
        }
    }
}

impl WebhookConfig {
    /// Typed target number `index` checked and resolved (errors name `webhook #index` from 0).
    pub(super) fn resolve(&self, index: usize) -> Result<Resolved, WebhookConfigError> {
        let spec = &self.targets[index];
        let kind = spec.kind.as_str();
        let misplaced = |field: &'static str| WebhookConfigError::Field {
            index,
            kind,
            field,
            reason: "is not a setting of this type".into(),
        };
        let missing = |field: &'static str| WebhookConfigError::Field {
            index,
            kind,
            field,
            reason: "is required".into(),
        };
        let format = match spec.kind {
            TargetKind::Generic | TargetKind::Slack if spec.routing_key.is_some() => {
                return Err(misplaced("routing_key"))
            }
            TargetKind::Slack | TargetKind::Pagerduty if spec.secret.is_some() => {
                return Err(misplaced("secret"))
            }
            TargetKind::Generic => Format::Generic {
                secret: spec.secret.clone().or_else(|| self.secret.clone()),
            },
            TargetKind::Slack => Format::Slack,
            TargetKind::Pagerduty => match spec.routing_key.as_deref().map(str::trim) {
                Some(key) if !key.is_empty() => Format::Pagerduty {
                    routing_key: key.to_owned(),
                },
                _ => return Err(missing("routing_key")),
            },
        };
        let url = match (&spec.url, spec.kind) {
            (Some(url), _) => url.trim(),
            (None, TargetKind::Pagerduty) => PAGERDUTY_EVENTS_URL,
            (None, _) => return Err(missing("url")),
        };
        let mut target = Target::parse(index, url).map_err(|error| WebhookConfigError::Field {
            index,
            kind,
            field: "url",
            reason: match error {
                WebhookConfigError::UnsupportedScheme { .. } => {
                    "must be http:// or https://".into()
                }
                other => other.to_string(),
            },
        })?;
        target.shown = redact_for(spec.kind, url).into();
        Ok(Resolved { target, format })
    }
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|url| redact(url)).collect();
        f.debug_struct("WebhookConfig")
            .field("urls", &urls)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("targets", &self.targets)
            .field("public_url", &self.public_url)
            .field("max_attempts", &self.max_attempts)
            .field("initial_backoff", &self.initial_backoff)
            .field("timeout", &self.timeout)
            .field("queue", &self.queue)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// A webhook setting that cannot work. URLs are shown without credentials or query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookConfigError {
    /// The URL does not parse.
    #[error("webhook URL #{index} is not a valid URL: {reason}")]
    InvalidUrl { index: usize, reason: String },
    /// The URL is neither `http://` nor `https://`.
    #[error("webhook URL #{index} ({url}) must be http:// or https://")]
    UnsupportedScheme { index: usize, url: String },
    /// A `[[webhook]]` table's field is missing, misplaced or wrong.
    #[error("webhook #{index} (type {kind}): {field} {reason}")]
    Field {
        index: usize,
        kind: &'static str,
        field: &'static str,
        reason: String,
    },
    /// `public_url` is not an absolute http(s) URL.
    #[error("public_url {reason}")]
    PublicUrl { reason: String },
    /// A count or duration that must be positive is zero.
    #[error("webhook {field} must be greater than zero")]
    Zero { field: &'static str },
}

/// A parsed URL and how logs show it.
pub(super) struct Target {
    pub(super) url: reqwest::Url,
    pub(super) shown: Arc<str>,
}

impl Target {
    pub(super) fn parse(index: usize, url: &str) -> Result<Target, WebhookConfigError> {
        let parsed = reqwest::Url::parse(url).map_err(|error| WebhookConfigError::InvalidUrl {
            index,
            reason: error.to_string(),
        })?;
        let shown: Arc<str> = redact_url(parsed.clone()).into();
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(WebhookConfigError::UnsupportedScheme {
                index,
                url: shown.to_string(),
            });
        }
        Ok(Target { url: parsed, shown })
    }
}

/// `url` without credentials, query or fragment, for logs; unparsable URLs are not shown.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(url) => redact_url(url),
        Err(_) => "<invalid URL>".into(),
    }
}

/// How logs show a typed target's URL: generic ones like [`redact`]; Slack and PagerDuty ones
/// without their path (a Slack webhook's path is its secret).
fn redact_for(kind: TargetKind, url: &str) -> String {
    match (kind, reqwest::Url::parse(url)) {
        (TargetKind::Generic, _) | (_, Err(_)) => redact(url),
        (_, Ok(mut parsed)) => {
            parsed.set_path("");
            format!("{}…", redact_url(parsed))
        }
    }
}

pub(super) fn redact_url(mut url: reqwest::Url) -> String {
    // Both fail only for URLs without a host, which have no credentials to hide.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_and_debug_never_show_secrets() {
        assert_eq!(
            redact("http://user:pw@hooks.local:8080/in?token=t#f"),
            "http://hooks.local:8080/in"
        );
        assert_eq!(redact("not a url"), "<invalid URL>");
        let config = WebhookConfig::new(
            vec!["http://user:pw@hooks.local/in?token=t".into()],
            Some("s3cret".into()),
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("pw") && !shown.contains("token"));
    }

    #[test]
    fn validate_names_the_problem() {
        let config = |url: &str| WebhookConfig::new(vec![url.into()], None);
        assert_eq!(config("http://127.0.0.1:9/hook").validate(), Ok(()));
        assert!(matches!(
            config("nope").validate(),
            Err(WebhookConfigError::InvalidUrl { index: 0, .. })
        ));
        assert_eq!(config("https://hooks.example/x").validate(), Ok(()));
        assert_eq!(
            config("ftp://u:p@hooks.example/x?k=v").validate(),
            Err(WebhookConfigError::UnsupportedScheme {
                index: 0,
                url: "ftp://hooks.example/x".into()
            })
        );
        let mut zero = config("http://127.0.0.1:9/");
        zero.queue = 0;
        assert_eq!(
            zero.validate(),
            Err(WebhookConfigError::Zero { field: "queue" })
        );
    }

    #[test]
    fn typed_targets_are_checked_per_type_and_never_shown_in_full() {
        let config = |spec: TargetConfig| WebhookConfig {
            targets: vec![spec],
            ..WebhookConfig::new(Vec::new(), Some("global".into()))
        };
        let field_of = |spec: TargetConfig| match config(spec).validate() {
            Err(WebhookConfigError::Field { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        };
        let slack = TargetConfig {
            kind: TargetKind::Slack,
            url: Some("http://hooks.local/services/T0/B0/s3cret".into()),
            ..TargetConfig::default()
        };
        assert_eq!(config(slack.clone()).validate(), Ok(()));
        let resolved = config(slack.clone()).resolve(0).unwrap();
        assert_eq!(&*resolved.target.shown, "http://hooks.local/…");
        assert!(!format!("{:?}", config(slack.clone())).contains("s3cret"));
        let with_key = TargetConfig {
            routing_key: Some("k".into()),
            ..slack.clone()
        };
        assert_eq!(field_of(with_key), "routing_key");
        let no_url = TargetConfig { url: None, ..slack };
        assert_eq!(field_of(no_url), "url");

        let pagerduty = TargetConfig {
            kind: TargetKind::Pagerduty,
            url: Some("http://pd.local/v2/enqueue".into()),
            routing_key: Some("R0UT1NG".into()),
            ..TargetConfig::default()
        };
        assert!(matches!(
            config(pagerduty.clone()).resolve(0).map(|r| r.format),
            Ok(Format::Pagerduty { routing_key }) if routing_key == "R0UT1NG"
        ));
        assert!(!format!("{:?}", config(pagerduty.clone())).contains("R0UT1NG"));
        let keyless = TargetConfig {
            routing_key: Some(" ".into()),
            ..pagerduty.clone()
        };
        assert_eq!(field_of(keyless), "routing_key");
        let signed = TargetConfig {
            secret: Some("x".into()),
            ..pagerduty.clone()
        };
        assert_eq!(field_of(signed), "secret");
        // Without a url, a pagerduty target posts to the Events API's own https:// URL.
        let default_url = TargetConfig {
            url: None,
            ..pagerduty
        };
        let with_default = config(default_url);
        with_default.validate().unwrap();
        let resolved = with_default.resolve(0).unwrap();
        assert_eq!(
            resolved.target.url.as_str(),
            "https://events.pagerduty.com/v2/enqueue"
        );

        let generic = TargetConfig {
            url: Some("http://hooks.local/in".into()),
            ..TargetConfig::default()
        };
        assert!(matches!(
            config(generic.clone()).resolve(0).map(|r| r.format),
            Ok(Format::Generic { secret: Some(s) }) if s == "global"
        ));
        let own = TargetConfig {
            secret: Some("own".into()),
            ..generic
        };
        assert!(matches!(
            config(own).resolve(0).map(|r| r.format),
            Ok(Format::Generic { secret: Some(s) }) if s == "own"
        ));
    }

    #[test]
    fn public_url_must_be_absolute_http() {
        let with = |url: &str| WebhookConfig {
            public_url: Some(url.into()),
            ..WebhookConfig::new(Vec::new(), None)
        };
        assert_eq!(with("https://rollgate.example.com").validate(), Ok(()));
        assert!(matches!(
            with("rollgate.example.com").validate(),
            Err(WebhookConfigError::PublicUrl { .. })
        ));
        assert!(matches!(
            with("ftp://x/").validate(),
            Err(WebhookConfigError::PublicUrl { .. })
        ));
    }
}
