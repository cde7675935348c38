//! OFREP: the OpenFeature Remote Evaluation Protocol, single and bulk evaluation.
//!
//! Shapes follow the OFREP spec exactly (see `shared/spec/ofrep.md`): success bodies always
//! carry `key`, `value`, `reason`, `variant`, `metadata`; error bodies carry `key` (single),
//! `errorCode` and `errorDetails`. The body is read in full before authentication so keep-alive
//! connections stay usable after a 401. Evaluation reads the live snapshot lock-free.

use super::extract::etag_matches;
use super::resource;
use super::schemas::{
    OfrepBadRequest, OfrepBulk, OfrepForbidden, OfrepNotFound, OfrepRequest, OfrepSuccess,
    OfrepTooLarge, OfrepUnauthorized,
};
use crate::auth::extract::{authenticate, presented_token, Needs};
use crate::auth::{AuthError, Role};
use crate::live::ServedFlag;
use crate::metrics::ErrorLabels;
use crate::state::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use rollgate_eval::{targeting_key, Context, EvalError, Evaluation, Prepared};
use serde::Serialize;
use serde_json::Value;

/// Registers the OFREP routes (the bodies have their own, smaller limit).
pub fn configure(cfg: &mut web::ServiceConfig, max_body: usize) {
    cfg.service(
        web::scope("/ofrep/v1/evaluate")
            .app_data(web::PayloadConfig::new(max_body))
            .service(resource("/flags").route(web::post().to(evaluate_all)))
            .service(resource("/flags/{key:.*}").route(web::post().to(evaluate_one))),
    );
}

#[derive(Serialize)]
struct Success<'a> {
    key: &'a str,
    value: &'a Value,
    reason: &'static str,
    variant: &'a str,
    metadata: Metadata<'a>,
}

/// Flag metadata: the config revision the answer was computed from (docs/clients.md), which
/// the signal hooks report back as the revision their app has applied, and the release
/// audience that decided, if one did, which they copy into the `audience` of their signals.
#[derive(Serialize)]
struct Metadata<'a> {
    revision: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    audience: Option<&'a str>,
}

#[derive(Serialize)]
struct Failure<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(rename = "errorCode")]
    error_code: &'static str,
    #[serde(rename = "errorDetails")]
    error_details: String,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Entry<'a> {
    Ok(Success<'a>),
    Err(Failure<'a>),
}

/// A typical serialized result (`{"key":…,"value":…,"reason":…,"variant":…,"metadata":{"revision":…}}`),
/// to size the bulk answer's buffer once.
const BYTES_PER_RESULT: usize = 112;

/// Every flag of the snapshot, evaluated for one context as it is serialized.
struct Evaluated<'a> {
    flags: &'a [std::sync::Arc<crate::live::ServedFlag>],
    context: &'a Prepared<'a>,
    revision: u64,
}

impl Serialize for Evaluated<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.flags.iter().map(|flag| {
            let key = flag.def.key.as_str();
            match evaluate(flag, self.context) {
                Ok(e) => Entry::Ok(success(key, &e, self.revision)),
                Err(err) => Entry::Err(Failure {
                    key: Some(key),
                    error_code: eval_error_code(err),
                    error_details: err.to_string(),
                }),
            }
        }))
    }
}

fn success<'a>(key: &'a str, e: &Evaluation<'a>, revision: u64) -> Success<'a> {
    Success {
        key,
        value: e.value,
        reason: e.reason.as_str(),
        variant: e.variant,
        metadata: Metadata {
            revision,
            audience: e.audience,
        },
    }
}

fn failure(
    status: StatusCode,
    key: Option<&str>,
    code: &'static str,
    details: String,
) -> HttpResponse {
    HttpResponse::build(status).json(Failure {
        key,
        error_code: code,
        error_details: super::error::client_message(&details),
    })
}

fn eval_error_code(e: EvalError) -> &'static str {
    match e {
        EvalError::TargetingKeyMissing => "TARGETING_KEY_MISSING",
        EvalError::InvalidTargetingKey => "INVALID_CONTEXT",
    }
}

/// Parses `{"context": {...}}`; an empty body is an empty context.
fn parse_context(body: &[u8]) -> Result<Context, (&'static str, String)> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Context::new());
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ("PARSE_ERROR", format!("malformed JSON: {e}")))?;
    let Value::Object(mut request) = value else {
        return Err((
            "PARSE_ERROR",
            "the request body must be a JSON object".to_owned(),
        ));
    };
    let context = match request.remove("context") {
        None | Some(Value::Null) => Context::new(),
        Some(Value::Object(c)) => c,
        Some(_) => {
            return Err((
                "INVALID_CONTEXT",
                "context must be a JSON object".to_owned(),
            ))
        }
    };
    targeting_key(&context).map_err(|e| ("INVALID_CONTEXT", e.to_string()))?;
    Ok(context)
}

