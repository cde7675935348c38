//! [`RollgateProvider`]: the client behind the standard OpenFeature API (`open-feature` crate).
//!
//! Every resolution is a local evaluation through [`crate::Flags::evaluate_typed`], so the
//! exposure is recorded as with the client's own getters, and so are errors: an error with a
//! known variant (a `TYPE_MISMATCH`) becomes an `error` signal of that variant; one without
//! (`FLAG_NOT_FOUND`, `TARGETING_KEY_MISSING`, …) is counted in
//! [`crate::Status::unattributed_errors`].
//!
//! Mapping: reasons are OFREP's (`STATIC`, `TARGETING_MATCH`, `SPLIT`, `DISABLED`, `DEFAULT`);
//! error codes are OpenFeature's ([`crate::EvaluationError::code`]); the flag metadata
//! carries `revision` when the server numbers its changes. Integers: a `number` flag resolves
//! as an integer when the served value is a whole number, else `TYPE_MISMATCH`; any number
//! resolves as a float. Context: `targeting_key` becomes `targetingKey`; date-times become
//! Unix seconds (numbers, so `lt`/`gt` rules compare them); opaque `Struct` fields (Rust values OpenFeature cannot look into) are left
//! out.

use crate::client::Client;
use crate::error::EvaluationError;
use crate::Served;
use open_feature::provider::{
    FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails,
};
use open_feature::{
    EvaluationContext, EvaluationContextFieldValue, EvaluationErrorCode, EvaluationReason,
    EvaluationResult, FlagMetadata, StructValue, Value,
};
use rollgate_eval::{Context, Reason};

/// An OpenFeature provider that evaluates with a [`Client`].
///
/// ```no_run
/// use open_feature::{EvaluationContext, OpenFeature};
/// use rollgate_client::{Client, RollgateProvider};
///
/// # async fn demo() -> Result<(), rollgate_client::BuildError> {
/// let client = Client::builder("http://localhost:8080", "client-token").connect().await?;
/// OpenFeature::singleton_mut().await.set_provider(RollgateProvider::new(client.clone())).await;
///
/// let features = OpenFeature::singleton().await.create_client();
/// let user = EvaluationContext::default().with_targeting_key("user-42").with_custom_field("tier", "gold");
/// let on = features.get_bool_value("qr-ordering", Some(&user), None).await.unwrap_or(false);
/// # let _ = on;
/// client.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RollgateProvider {
    client: Client,
    metadata: ProviderMetadata,
}

impl RollgateProvider {
    /// A provider evaluating with `client` (which keeps running: shut it down yourself).
    ///
    /// ```no_run
    /// # async fn demo(client: rollgate_client::Client) {
    /// let provider = rollgate_client::RollgateProvider::new(client);
    /// # let _ = provider;
    /// # }
    /// ```
    pub fn new(client: Client) -> Self {
        RollgateProvider {
            client,
            metadata: ProviderMetadata::new("rollgate"),
        }
    }

    /// The client this provider evaluates with (for complaints and reports).
    ///
    /// ```no_run
    /// # fn demo(provider: &rollgate_client::RollgateProvider) {
    /// provider.client().complaint("qr-ordering");
    /// # }
    /// ```
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn resolve<T>(
        &self,
        flag: &str,
        context: &EvaluationContext,
        expected: &'static str,
        convert: impl FnOnce(&serde_json::Value) -> Option<T>,
    ) -> EvaluationResult<ResolutionDetails<T>> {
        let ctx = to_context(context);
        let flags = self.client.flags();
        let served = flags
            .evaluate_typed(flag, &ctx, expected)
            .map_err(to_error)?;
        let value = convert(served.value).ok_or_else(|| {
            to_error(EvaluationError::TypeMismatch {
                expected,
                actual: served.flag_type.as_str(),
            })
        })?;
        Ok(details(value, &served))
    }
}

fn details<T>(value: T, served: &Served<'_>) -> ResolutionDetails<T> {
    let mut metadata = FlagMetadata::default();
    if let Some(r) = served.revision.and_then(|r| i64::try_from(r).ok()) {
        metadata.add_value("revision", r);
    }
    ResolutionDetails {
        value,
        variant: Some(served.variant.to_owned()),
        reason: Some(reason(served.reason)),
        flag_metadata: Some(metadata),
    }
}

