//! `POST /api/v1/alerts/alertmanager`: the Prometheus Alertmanager webhook (payload version 4).
//!
//! This file parses and checks the payload; what each alert does is the controller's
//! (`controller::alerts`): a firing alert whose labels name a flag (`rollgate_flag`) or a
//! release (`rollgate_release`) rolls it back when `severity = critical`, and pauses it
//! otherwise. Every alert is applied on its own and reported with its outcome, so one unknown
//! flag never drops the rest of a notification; the answer is 200 once the payload is valid,
//! so Alertmanager does not retry what was applied.

use super::error::ApiError;
use super::extract::{parse_json, Body};
use super::resource;
use super::schemas::{AdminOnly, AlertActions, Malformed, TooLarge};
use crate::auth::Admin;
use crate::controller::alerts::{apply_all, AlertInput};
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;

/// Registers the Alertmanager webhook route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/v1/alerts/alertmanager").route(web::post().to(alertmanager)));
}

/// The Alertmanager webhook body (only the fields rollgate uses are required).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AlertmanagerPayload {
    /// Must be `"4"`.
    #[schema(pattern = "^4$")]
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
    #[schema(pattern = "^(firing|resolved)$")]
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
    responses((status = 200, body = AlertActions, description = "One outcome per alert"), Malformed, AdminOnly, TooLarge), security(("bearer" = [])))]
#[tracing::instrument(name = "alerts.alertmanager", skip_all)]
pub async fn alertmanager(
    state: web::Data<AppState>,
    Admin(actor): Admin,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let payload: AlertmanagerPayload = parse_json(&body.0)?;
    let alerts = payload.into_inputs()?;
    let outcomes = apply_all(&state, &actor, alerts).await?;
    Ok(HttpResponse::Ok().json(json!({ "actions": outcomes })))
}

impl AlertmanagerPayload {
    /// Checks the version and statuses; each alert as the controller takes it.
    fn into_inputs(self) -> Result<Vec<AlertInput>, ApiError> {
        if self.version != "4" {
            return Err(ApiError::bad_field(
                "version",
                format!(
                    "unsupported Alertmanager payload version {:?} (expected \"4\")",
                    self.version
                ),
            ));
        }
        tracing::info!(receiver = ?self.receiver, group = ?self.group_key, status = %self.status, alerts = self.alerts.len(), "alertmanager notification");
        self.alerts
            .into_iter()
            .enumerate()
            .map(|(i, alert)| alert.into_input(i))
            .collect()
    }
}

impl Alert {
    fn into_input(mut self, i: usize) -> Result<AlertInput, ApiError> {
        let firing = match self.status.as_str() {
            "firing" => true,
            "resolved" => false,
            _ => {
                return Err(ApiError::bad_field(
                    format!("alerts[{i}].status"),
                    "must be firing or resolved",
                ))
            }
        };
        let summary = self
            .annotations
            .remove("summary")
            .or_else(|| self.annotations.remove("description"));
        Ok(AlertInput {
            name: self
                .labels
                .remove("alertname")
                .unwrap_or_else(|| "unnamed".into()),
            firing,
            critical: self
                .labels
                .get("severity")
                .is_some_and(|s| s.eq_ignore_ascii_case("critical")),
            flag: self.labels.remove("rollgate_flag"),
            release: self.labels.remove("rollgate_release"),
            summary,
            fingerprint: self.fingerprint,
        })
    }
}
