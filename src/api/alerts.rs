//! `POST /api/v1/alerts/alertmanager`: the Prometheus Alertmanager webhook (payload version 4).
//!
//! A firing alert whose labels name a flag (`rollgate_flag`) or a release (`rollgate_release`)
//! rolls it back when `severity = critical`, and pauses it otherwise. Resolved alerts are
//! recorded in the audit log. Alerts that name nothing of ours are recorded and ignored.

use super::error::ApiError;
use super::extract::{parse_json, Admin, Body};
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;

/// The Alertmanager webhook body (only the fields rollgate uses are required).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AlertmanagerPayload {
    /// Must be `"4"`.
    pub version: String,
    /// `firing` or `resolved` for the group.
    pub status: String,
    /// The alerts of the group.
    pub alerts: Vec<Alert>,
    /// Receiver name.
    #[serde(default)]
    pub receiver: Option<String>,
    /// Group key.
    #[serde(default, rename = "groupKey")]
    pub group_key: Option<String>,
}

/// One alert.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Alert {
    /// `firing` or `resolved`.
    pub status: String,
    /// Labels: `alertname`, `severity`, `rollgate_flag`, `rollgate_release`, …
    pub labels: BTreeMap<String, String>,
    /// Annotations (`summary`, `description`).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Fingerprint.
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// `POST /api/v1/alerts/alertmanager`
#[utoipa::path(post, path = "/api/v1/alerts/alertmanager", tag = "alerts", request_body = AlertmanagerPayload,
    responses((status = 200, description = "{\"actions\": [...]}"), (status = 400, description = "Malformed payload")), security(("bearer" = [])))]
pub async fn alertmanager(
    state: web::Data<AppState>,
    body: Body,
    Admin(actor): Admin,
) -> Result<HttpResponse, ApiError> {
    let payload: AlertmanagerPayload = parse_json(&body.0)?;
    if payload.version != "4" {
        return Err(ApiError::bad_field(
            "version",
            format!(
                "unsupported Alertmanager payload version {:?} (expected \"4\")",
                payload.version
            ),
        ));
    }
    for (i, alert) in payload.alerts.iter().enumerate() {
        if !matches!(alert.status.as_str(), "firing" | "resolved") {
            return Err(ApiError::bad_field(
                format!("alerts[{i}].status"),
                "must be firing or resolved",
            ));
        }
    }
    tracing::info!(receiver = ?payload.receiver, group = ?payload.group_key, status = %payload.status, alerts = payload.alerts.len(), "alertmanager notification");
    let mut actions = Vec::new();
    for alert in &payload.alerts {
        let name = alert
            .labels
            .get("alertname")
            .cloned()
            .unwrap_or_else(|| "unnamed".into());
        let summary = alert
            .annotations
            .get("summary")
            .or_else(|| alert.annotations.get("description"));
        let reason = format!(
            "alert {name}{}",
            summary.map(|s| format!(": {s}")).unwrap_or_default()
        );
        let critical = alert
            .labels
            .get("severity")
            .is_some_and(|s| s.eq_ignore_ascii_case("critical"));
        let outcome = state
            .alert(
                &actor,
                alert.status == "firing",
                critical,
                alert.labels.get("rollgate_flag"),
                alert.labels.get("rollgate_release"),
                &reason,
            )
            .await?;
        actions.push(json!({"alert": name, "fingerprint": alert.fingerprint, "status": alert.status, "critical": critical, "outcome": outcome}));
    }
    Ok(HttpResponse::Ok().json(json!({ "actions": actions })))
}