fn reason(r: Reason) -> EvaluationReason {
    match r {
        Reason::Static => EvaluationReason::Static,
        Reason::TargetingMatch => EvaluationReason::TargetingMatch,
        Reason::Split => EvaluationReason::Split,
        Reason::Disabled => EvaluationReason::Disabled,
        Reason::Default => EvaluationReason::Default,
    }
}

fn to_error(e: EvaluationError) -> open_feature::EvaluationError {
    let code = match e {
        EvaluationError::NotReady => EvaluationErrorCode::ProviderNotReady,
        EvaluationError::FlagNotFound => EvaluationErrorCode::FlagNotFound,
        EvaluationError::TargetingKeyMissing => EvaluationErrorCode::TargetingKeyMissing,
        EvaluationError::InvalidContext => EvaluationErrorCode::InvalidContext,
        EvaluationError::TypeMismatch { .. } => EvaluationErrorCode::TypeMismatch,
    };
    open_feature::EvaluationError {
        code,
        message: Some(e.to_string()),
    }
}

/// An OpenFeature context as a rollgate context.
fn to_context(context: &EvaluationContext) -> Context {
    let mut ctx = Context::new();
    for (key, value) in &context.custom_fields {
        let v = match value {
            EvaluationContextFieldValue::Bool(b) => serde_json::Value::Bool(*b),
            EvaluationContextFieldValue::Int(i) => serde_json::Value::from(*i),
            EvaluationContextFieldValue::Float(f) => serde_json::Value::from(*f),
            EvaluationContextFieldValue::String(s) => serde_json::Value::String(s.clone()),
            EvaluationContextFieldValue::DateTime(t) => serde_json::Value::from(t.unix_timestamp()),
            EvaluationContextFieldValue::Struct(_) => continue,
        };
        ctx.insert(key.clone(), v);
    }
    if let Some(key) = &context.targeting_key {
        ctx.insert(rollgate_eval::TARGETING_KEY.to_owned(), key.clone().into());
    }
    ctx
}

/// A JSON value as an OpenFeature value (`null`s have no counterpart and are left out).
fn to_value(v: &serde_json::Value) -> Option<Value> {
    Some(match v {
        serde_json::Value::Null => return None,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64()?),
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().filter_map(to_value).collect()),
        serde_json::Value::Object(o) => Value::Struct(to_struct(o)),
    })
}

fn to_struct(o: &serde_json::Map<String, serde_json::Value>) -> StructValue {
    StructValue {
        fields: o
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), to_value(v)?)))
            .collect(),
    }
}

#[open_feature::async_trait]
impl FeatureProvider for RollgateProvider {
    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    fn status(&self) -> ProviderStatus {
        if self.client.flags().is_ready() {
            ProviderStatus::Ready
        } else {
            ProviderStatus::NotReady
        }
    }

    async fn resolve_bool_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        self.resolve(
            flag_key,
            evaluation_context,
            "boolean",
            serde_json::Value::as_bool,
        )
    }

    async fn resolve_int_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        self.resolve(
            flag_key,
            evaluation_context,
            "integer",
            serde_json::Value::as_i64,
        )
    }

    async fn resolve_float_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        self.resolve(
            flag_key,
            evaluation_context,
            "number",
            serde_json::Value::as_f64,
        )
    }

    async fn resolve_string_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        self.resolve(flag_key, evaluation_context, "string", |v| {
            v.as_str().map(str::to_owned)
        })
    }

    async fn resolve_struct_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        self.resolve(flag_key, evaluation_context, "object", |v| {
            v.as_object().map(to_struct)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_and_values_convert() {
        let ctx = to_context(
            &EvaluationContext::default()
                .with_targeting_key("u1")
                .with_custom_field("age", 61)
                .with_custom_field("tier", "gold")
                .with_custom_field("beta", true),
        );
        assert_eq!(ctx["targetingKey"], "u1");
        assert_eq!(ctx["age"], 61);
        assert_eq!(ctx["beta"], true);
        let v = to_value(&serde_json::json!({"a": [1, 2.5, null], "b": null, "c": "x"})).unwrap();
        let Value::Struct(s) = v else {
            panic!("struct")
        };
        assert_eq!(s.fields.len(), 2);
        assert_eq!(
            s.fields["a"],
            Value::Array(vec![Value::Int(1), Value::Float(2.5)])
        );
    }
}
