//! [`Flags`]: one consistent snapshot of the config to evaluate against, and [`Served`],
//! what an evaluation served. Evaluating records the exposure in the snapshot's striped
//! counters: no lock, no I/O, no allocation, no panic.

use crate::error::EvaluationError;
use crate::flagset::FlagSet;
use crate::shared::Shared;
use arc_swap::Guard;
use rollgate_eval::{Context, FlagType, Reason};
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What an evaluation served, borrowed from the snapshot it was evaluated on.
///
/// ```no_run
/// # fn demo(client: &rollgate_client::Client, user: &rollgate_client::Context) {
/// let flags = client.flags();
/// if let Ok(served) = flags.evaluate("checkout-flow", user) {
///     println!("{} = {} ({})", served.variant, served.value, served.reason.as_str());
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Served<'a> {
    /// The flag's key.
    pub flag: &'a str,
    /// The served variant's name.
    pub variant: &'a str,
    /// The served variant's value.
    pub value: &'a Value,
    /// The release audience (its segment key) whose own percentage decided, if one did
    /// (docs/clients.md): signals about this answer are attributed to it.
    pub audience: Option<&'a str>,
    /// Why it was served (OFREP's reasons).
    pub reason: Reason,
    /// The flag's value type.
    pub flag_type: FlagType,
    /// The server revision of the config this answer came from (`None` from a server that
    /// does not number its changes).
    pub revision: Option<u64>,
}

/// The config in force at one moment: evaluate many flags against one consistent snapshot.
/// Holding it does not block updates (a newer config is published beside it); hold it for a
/// request, not for ever.
///
/// ```no_run
/// # fn demo(client: &rollgate_client::Client, user: &rollgate_client::Context) {
/// let flags = client.flags();
/// let a = flags.evaluate("module-a", user).map(|s| s.variant == "on").unwrap_or(false);
/// let b = flags.evaluate("module-b", user).map(|s| s.variant == "on").unwrap_or(false);
/// # let _ = (a, b);
/// # }
/// ```
pub struct Flags<'c> {
    pub(crate) set: Guard<Arc<FlagSet>>,
    pub(crate) shared: &'c Shared,
}

impl std::fmt::Debug for Flags<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flags")
            .field("flags", &self.set.snapshot.len())
            .field("revision", &self.set.revision)
            .finish()
    }
}

