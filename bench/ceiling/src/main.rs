//! The ceiling for `bench/http.sh`: the fastest an actix-web OFREP single-flag endpoint can
//! be on this machine when it does no flag work at all.
//!
//! It does what any OFREP server must do per request, and nothing more: route
//! `POST /ofrep/v1/evaluate/flags/{key}`, require a token header, read and parse the JSON body
//! (`{"context": {...}}`), and serialize a success body that echoes the key. rollgate's
//! throughput is reported as a percentage of this one, so the gap is the cost of real work
//! (token check, flag lookup, evaluation, metrics), not of the framework.
//!
//! Usage: `rollgate-ceiling [--bind ADDR]` (default `127.0.0.1:0`); prints
//! `listening on http://IP:PORT` on stdout once bound, like `rollgate serve`.

use std::io::Write;
use std::net::SocketAddr;

use actix_web::http::header::{self, ContentType};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Deserialize)]
struct EvaluationRequest {
    #[serde(default)]
    context: Map<String, Value>,
}

#[derive(Serialize)]
struct EvaluationSuccess<'a> {
    key: &'a str,
    value: bool,
    reason: &'static str,
    variant: &'static str,
    metadata: Map<String, Value>,
}

/// Same shape of work as a real OFREP handler: auth header present, body parsed, JSON out.
async fn evaluate(req: HttpRequest, key: web::Path<String>, body: web::Bytes) -> HttpResponse {
    let has_token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "))
        || req.headers().contains_key("x-api-key");
    if !has_token {
        return HttpResponse::Unauthorized().finish();
    }
    let request: EvaluationRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return HttpResponse::BadRequest().json(serde_json::json!({
                "key": key.as_str(),
                "errorCode": "PARSE_ERROR",
                "errorDetails": e.to_string(),
            }))
        }
    };
    // Touch the context like an evaluator would, so the parse cannot be optimised away.
    let variant = if request.context.contains_key("targetingKey") {
        "on"
    } else {
        "off"
    };
    let body = EvaluationSuccess {
        key: key.as_str(),
        value: variant == "on",
        reason: "STATIC",
        variant,
        metadata: Map::new(),
    };
    match serde_json::to_vec(&body) {
        Ok(bytes) => HttpResponse::Ok()
            .content_type(ContentType::json())
            .body(bytes),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

fn parse_bind() -> Result<String, String> {
    let mut bind = "127.0.0.1:0".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bind" => bind = args.next().ok_or("--bind needs an address")?,
            s if s.starts_with("--bind=") => bind = s["--bind=".len()..].to_owned(),
            "-h" | "--help" => {
                return Err("usage: rollgate-ceiling [--bind ADDR] (default 127.0.0.1:0)".into())
            }
            other => return Err(format!("unknown argument {other:?}; try --help")),
        }
    }
    Ok(bind)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let bind = match parse_bind() {
        Ok(bind) => bind,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let server = HttpServer::new(|| {
        App::new().route("/ofrep/v1/evaluate/flags/{key}", web::post().to(evaluate))
    })
    .workers(workers)
    .bind(&bind)?;
    let addr: SocketAddr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("bound to no address"))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{addr}")?;
    stdout.flush()?;
    drop(stdout);
    server.run().await
}
