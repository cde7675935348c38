//! OFREP: the OpenFeature Remote Evaluation Protocol, single and bulk evaluation.
//!
//! Shapes follow the OFREP spec exactly (see `shared/spec/ofrep.md`): success bodies always
//! carry `key`, `value`, `reason`, `variant`, `metadata`; error bodies carry `key` (single),
//! `errorCode` and `errorDetails`. The body is read in full before authentication so keep-alive
//! connections stay usable after a 401. Evaluation reads the live snapshot lock-free, and the
//! answer is written by `crate::ofrep_wire` from pieces serialized once per flag (the same bytes
//! serde would write; `tests.rs` compares them over random flag sets and contexts).

mod body;

use super::extract::etag_matches;
use super::resource;
use super::schemas::{
    OfrepBadRequest, OfrepBulk, OfrepForbidden, OfrepNotFound, OfrepRequest, OfrepSuccess,
    OfrepTooLarge, OfrepUnauthorized,
};
use crate::auth::extract::{presented_token, Needs};
use crate::auth::index::TokenBook;
use crate::auth::{AuthError, Role};
use crate::live::ServedFlag;
use crate::metrics::ErrorLabels;
use crate::ofrep_wire;
use crate::state::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use body::parse_context;
use rollgate_eval::{Context, EvalError, Evaluation, Prepared};
use std::sync::Arc;

/// The content type of every OFREP answer (what `HttpResponse::json` sets).
const APPLICATION_JSON: &str = "application/json";

/// The OFREP routes: the scope and, under it, bulk and single.
const SCOPE: &str = "/ofrep/v1/evaluate";
const BULK: &str = "/flags";
const SINGLE: &str = "/flags/{key:.*}";
/// Their full patterns, as `HttpRequest::match_pattern` gives them (the metrics' `route`).
const BULK_ROUTE: &str = "/ofrep/v1/evaluate/flags";
const SINGLE_ROUTE: &str = "/ofrep/v1/evaluate/flags/{key:.*}";

/// Registers the OFREP routes (the bodies have their own, smaller limit).
pub fn configure(cfg: &mut web::ServiceConfig, max_body: usize) {
    cfg.service(
        web::scope(SCOPE)
            .app_data(web::PayloadConfig::new(max_body))
            .service(resource(BULK).route(web::post().to(evaluate_all)))
            .service(resource(SINGLE).route(web::post().to(evaluate_one))),
    );
}

/// The route pattern of an OFREP path, without asking the router again (the request metrics
/// label every request with it; `match_pattern` re-matches the path and allocates). Exact:
/// the bulk resource matches its path alone, the single one any path below it, whatever the
/// method (a wrong one gets the resource's 405).
pub fn route_of(path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix(BULK_ROUTE)?;
    if rest.is_empty() {
        Some(BULK_ROUTE)
    } else if rest.starts_with('/') {
        Some(SINGLE_ROUTE)
    } else {
        None
    }
}

/// A typical serialized result (`{"key":…,"value":…,"reason":…,"variant":…,"metadata":{"revision":…}}`),
/// to size the bulk answer's buffer once.
const BYTES_PER_RESULT: usize = 112;

/// An OFREP error answer: `{"key":…,"errorCode":…,"errorDetails":…}`.
fn failure(
    status: StatusCode,
    key: Option<&str>,
    code: &'static str,
    details: String,
) -> HttpResponse {
    failure_with(
        HttpResponse::build(status),
        key,
        code,
        &super::error::client_message(&details),
    )
}

fn failure_with(
    mut builder: actix_web::HttpResponseBuilder,
    key: Option<&str>,
    code: &'static str,
    details: &str,
) -> HttpResponse {
    let mut out = Vec::with_capacity(64 + details.len());
    ofrep_wire::write_failure(&mut out, key, code, details);
    builder.content_type(APPLICATION_JSON).body(out)
}

fn eval_error_code(e: EvalError) -> &'static str {
    match e {
        EvalError::TargetingKeyMissing => "TARGETING_KEY_MISSING",
        EvalError::InvalidTargetingKey => "INVALID_CONTEXT",
    }
}

/// Shared prelude: the body was read (whatever its fate, so keep-alive survives a 401); check
/// the token first, then the body. Returns the context and the token's stream-only token
/// (derived once per token when the token index is built, not per request).
fn prepare(
    req: &HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
    key: Option<&str>,
) -> Result<(Context, Arc<str>), Box<HttpResponse>> {
    let stream_token = match authorize(req) {
        Ok(token) => token,
        Err(AuthError::Unauthorized) => {
            let mut builder = HttpResponse::Unauthorized();
            builder.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            return Err(Box::new(failure_with(
                builder,
                key,
                "GENERAL",
                "missing or invalid token",
            )));
        }
        Err(refusal) => {
            return Err(Box::new(failure_with(
                HttpResponse::Forbidden(),
                key,
                "GENERAL",
                &refusal.to_string(),
            )))
        }
    };
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
    let context = parse_context(&body).map_err(|(code, details)| {
        Box::new(failure(StatusCode::BAD_REQUEST, key, code, details))
    })?;
    Ok((context, stream_token))
}