/// Shared prelude: the body was read (whatever its fate, so keep-alive survives a 401); check
/// the token first, then the body.
fn prepare(
    req: &HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
    key: Option<&str>,
) -> Result<Context, Box<HttpResponse>> {
    let principal = authenticate(req).map_err(|_| {
        Box::new(
            HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
                .json(Failure {
                    key,
                    error_code: "GENERAL",
                    error_details: "missing or invalid token".into(),
                }),
        )
    })?;
    // A viewer reads the ops API and changes nothing: evaluation is for clients and admins.
    if principal.role == Role::Viewer {
        let refusal = AuthError::Forbidden(Role::Viewer, Needs::Sender);
        return Err(Box::new(HttpResponse::Forbidden().json(Failure {
            key,
            error_code: "GENERAL",
            error_details: refusal.to_string(),
        })));
    }
    let body = body.map_err(|e| {
        let status = e.as_response_error().status_code();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "GENERAL"
        } else {
            "PARSE_ERROR"
        };
        Box::new(failure(
            status,
            key,
            code,
            format!("could not read the request body: {e}"),
        ))
    })?;
    parse_context(&body)
        .map_err(|(code, details)| Box::new(failure(StatusCode::BAD_REQUEST, key, code, details)))
}

/// `POST /ofrep/v1/evaluate/flags/{key}`
#[utoipa::path(post, path = "/ofrep/v1/evaluate/flags/{key}", tag = "ofrep",
    params(("key" = String, Path, description = "Flag key")),
    request_body(content = Option<OfrepRequest>, description = "Optional: an empty body is an empty context"),
    responses((status = 200, body = OfrepSuccess), OfrepBadRequest, OfrepUnauthorized, OfrepForbidden, OfrepNotFound, OfrepTooLarge),
    security(("bearer" = [])))]
#[tracing::instrument(name = "ofrep.evaluate", level = "debug", skip_all)]
pub async fn evaluate_one(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Result<web::Bytes, actix_web::Error>,
) -> HttpResponse {
    let (sent, decoded) = sent_key(&req);
    let context = match prepare(&req, body, Some(decoded.as_deref().unwrap_or(sent))) {
        Ok(c) => c,
        Err(response) => return *response,
    };
    let Ok(key) = decoded else {
        return key_not_utf8(sent);
    };
    let live = state.live.load();
    let Some(flag) = live.get(&key) else {
        return flag_not_found(&state, &key);
    };
    match Prepared::single(&context).and_then(|c| evaluate(flag, &c)) {
        Ok(e) => HttpResponse::Ok().json(success(flag.def.key.as_str(), &e, live.revision)),
        Err(err) => {
            let code = eval_error_code(err);
            count_error(&state, code);
            failure(StatusCode::BAD_REQUEST, Some(&key), code, err.to_string())
        }
    }
}

fn evaluate<'a>(flag: &'a ServedFlag, context: &Prepared<'_>) -> Result<Evaluation<'a>, EvalError> {
    let e = flag.compiled.evaluate_prepared(context)?;
    flag.record(e.variant_index);
    Ok(e)
}

/// `{"flags":[…]` for every flag, evaluated while serialized straight into the response
/// buffer (no list of results and no second copy of the JSON: with 10,000 flags, each of those
/// was a megabyte per request), and the ETag of the flags array.
fn evaluate_into_buffer(live: &crate::live::Live, context: &Prepared<'_>) -> (Vec<u8>, String) {
    let mut out = Vec::with_capacity(live.flags().len() * BYTES_PER_RESULT + 512);
    out.extend_from_slice(b"{\"flags\":");
    let start = out.len();
    let evaluated = Evaluated {
        flags: live.flags(),
        context,
        revision: live.revision,
    };
    if serde_json::to_writer(&mut out, &evaluated).is_err() {
        out.truncate(start);
        out.extend_from_slice(b"[]");
    }
    // The ETag is derived from this context's evaluated result, so a changed attribute that
    // changes nothing keeps it, and any change of a served value changes it.
    let etag = crate::etag(&out[start..]);
    (out, etag)
}

