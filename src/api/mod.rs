//! The HTTP surface: one `configure` per API area (each file registers its own routes, body
//! limits included), thin handlers, one error mapping (`error`).
//!
//! Handlers extract, convert to validated domain types, call the control path (`ops`,
//! `controller`) or the live snapshot, and respond. Business rules live in those rooms and in
//! the `eval` crate; tokens are checked by `auth`'s extractors.

mod alerts;
mod apply;
mod audit;
mod client;
mod drills;
pub mod error;
mod extract;
mod flags;
mod health;
mod history;
mod ofrep;
mod openapi;
mod policies;
mod reach;
mod releases;
mod schemas;
mod segments;
mod signals;
mod stream;
mod tokens;
mod ui;

use crate::state::Limits;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpResponse};
use error::ApiError;

pub use ofrep::route_of;
pub use openapi::ApiDoc;

/// Merges runs of slashes in the request path (clients that join URLs naively send
/// `//ofrep/...`), as actix's `NormalizePath` with `TrailingSlash::MergeOnly` does, but without
/// its copy of every path and its regex: a path without `//` costs one scan and is left as is.
pub fn merge_slashes(req: &mut actix_web::dev::ServiceRequest) {
    use actix_web::http::uri::{PathAndQuery, Uri};
    let path = req.path();
    if !path.contains("//") {
        return;
    }
    let mut merged = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && merged.ends_with('/')) {
            merged.push(c);
        }
    }
    if let Some(query) = req.uri().query() {
        merged.push('?');
        merged.push_str(query);
    }
    let mut parts = req.head().uri.clone().into_parts();
    let Ok(path_and_query) = PathAndQuery::try_from(merged) else {
        return;
    };
    parts.path_and_query = Some(path_and_query);
    let Ok(uri) = Uri::from_parts(parts) else {
        return;
    };
    // Nothing is matched yet at the app's edge, so the router's view is simply replaced.
    req.match_info_mut().get_mut().update(&uri);
    req.head_mut().uri = uri;
}

/// A resource whose unsupported methods get a JSON 405 with `Allow` (the methods the OpenAPI
/// document lists for the path; `tests/api/openapi.rs` checks they are the routed ones).
pub(crate) fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn method_not_allowed(req: actix_web::HttpRequest) -> HttpResponse {
    let mut response = HttpResponse::from_error(ApiError::MethodNotAllowed);
    let allow = req
        .match_pattern()
        .and_then(|p| openapi::allowed_methods(&p));
    if let Some(value) = allow.and_then(|a| HeaderValue::from_str(a).ok()) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// Registers every route of the server: the shared defaults (ops body limit, query and path
/// errors through the one error mapping), then each area's own `configure`.
pub fn configure(cfg: &mut web::ServiceConfig, limits: &Limits) {
    cfg.app_data(web::PayloadConfig::new(limits.max_body))
        .app_data(extract::BodyLimit(limits.max_body))
        .app_data(
            web::QueryConfig::default()
                .error_handler(|e, req| extraction_error(req, e.to_string())),
        )
        .app_data(
            web::PathConfig::default().error_handler(|e, req| extraction_error(req, e.to_string())),
        );
    ofrep::configure(cfg, limits.max_eval_body);
    health::configure(cfg);
    openapi::configure(cfg);
    client::configure(cfg);
    flags::configure(cfg);
    apply::configure(cfg);
    segments::configure(cfg);
    policies::configure(cfg);
    tokens::configure(cfg);
    audit::configure(cfg);
    stream::configure(cfg);
    signals::configure(cfg, limits.max_signals_body);
    alerts::configure(cfg);
    releases::configure(cfg);
    history::configure(cfg);
    reach::configure(cfg);
    drills::configure(cfg);
    ui::configure(cfg);
}

/// actix's own query and path extractors (ours are `extract::Query` and `extract::Key`): a
/// refused request is answered with the refusal, auth first.
fn extraction_error(req: &actix_web::HttpRequest, message: String) -> actix_web::Error {
    match crate::auth::extract::refusal(req) {
        Some(refused) => ApiError::from(refused).into(),
        None => ApiError::BadRequest {
            field: None,
            message,
        }
        .into(),
    }
}

/// The answer for paths that match nothing.
pub async fn not_found() -> HttpResponse {
    HttpResponse::from_error(ApiError::NotFound("no such endpoint".to_owned()))
}
