//! Bench-only: the fixture shared by `benches/eval.rs` (criterion: the SDK's local evaluation
//! against `unleash-yggdrasil`, and what recording the exposure adds) and `scaling.rs`
//! (throughput with 1, 2, 4 and 8 threads). Figures and commands: `bench/README.md`.
//!
//! The SDK is measured through its public API only, fed the way an app feeds it: a real
//! rollgate server is started in-process on port 0, the flag is created over the admin API,
//! and a [`Client`] fetches the config and follows the stream before anything is measured.
//!
//! The flag and its Unleash equivalent:
//!
//! | rollgate (`bench-flag`, boolean) | Unleash (`bench-flag`, `flexibleRollout`) |
//! |---|---|
//! | rule 1: `country not_in [se, no, dk]` → `off` | constraint `country IN [se, no, dk]` |
//! | rule 2: `tier in [blocked]` → `off` | constraint `tier NOT_IN [blocked]` |
//! | rule 3: `appVersion semver_lte 2.0.0` → `off` | constraint `appVersion SEMVER_GT 2.0.0` |
//! | `rollout: 25` (hash of salt and `targetingKey`) | `rollout: 25`, `stickiness: userId`, `groupId: bench-flag` |
//!
//! Every context passes the three rules / constraints, so both engines do all the work: three
//! conditions, then the rollout hash.

use rollgate::config::Config;
use rollgate::startup::Application;
use rollgate_client::{Client, Context};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;
use unleash_yggdrasil::{ClientFeatures, EngineState};

/// The flag's key (the same name on both sides).
pub const FLAG: &str = "bench-flag";
/// Contexts cycled through by every benchmark (a power of two: `i & (CONTEXTS - 1)`).
pub const CONTEXTS: usize = 256;
const ADMIN_TOKEN: &str = "bench-sdk-admin-token-0123456789";

/// A running server, a connected SDK client, the Unleash engine and the contexts.
pub struct Fixture {
    /// Runs the server and the SDK's background tasks (config stream, signal flushing).
    pub runtime: tokio::runtime::Runtime,
    /// The SDK client, with the flag's config applied.
    pub client: Client,
    /// The Unleash engine with the equivalent toggle.
    pub engine: EngineState,
    /// The contexts, as the SDK takes them.
    pub rollgate_contexts: Vec<Context>,
    /// The same contexts, as yggdrasil takes them.
    pub unleash_contexts: Vec<unleash_yggdrasil::Context>,
    _data_dir: tempfile::TempDir,
}

/// The rollgate flag: a rollout of 25% behind three rules.
pub fn rollgate_flag() -> serde_json::Value {
    json!({
        "key": FLAG, "type": "boolean", "variants": {"off": false, "on": true},
        "off_variant": "off", "on_variant": "on", "enabled": true, "rollout": 25,
        "rules": [
            {"when": [{"attribute": "country", "op": "not_in", "values": ["se", "no", "dk"]}], "variant": "off"},
            {"when": [{"attribute": "tier", "op": "in", "values": ["blocked"]}], "variant": "off"},
            {"when": [{"attribute": "appVersion", "op": "semver_lte", "values": ["2.0.0"]}], "variant": "off"}
        ]
    })
}

/// The equivalent Unleash toggle: a gradual rollout of 25% with three constraints.
pub fn unleash_features() -> Result<ClientFeatures, String> {
    serde_json::from_value(json!({
        "version": 2,
        "features": [{
            "name": FLAG, "enabled": true, "type": "release",
            "strategies": [{
                "name": "flexibleRollout",
                "parameters": {"rollout": "25", "stickiness": "userId", "groupId": FLAG},
                "constraints": [
                    {"contextName": "country", "operator": "IN", "values": ["se", "no", "dk"]},
                    {"contextName": "tier", "operator": "NOT_IN", "values": ["blocked"]},
                    {"contextName": "appVersion", "operator": "SEMVER_GT", "value": "2.0.0"}
                ]
            }]
        }]
    }))
    .map_err(|e| format!("unleash toggle: {e}"))
}

fn attributes(i: usize) -> [(&'static str, String); 3] {
    [
        ("country", ["se", "no", "dk"][i % 3].to_owned()),
        ("tier", ["gold", "silver", "basic"][i % 3].to_owned()),
        ("appVersion", format!("2.{}.{}", i % 10, i % 7)),
    ]
}

/// Starts the server, creates the flag, connects the SDK and loads the Unleash engine; checks
/// that both serve the new variant to about a quarter of the contexts.
pub fn fixture() -> Result<Fixture, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let data_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut config = Config::defaults();
    config.bind = "127.0.0.1:0".into();
    config.data_dir = data_dir.path().join("data");
    config.policies_dir = data_dir.path().join("no-policies");
    config.admin_token = Some(ADMIN_TOKEN.into());
    config.workers = 1;
    let client = runtime.block_on(async {
        let app = Application::build(config)
            .await
            .map_err(|e| format!("server: {e}"))?;
        let base = app.url();
        tokio::spawn(app.run_until_stopped());
        let http = reqwest::Client::new();
        let put = http
            .put(format!("{base}/api/v1/flags/{FLAG}"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&rollgate_flag())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !put.status().is_success() {
            return Err(format!("PUT flag: {}", put.status()));
        }
        let token: serde_json::Value = http
            .post(format!("{base}/api/v1/tokens"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"name": "bench", "role": "client"}))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let token = token["token"].as_str().ok_or("no client token")?.to_owned();
        let client = Client::builder(base, token)
            .start_timeout(Duration::from_secs(10))
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(client)
    })?;
    if !client.status().ready {
        return Err("the SDK got no config".into());
    }
    let engine = EngineState::default();
    engine.apply_client_features(unleash_features()?);

    let rollgate_contexts: Vec<Context> = (0..CONTEXTS)
        .map(|i| {
            let mut ctx = Context::new();
            ctx.insert("targetingKey".into(), format!("user-{i:04}").into());
            for (k, v) in attributes(i) {
                ctx.insert(k.into(), v.into());
            }
            ctx
        })
        .collect();
    let unleash_contexts: Vec<unleash_yggdrasil::Context> = (0..CONTEXTS)
        .map(|i| unleash_yggdrasil::Context {
            user_id: Some(format!("user-{i:04}")),
            properties: Some(
                attributes(i)
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect::<HashMap<_, _>>(),
            ),
            ..unleash_yggdrasil::Context::default()
        })
        .collect();

    // Equivalence check: both engines evaluate every context to a rollout decision, about 25% on.
    let flags = client.flags();
    let rollgate_on = rollgate_contexts
        .iter()
        .filter(|c| flags.variant_for(FLAG, c) == Some("on"))
        .count();
    drop(flags);
    let unleash_on = unleash_contexts
        .iter()
        .filter(|c| engine.is_enabled(FLAG, c, &None))
        .count();
    for (who, on) in [("rollgate", rollgate_on), ("unleash", unleash_on)] {
        if !(CONTEXTS * 15 / 100..=CONTEXTS * 35 / 100).contains(&on) {
            return Err(format!(
                "{who} serves {on} of {CONTEXTS} contexts, not about 25%"
            ));
        }
    }
    Ok(Fixture {
        runtime,
        client,
        engine,
        rollgate_contexts,
        unleash_contexts,
        _data_dir: data_dir,
    })
}