/// ADR-0008: advertise the change stream so the web provider is pushed, not polling.
fn append_event_streams(req: &HttpRequest, state: &AppState, out: &mut Vec<u8>) {
    let Some(secret) = presented_token(req.headers()) else {
        return;
    };
    let url = format!(
        "{}/api/v1/stream?format=ofrep&token={}",
        origin(req, state),
        state.tokens.stream_token_for(secret)
    );
    let streams = serde_json::json!([{"type": "sse", "url": url, "inactivityDelaySec": 120}]);
    out.extend_from_slice(b",\"eventStreams\":");
    out.extend_from_slice(streams.to_string().as_bytes());
}

/// `scheme://host` as the client reached us: what a trusted proxy forwarded (`Forwarded`,
/// `X-Forwarded-Host`, `X-Forwarded-Proto`), or else the `Host` header (the listener's address
/// without one). Forwarded headers from any other peer are ignored.
fn origin(req: &HttpRequest, state: &AppState) -> String {
    if req
        .peer_addr()
        .is_some_and(|peer| state.proxies.trusts(peer.ip()))
    {
        let info = req.connection_info();
        return format!("{}://{}", info.scheme(), info.host());
    }
    let config = req.app_config();
    let scheme = if config.secure() { "https" } else { "http" };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| config.local_addr().to_string());
    format!("{scheme}://{host}")
}

/// The flag key as sent (actix decodes the URL once, lossily, so it is taken from the URL as
/// sent) and its percent-decoding, which fails for a key that is not UTF-8.
fn sent_key(req: &HttpRequest) -> (&str, Result<std::borrow::Cow<'_, str>, std::str::Utf8Error>) {
    let sent = req
        .uri()
        .path()
        .split_once("/flags/")
        .map_or("", |(_, k)| k);
    (
        sent,
        percent_encoding::percent_decode_str(sent).decode_utf8(),
    )
}

/// A key that is not UTF-8 names no flag and cannot be echoed: refused, not replaced by
/// U+FFFD (which would look up another key); `key` carries the segment as sent.
fn key_not_utf8(sent: &str) -> HttpResponse {
    failure(
        StatusCode::BAD_REQUEST,
        Some(sent),
        "PARSE_ERROR",
        format!("the flag key {sent:?} is not valid UTF-8 once percent-decoded"),
    )
}

fn flag_not_found(state: &AppState, key: &str) -> HttpResponse {
    count_error(state, "FLAG_NOT_FOUND");
    failure(
        StatusCode::NOT_FOUND,
        Some(key),
        "FLAG_NOT_FOUND",
        format!("flag {key:?} not found"),
    )
}

fn count_error(state: &AppState, code: &'static str) {
    state
        .metrics
        .eval_errors
        .get_or_create(&ErrorLabels { code })
        .inc();
}

/// `POST /ofrep/v1/evaluate/flags`
#[utoipa::path(post, path = "/ofrep/v1/evaluate/flags", tag = "ofrep",
    request_body(content = Option<OfrepRequest>, description = "Optional: an empty body is an empty context"),
    responses((status = 200, body = OfrepBulk, headers(("ETag" = String))), (status = 304, description = "If-None-Match matched"),
        OfrepBadRequest, OfrepUnauthorized, OfrepForbidden, OfrepTooLarge),
    security(("bearer" = [])))]
#[tracing::instrument(name = "ofrep.evaluate_all", level = "debug", skip_all)]
pub async fn evaluate_all(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Result<web::Bytes, actix_web::Error>,
) -> HttpResponse {
    let context = match prepare(&req, body, None) {
        Ok(c) => c,
        Err(response) => return *response,
    };
    // `prepare` has checked the targeting key already; this cannot fail.
    let Ok(context) = Prepared::new(&context) else {
        return failure(
            StatusCode::BAD_REQUEST,
            None,
            "INVALID_CONTEXT",
            "targetingKey must be a string".into(),
        );
    };
    let (out, etag) = evaluate_into_buffer(&state.live.load(), &context);
    bulk_answer(&req, &state, out, etag)
}

/// 304 when the client has this ETag; otherwise the flags, the metadata and the event streams.
fn bulk_answer(
    req: &HttpRequest,
    state: &AppState,
    mut out: Vec<u8>,
    etag: String,
) -> HttpResponse {
    if etag_matches(req, &etag) {
        return HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .finish();
    }
    out.extend_from_slice(b",\"metadata\":{}");
    append_event_streams(req, state, &mut out);
    out.push(b'}');
    HttpResponse::Ok()
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .content_type("application/json")
        .body(out)
}
