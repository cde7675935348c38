//! Webhook settings, their validation, and how URLs are shown in logs (no credentials, no query).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Webhook settings. `Debug` shows neither the secret nor URL credentials or queries.
#[derive(Clone)]
pub struct WebhookConfig {
    /// `http://` or `https://` URLs; each receives every event.
    pub urls: Vec<String>,
    /// HMAC-SHA256 key; when set, `X-Rollgate-Signature: sha256=<hex>` signs the body bytes.
    pub secret: Option<String>,
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

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|url| redact(url)).collect();
        f.debug_struct("WebhookConfig")
            .field("urls", &urls)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
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
}
