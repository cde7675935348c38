//! The ops CLI's HTTP client and its one error type.
//!
//! Every command goes through [`Client`]: it adds the bearer token, sends JSON, and turns the
//! answer into either the server's JSON document or a [`CliError`]. The error decides the
//! process exit code in one place ([`CliError::exit_code`]):
//! `2` server unreachable, `3` token missing, refused or not admin, `1` anything else.
//!
//! `http://` and `https://`: the HTTP client comes from [`crate::tls::blocking_http_client`]
//! (rustls, the system's roots plus `--ca-file`); a certificate the client cannot trust is an
//! unreachable server (exit code 2) whose message names the certificate problem.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::blocking::{RequestBuilder, Response};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// How long one ordinary request may take (connect, and each read).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Path-segment characters left as they are (flag keys and ids never need more).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_');

/// Everything that can make an ops command fail.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No HTTP answer at all: connection refused, DNS, timeout.
    #[error("cannot reach rollgate at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    /// No token was given.
    #[error("no token given: set ROLLGATE_TOKEN or pass --token")]
    NoToken,
    /// 401: the token does not exist.
    #[error("the token was refused (ROLLGATE_TOKEN)")]
    Unauthorized,
    /// 403: a valid token without the admin role.
    #[error("this command needs an admin token; ROLLGATE_TOKEN has a narrower role")]
    Forbidden,
    /// Any other error answer, with the server's `error.message` and `error.field`.
    #[error("{message}{}", field.as_ref().map(|f| format!(" (field: {f})")).unwrap_or_default())]
    Api {
        status: u16,
        message: String,
        field: Option<String>,
    },
    /// A problem with what the user gave us (URL, plan file, arguments).
    #[error("{0}")]
    Input(String),
    /// The command ran, and what it checked failed (a rollback drill).
    #[error("{0}")]
    Failed(String),
    /// The server answered something this CLI does not understand.
    #[error("unexpected answer from {url}: {detail}")]
    Protocol { url: String, detail: String },
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Unreachable { .. } => 2,
            CliError::NoToken | CliError::Unauthorized | CliError::Forbidden => 3,
            CliError::Api { .. }
            | CliError::Input(_)
            | CliError::Failed(_)
            | CliError::Protocol { .. } => 1,
        }
    }
}

/// A connection to one rollgate server.
#[derive(Debug)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::blocking::Client,
}

impl Client {
    /// A client for `url` (`http://…` or `https://…`) sending `token` as a bearer token and
    /// trusting `ca_file`'s certificates beside the system's.
    pub fn new(url: &str, token: Option<String>, ca_file: Option<&Path>) -> Result<Self, CliError> {
        Self::with_timeout(url, token, Some(REQUEST_TIMEOUT), ca_file)
    }

    /// Like [`Client::new`], with `timeout` applied to connecting and to every read
    /// (`None`: wait forever).
    pub fn with_timeout(
        url: &str,
        token: Option<String>,
        timeout: Option<Duration>,
        ca_file: Option<&Path>,
    ) -> Result<Self, CliError> {
        let base = check_url(url)?;
        let token = token.filter(|t| !t.trim().is_empty());
        let http = crate::tls::blocking_http_client(ca_file)
            .map_err(|e| CliError::Input(e.to_string()))?
            .timeout(timeout)
            .connect_timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("rollgate-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Input(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client { base, token, http })
    }

    /// The server's base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path` → the JSON answer.
    pub fn get(&self, path: &str) -> Result<Value, CliError> {
        self.call(self.request(Method::GET, path)?)
    }

    /// `GET path?query` → the JSON answer.
    pub fn get_query(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CliError> {
        self.call(self.request(Method::GET, path)?.query(query))
    }

    /// `POST path` with a JSON body → the JSON answer.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.call(self.request(Method::POST, path)?.json(body))
    }

    /// `PUT path` with a JSON body → the JSON answer.
    pub fn put(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.call(self.request(Method::PUT, path)?.json(body))
    }

    /// `DELETE path` → the JSON answer (`Null` for 204).
    pub fn delete(&self, path: &str) -> Result<Value, CliError> {
        self.call(self.request(Method::DELETE, path)?)
    }

    /// A request with the token, for callers that read the body themselves (the stream).
    pub fn request(&self, method: Method, path: &str) -> Result<RequestBuilder, CliError> {
        let token = self.token.as_deref().ok_or(CliError::NoToken)?;
        Ok(self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token))
    }

    /// Sends `request`; a success status is returned as is, anything else as a [`CliError`].
    pub fn send(&self, request: RequestBuilder) -> Result<Response, CliError> {
        let response = request.send().map_err(|e| CliError::Unreachable {
            url: self.base.clone(),
            detail: root_cause(&e),
        })?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.error_of(response))
        }
    }

    fn call(&self, request: RequestBuilder) -> Result<Value, CliError> {
        let response = self.send(request)?;
        let url = response.url().to_string();
        let bytes = response.bytes().map_err(|e| CliError::Protocol {
            url: url.clone(),
            detail: root_cause(&e),
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| CliError::Protocol {
            url,
            detail: format!("invalid JSON: {e}"),
        })
    }

    fn error_of(&self, response: Response) -> CliError {
        let status = response.status();
        match status {
            StatusCode::UNAUTHORIZED => return CliError::Unauthorized,
            StatusCode::FORBIDDEN => return CliError::Forbidden,
            _ => {}
        }
        let body: Value = response.json().unwrap_or(Value::Null);
        let error = &body["error"];
        let message = error["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("the server answered {status}"));
        CliError::Api {
            status: status.as_u16(),
            message,
            field: error["field"].as_str().map(str::to_owned),
        }
    }
}

/// A path segment (flag key, release id) made safe for a URL path.
pub fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

fn check_url(url: &str) -> Result<String, CliError> {
    let parsed = reqwest::Url::parse(url.trim())
        .map_err(|e| CliError::Input(format!("invalid server URL {url:?}: {e}")))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed.as_str().trim_end_matches('/').to_owned()),
        other => Err(CliError::Input(format!(
            "invalid server URL {url:?}: scheme {other:?} is not http or https"
        ))),
    }
}

/// The innermost cause of an HTTP error ("Connection refused (os error 111)"), which says more
/// than reqwest's outer "error sending request for url".
pub fn root_cause(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".to_owned();
    }
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_contract() {
        let unreachable = CliError::Unreachable {
            url: "http://x".into(),
            detail: "refused".into(),
        };
        assert_eq!(unreachable.exit_code(), 2);
        assert_eq!(CliError::Unauthorized.exit_code(), 3);
        assert_eq!(CliError::Forbidden.exit_code(), 3);
        assert_eq!(CliError::NoToken.exit_code(), 3);
        assert_eq!(CliError::Input("x".into()).exit_code(), 1);
    }

    #[test]
    fn api_errors_name_their_field() {
        let e = CliError::Api {
            status: 422,
            message: "must be between 0 and 100".into(),
            field: Some("percentage".into()),
        };
        assert_eq!(
            e.to_string(),
            "must be between 0 and 100 (field: percentage)"
        );
    }

    #[test]
    fn only_http_and_https_urls_are_accepted() {
        assert_eq!(
            check_url("http://127.0.0.1:8080/").ok().as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            check_url("https://rollgate.example/").ok().as_deref(),
            Some("https://rollgate.example")
        );
        assert!(check_url("ftp://rollgate.example").is_err());
        assert!(check_url("127.0.0.1:8080").is_err());
    }

    #[test]
    fn segments_keep_keys_and_escape_the_rest() {
        assert_eq!(segment("qr-ordering.v2_x"), "qr-ordering.v2_x");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
