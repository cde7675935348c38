//! The ops dashboard (issue 13, docs/ui.md): `GET /ui` and its assets under `/ui/`, embedded
//! in the binary (`src/ui/` at build time, no build step), served with a strict
//! Content-Security-Policy; and `GET /api/v1/whoami`, the role the dashboard adapts to.

use super::resource;
use super::schemas::Unauthorized;
use crate::auth::Caller;
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde_json::json;

/// Registers the dashboard and `whoami` routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/ui").route(web::get().to(index)))
        .service(resource("/ui/").route(web::get().to(index)))
        .service(resource("/ui/{file}").route(web::get().to(asset)))
        .service(resource("/api/v1/whoami").route(web::get().to(whoami)));
}

/// Nothing but this server: scripts, styles and connections to the same origin only; no
/// inline script or style, no frames, no forms posted elsewhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The embedded files: name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../ui/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/api.js"),
    ),
    (
        "logic.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/logic.js"),
    ),
    (
        "chart.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/chart.js"),
    ),
    (
        "views.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/views.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../ui/style.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../ui/favicon.svg"),
    ),
];

fn serve(name: &str) -> HttpResponse {
    let Some((_, content_type, body)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return HttpResponse::NotFound()
            .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
            .content_type("text/plain; charset=utf-8")
            .body("no such file");
    };
    HttpResponse::Ok()
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .content_type(*content_type)
        .body(*body)
}

/// `GET /ui`, `GET /ui/`: the page.
async fn index() -> HttpResponse {
    serve("index.html")
}

/// `GET /ui/{file}`: an asset.
async fn asset(file: web::Path<String>) -> HttpResponse {
    serve(&file)
}

/// `GET /api/v1/whoami` — the presented token's name and role.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "auth",
    responses((status = 200, body = WhoAmI), Unauthorized), security(("bearer" = [])))]
#[tracing::instrument(name = "whoami", level = "debug", skip_all)]
pub async fn whoami(Caller(caller): Caller) -> HttpResponse {
    HttpResponse::Ok().json(json!({"name": &*caller.name, "role": caller.role}))
}

/// Answer of `GET /api/v1/whoami`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct WhoAmI {
    /// The token's name.
    name: String,
    /// Its role.
    role: crate::auth::Role,
}
