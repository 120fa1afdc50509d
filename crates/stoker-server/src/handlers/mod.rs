//! The handlers built into the server: kinds any client can enqueue without writing a worker.
//!
//! [`builtin`] registers every one of them; `stoker serve` runs them in-process, and
//! `stoker handlers` (and the HTTP API) list them through [`describe`].
//!
//! | kind | what it does |
//! |---|---|
//! | `webhook` | delivers an HTTP request, retried on 429, 5xx, timeouts and connection errors ([`Webhook`]) |

use serde::{Deserialize, Serialize};
use stoker::Registry;

mod webhook;

pub use webhook::{
    Webhook, WebhookArgs, ERROR_BODY_MAX_BYTES, RESULT_BODY_MAX_BYTES, RETRY_AFTER_MAX,
    TIMEOUT_DEFAULT, TIMEOUT_MAX,
};

/// One built-in handler, as `stoker handlers` and the HTTP API list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandlerInfo {
    /// The kind jobs name to be run by this handler, e.g. `webhook`.
    pub kind: String,
    /// What the handler does and which args it takes, in a sentence or two.
    pub description: String,
}

/// A registry holding every built-in handler.
///
/// # Examples
///
/// ```
/// let registry = stoker_server::handlers::builtin();
/// assert!(registry.contains("webhook"));
/// ```
///
/// # Panics
///
/// If the HTTP client of the `webhook` handler cannot be built (see [`Webhook::new`]).
pub fn builtin() -> Registry {
    let mut registry = Registry::new();
    registry
        .register_handler(Webhook::KIND, Webhook::new())
        .expect("built-in kinds are valid and registered once");
    registry
}

/// Every built-in handler's kind and description, sorted by kind.
///
/// # Examples
///
/// ```
/// let kinds: Vec<String> = stoker_server::handlers::describe()
///     .into_iter()
///     .map(|info| info.kind)
///     .collect();
/// assert_eq!(kinds, ["webhook"]);
/// ```
pub fn describe() -> Vec<HandlerInfo> {
    vec![HandlerInfo {
        kind: Webhook::KIND.to_owned(),
        description: Webhook::DESCRIPTION.to_owned(),
    }]
}

#[cfg(test)]
mod tests {
    #[test]
    fn describe_lists_every_registered_kind() {
        let registry = super::builtin();
        let described: Vec<String> = super::describe().into_iter().map(|i| i.kind).collect();
        assert_eq!(registry.kinds(), described);
    }
}