impl<'c> Flags<'c> {
    /// Evaluates `flag` for `ctx` and records the exposure of the served variant. Errors are
    /// recorded too: as an `error` signal of the variant when one is known, else counted in
    /// [`Status::unattributed_errors`](crate::Status::unattributed_errors).
    ///
    /// ```no_run
    /// # fn demo(client: &rollgate_client::Client, user: &rollgate_client::Context) {
    /// match client.flags().evaluate("checkout-flow", user) {
    ///     Ok(served) => println!("serving {}", served.variant),
    ///     Err(e) => println!("default ({})", e.code()),
    /// }
    /// # }
    /// ```
    pub fn evaluate(&self, flag: &str, ctx: &Context) -> Result<Served<'_>, EvaluationError> {
        self.evaluate_as(flag, ctx, None)
    }

    /// Like [`evaluate`](Self::evaluate), asking for a type: `"boolean"`, `"string"`,
    /// `"number"`, `"integer"` (a number flag whose served value is a whole number) or
    /// `"object"`. A flag of another type is a `TYPE_MISMATCH`, recorded as an `error` signal
    /// of the variant it would have served.
    ///
    /// ```no_run
    /// # fn demo(client: &rollgate_client::Client, user: &rollgate_client::Context) {
    /// let limit = client.flags().evaluate_typed("basket-limit", user, "integer")
    ///     .ok().and_then(|s| s.value.as_i64()).unwrap_or(10);
    /// # let _ = limit;
    /// # }
    /// ```
    pub fn evaluate_typed(
        &self,
        flag: &str,
        ctx: &Context,
        expected: &'static str,
    ) -> Result<Served<'_>, EvaluationError> {
        self.evaluate_as(flag, ctx, Some(expected))
    }

    fn evaluate_as(
        &self,
        flag: &str,
        ctx: &Context,
        expected: Option<&'static str>,
    ) -> Result<Served<'_>, EvaluationError> {
        let set: &FlagSet = &self.set;
        let fail = |e: EvaluationError| {
            self.shared
                .unattributed_errors
                .fetch_add(1, Ordering::Relaxed);
            Err(e)
        };
        if !set.is_ready() {
            return fail(EvaluationError::NotReady);
        }
        let Some(i) = set.position(flag) else {
            return fail(EvaluationError::FlagNotFound);
        };
        let Some(compiled) = set.snapshot.flags().get(i) else {
            return fail(EvaluationError::FlagNotFound);
        };
        let evaluation = match compiled.evaluate(ctx) {
            Ok(e) => e,
            Err(e) => return fail(e.into()),
        };
        let flag_type = compiled.flag_type();
        if let Some(expected) = expected {
            if !type_fits(expected, flag_type, evaluation.value) {
                self.shared
                    .error_signal(compiled.key(), (evaluation.variant, evaluation.audience));
                return Err(EvaluationError::mismatch(expected, flag_type));
            }
        }
        set.record_exposure(i, evaluation.variant_index, evaluation.audience);
        Ok(Served {
            flag: compiled.key(),
            variant: evaluation.variant,
            value: evaluation.value,
            audience: evaluation.audience,
            reason: evaluation.reason,
            flag_type,
            revision: set.revision,
        })
    }

    /// The variant `ctx` is served for `flag`, without recording an exposure.
    ///
    /// ```no_run
    /// # fn demo(client: &rollgate_client::Client, user: &rollgate_client::Context) {
    /// let flags = client.flags();
    /// let on = flags.variant_for("checkout-flow", user) == Some("on");
    /// # let _ = on;
    /// # }
    /// ```
    pub fn variant_for(&self, flag: &str, ctx: &Context) -> Option<&str> {
        self.served_for(flag, ctx).map(|(variant, _)| variant)
    }

    /// What `ctx` is served for `flag`: (variant, audience), without recording an exposure.
    pub(crate) fn served_for(&self, flag: &str, ctx: &Context) -> Option<(&str, Option<&str>)> {
        let i = self.set.position(flag)?;
        match self.set.evaluate_at(i, ctx)? {
            Ok(e) => Some((e.variant, e.audience)),
            Err(_) => None,
        }
    }

    /// Whether a config from the server is loaded (false until the first one arrives).
    ///
    /// ```no_run
    /// # fn demo(client: &rollgate_client::Client) {
    /// if !client.flags().is_ready() { /* serving defaults */ }
    /// # }
    /// ```
    pub fn is_ready(&self) -> bool {
        self.set.is_ready()
    }

    /// The server revision of this config, when the server numbers its changes.
    ///
    /// ```no_run
    /// # fn demo(client: &rollgate_client::Client) {
    /// println!("config revision {:?}", client.flags().revision());
    /// # }
    /// ```
    pub fn revision(&self) -> Option<u64> {
        self.set.revision
    }

    /// The keys of every flag in this config, in key order.
    ///
    /// ```no_run
    /// # fn demo(client: &rollgate_client::Client) {
    /// for key in client.flags().keys() { println!("{key}"); }
    /// # }
    /// ```
    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.set.snapshot.flags().iter().map(|f| f.key())
    }
}

fn type_fits(expected: &str, actual: FlagType, value: &Value) -> bool {
    match expected {
        "boolean" => actual == FlagType::Boolean,
        "string" => actual == FlagType::String,
        "number" => actual == FlagType::Number,
        "integer" => actual == FlagType::Number && value.as_i64().is_some(),
        "object" => actual == FlagType::Object,
        _ => false,
    }
}
