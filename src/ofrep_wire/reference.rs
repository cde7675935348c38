//! The OFREP answers as plain serde structs: the oracle the fast writers are compared with
//! (this module's tests and `api::ofrep`'s). Test-only.

use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;

/// A success entry.
#[derive(Serialize)]
pub(crate) struct Success<'a> {
    pub(crate) key: &'a str,
    pub(crate) value: &'a Value,
    pub(crate) reason: &'static str,
    pub(crate) variant: &'a str,
    pub(crate) metadata: Metadata<'a>,
}

/// A success entry's metadata.
#[derive(Serialize)]
pub(crate) struct Metadata<'a> {
    pub(crate) revision: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) audience: Option<&'a str>,
}

/// An error entry.
#[derive(Serialize)]
pub(crate) struct Failure<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<&'a str>,
    #[serde(rename = "errorCode")]
    pub(crate) error_code: &'a str,
    #[serde(rename = "errorDetails")]
    pub(crate) error_details: Cow<'a, str>,
}

/// One entry of a bulk answer.
#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum Entry<'a> {
    Ok(Success<'a>),
    Err(Failure<'a>),
}
