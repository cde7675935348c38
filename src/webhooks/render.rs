//! What each target type receives for an event: pure functions of the event, the target's
//! format and the dashboard's public URL, so that the payload shapes are unit-tested without
//! I/O. Generic targets get the event itself (signed); Slack and PagerDuty targets get the
//! message of [`super::slack`] or [`super::pagerduty`], or nothing for kinds they do not take.
//!
//! Invariant: the generic body is the event serialized as before typed targets existed (the
//! same bytes for every generic target, signed per target's secret).

use super::config::Format;
use super::event::WebhookEvent;
use crate::auth::hmac::sign;
use bytes::Bytes;

/// A body ready to send, and its signature when the target signs.
#[derive(Debug, Clone)]
pub(super) struct Rendered {
    pub(super) body: Bytes,
    pub(super) signature: Option<String>,
}

/// The body `format` takes for `event`; `Ok(None)` when the target does not take this kind.
/// `generic` is the event's serialized bytes, computed once by the caller for every target.
pub(super) fn render(
    format: &Format,
    event: &WebhookEvent,
    generic: &Bytes,
    public_url: Option<&str>,
) -> Result<Option<Rendered>, serde_json::Error> {
    let value = match format {
        Format::Generic { secret } => {
            return Ok(Some(Rendered {
                body: generic.clone(),
                signature: secret.as_deref().map(|s| sign(s, generic)),
            }))
        }
        Format::Slack => super::slack::message(event, public_url),
        Format::Pagerduty { routing_key } => {
            match super::pagerduty::event(event, routing_key, public_url) {
                Some(value) => value,
                None => return Ok(None),
            }
        }
    };
    Ok(Some(Rendered {
        body: Bytes::from(serde_json::to_vec(&value)?),
        signature: None,
    }))
}