/// The presented token's stream-only token, when the token may evaluate: a client or admin
/// token (a viewer reads the ops API and changes nothing: evaluation is for clients and
/// admins). Same constant-time lookup as every other endpoint's; a revoked token is gone from
/// the index at once.
fn authorize(req: &HttpRequest) -> Result<Arc<str>, AuthError> {
    let book = req
        .app_data::<web::Data<TokenBook>>()
        .ok_or(AuthError::Unauthorized)?;
    let secret = presented_token(req.headers()).ok_or(AuthError::Unauthorized)?;
    let index = book.load();
    let entry = index.entry(secret).ok_or(AuthError::Unauthorized)?;
    if entry.principal.role == Role::Viewer {
        return Err(AuthError::Forbidden(Role::Viewer, Needs::Sender));
    }
    Ok(Arc::clone(&entry.stream_token))
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
        Ok((c, _)) => c,
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
        Ok(e) => {
            let mut out = Vec::with_capacity(BYTES_PER_RESULT * 2);
            ofrep_wire::write_success(&mut out, &flag.wire, &e, live.revision);
            HttpResponse::Ok().content_type(APPLICATION_JSON).body(out)
        }
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

/// `{"flags":[…]` for every flag, evaluated while written straight into the response buffer
/// (no list of results and no second copy of the JSON: with 10,000 flags, each of those was a
/// megabyte per request), and the ETag of the flags array.
fn evaluate_into_buffer(live: &crate::live::Live, context: &Prepared<'_>) -> (Vec<u8>, String) {
    let flags = live.flags();
    let mut out = Vec::with_capacity(flags.len() * BYTES_PER_RESULT + 512);
    out.extend_from_slice(b"{\"flags\":");
    let start = out.len();
    out.push(b'[');
    // An evaluation error is the same for every flag that has it: its words are made once.
    let mut details: Option<(EvalError, String)> = None;
    for (i, flag) in flags.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match evaluate(flag, context) {
            Ok(e) => ofrep_wire::write_success(&mut out, &flag.wire, &e, live.revision),
            Err(err) => {
                let words = match &details {
                    Some((seen, words)) if *seen == err => words,
                    _ => &details.insert((err, err.to_string())).1,
                };
                ofrep_wire::write_failure(
                    &mut out,
                    Some(&flag.def.key),
                    eval_error_code(err),
                    words,
                );
            }
        }
    }
    out.push(b']');
    // The ETag is derived from this context's evaluated result, so a changed attribute that
    // changes nothing keeps it, and any change of a served value changes it.
    let etag = crate::etag(&out[start..]);
    (out, etag)
}

/// ADR-0008: advertise the change stream so the web provider is pushed, not polling.
fn append_event_streams(
    req: &HttpRequest,
    state: &AppState,
    stream_token: &str,
    out: &mut Vec<u8>,
) {
    if req
        .peer_addr()
        .is_some_and(|peer| state.proxies.trusts(peer.ip()))
    {
        let info = req.connection_info();
        ofrep_wire::write_event_streams(out, info.scheme(), info.host(), stream_token);
        return;
    }
    let config = req.app_config();
    let scheme = if config.secure() { "https" } else { "http" };
    match req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    {
        Some(host) => ofrep_wire::write_event_streams(out, scheme, host, stream_token),
        None => {
            let host = config.local_addr().to_string();
            ofrep_wire::write_event_streams(out, scheme, &host, stream_token)
        }
    }
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
    let (context, stream_token) = match prepare(&req, body, None) {
        Ok(prepared) => prepared,
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
    bulk_answer(&req, &state, &stream_token, out, etag)
}

/// 304 when the client has this ETag; otherwise the flags, the metadata and the event streams.
fn bulk_answer(
    req: &HttpRequest,
    state: &AppState,
    stream_token: &str,
    mut out: Vec<u8>,
    etag: String,
) -> HttpResponse {
    if etag_matches(req, &etag) {
        return HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .finish();
    }
    out.extend_from_slice(b",\"metadata\":{}");
    append_event_streams(req, state, stream_token, &mut out);
    out.push(b'}');
    HttpResponse::Ok()
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .content_type(APPLICATION_JSON)
        .body(out)
}

#[cfg(test)]
mod tests;
