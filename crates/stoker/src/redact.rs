//! Redaction of listed args and result paths when jobs are shown (issue 17 item 5).
//!
//! A [`Redaction`] says, per kind, which paths of the args and of the result are secret
//! (`card.number`, `password`), or that the args are hidden whole. A client given one
//! ([`Client::with_redaction`](crate::Client::with_redaction)) applies it to every job it
//! reads (get, list, search), so each face built on that client (the HTTP API for tokens below
//! admin, the CLI over HTTP, the dashboard) shows the same thing without a rule of its own.
//! The values found at those paths are also blanked out of the job's error messages, which
//! often echo the payload ("card 4242… declined").
//!
//! A path is keys joined by dots; an array on the way is walked element by element, so
//! `items.sku` covers `{"items": [{"sku": …}, {"sku": …}]}`. A missing path is no error: args
//! differ from job to job.

use std::collections::BTreeMap;

use serde_json::Value;
use stoker_core::JobRow;

/// What replaces a redacted value.
pub const REDACTED: &str = "[redacted]";
/// What replaces hidden args whole.
pub const HIDDEN: &str = "[hidden]";
/// Shortest value blanked out of error messages: shorter ones ("1", "no") would blank out
/// ordinary words.
const MESSAGE_MIN_CHARS: usize = 4;

/// What is hidden of one kind's jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindRedaction {
    /// Dot paths in the args whose values are shown as [`REDACTED`].
    #[serde(default)]
    pub args: Vec<String>,
    /// Dot paths in the result whose values are shown as [`REDACTED`].
    #[serde(default)]
    pub result: Vec<String>,
    /// Shows the args as [`HIDDEN`], whole.
    #[serde(default)]
    pub hide_args: bool,
}

/// Per kind, the args and result paths to redact and whether to hide args.
///
/// ```
/// use serde_json::json;
/// use stoker::{KindRedaction, Redaction};
///
/// let redaction = Redaction::new().kind("charge", KindRedaction {
///     args: vec!["card.number".into()],
///     ..Default::default()
/// });
/// let mut args = json!({"card": {"number": "4242424242424242", "brand": "visa"}});
/// redaction.redact_value(&mut args, &redaction.get("charge").unwrap().args);
/// assert_eq!(args, json!({"card": {"number": "[redacted]", "brand": "visa"}}));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redaction {
    kinds: BTreeMap<String, KindRedaction>,
}

impl Redaction {
    /// Redacts nothing; add kinds with [`Redaction::kind`].
    pub fn new() -> Self {
        Redaction::default()
    }

    /// Redacts jobs of `kind` as `rule` says.
    pub fn kind(mut self, kind: impl Into<String>, rule: KindRedaction) -> Self {
        self.kinds.insert(kind.into(), rule);
        self
    }

    /// Every kind's rule, by kind.
    pub fn kinds(&self) -> impl Iterator<Item = (&str, &KindRedaction)> {
        self.kinds.iter().map(|(kind, rule)| (kind.as_str(), rule))
    }

    /// The rule of `kind`, if it has one.
    pub fn get(&self, kind: &str) -> Option<&KindRedaction> {
        self.kinds.get(kind)
    }

    /// Whether no kind is redacted.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// Checks every path: no empty path and no empty segment, each segment a key.
    ///
    /// # Errors
    ///
    /// The field at fault (`redact.KIND.args[i]`) and why.
    pub fn validate(&self) -> Result<(), stoker_core::InvalidInput> {
        for (kind, rule) in &self.kinds {
            for (name, paths) in [("args", &rule.args), ("result", &rule.result)] {
                for (index, path) in paths.iter().enumerate() {
                    if path.is_empty() || path.split('.').any(str::is_empty) {
                        return Err(stoker_core::InvalidInput::new(
                            format!("redact.{kind}.{name}[{index}]"),
                            format!("{path:?} is no dot path such as card.number"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Replaces the values at `paths` in `value` with [`REDACTED`], and returns what they
    /// were, as text, for blanking out of messages.
    pub fn redact_value(&self, value: &mut Value, paths: &[String]) -> Vec<String> {
        let mut found = Vec::new();
        for path in paths {
            let segments: Vec<&str> = path.split('.').collect();
            redact_path(value, &segments, &mut found);
        }
        found
    }

    /// Applies the rule of the job's kind to its args, result and error messages.
    pub fn redact_job(&self, job: &mut JobRow) {
        let Some(rule) = self.kinds.get(&job.kind) else {
            return;
        };
        let mut secrets = if rule.hide_args {
            let mut leaves = Vec::new();
            leaf_texts(&job.args, &mut leaves);
            job.args = Value::String(HIDDEN.into());
            leaves
        } else {
            self.redact_value(&mut job.args, &rule.args)
        };
        if let Some(result) = job.result.as_mut() {
            secrets.extend(self.redact_value(result, &rule.result));
        }
        secrets.retain(|secret| secret.chars().count() >= MESSAGE_MIN_CHARS);
        // Longest first, so a secret that contains another is blanked whole.
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        for error in &mut job.errors {
            for secret in &secrets {
                if error.message.contains(secret.as_str()) {
                    error.message = error.message.replace(secret.as_str(), REDACTED);
                }
                if let Some(backtrace) = error.backtrace.as_mut() {
                    if backtrace.contains(secret.as_str()) {
                        *backtrace = backtrace.replace(secret.as_str(), REDACTED);
                    }
                }
            }
        }
    }
}

fn redact_path(value: &mut Value, path: &[&str], found: &mut Vec<String>) {
    match value {
        Value::Array(items) => {
            for item in items {
                redact_path(item, path, found);
            }
        }
        Value::Object(map) => {
            let Some((first, rest)) = path.split_first() else {
                return;
            };
            let Some(inner) = map.get_mut(*first) else {
                return;
            };
            if rest.is_empty() {
                leaf_texts(inner, found);
                *inner = Value::String(REDACTED.into());
            } else {
                redact_path(inner, rest, found);
            }
        }
        _ => {}
    }
}

/// Every string and number in `value`, as text.
fn leaf_texts(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) => out.push(text.clone()),
        Value::Number(number) => out.push(number.to_string()),
        Value::Array(items) => items.iter().for_each(|item| leaf_texts(item, out)),
        Value::Object(map) => map.values().for_each(|item| leaf_texts(item, out)),
        Value::Bool(_) | Value::Null => {}
    }
}

// --- stream history ---

/// A completion callback's URL as a reader who may not see it whole sees it (issue 13): the
/// scheme and host (with port) only, the rest replaced by [`REDACTED`]. Such a URL often
/// carries a secret (a signed URL, a token in its path or query), and a read-only token has
/// no use for it. Credentials before an `@` in the host are dropped too; anything that does
/// not look like `scheme://host` becomes [`REDACTED`] whole.
///
/// ```
/// assert_eq!(
///     stoker::redact_callback_url("https://hooks.example.com:8443/t/s3cr3t?sig=abc"),
///     "https://hooks.example.com:8443/[redacted]"
/// );
/// assert_eq!(stoker::redact_callback_url("not a url"), "[redacted]");
/// ```
pub fn redact_callback_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return REDACTED.to_owned();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let scheme_ok = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok || host.is_empty() {
        return REDACTED.to_owned();
    }
    format!("{scheme}://{host}/{REDACTED}")
}

/// Hides the callback URLs a job shows (issue 13): its own `on_finish` URL, and for a
/// callback's delivery job (a `webhook` job the `on_finish` trigger inserted), the URL in its
/// args. See [`redact_callback_url`].
pub(crate) fn hide_callback_urls(job: &mut JobRow) {
    if let Some(on_finish) = job.metadata.on_finish.as_mut() {
        on_finish.url = redact_callback_url(&on_finish.url);
    }
    if job.kind == stoker_core::ON_FINISH_KIND
        && job.metadata.source.as_deref() == Some("on_finish")
    {
        if let Some(Value::String(url)) = job.args.get_mut("url") {
            *url = redact_callback_url(url);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rule(args: &[&str], result: &[&str], hide_args: bool) -> KindRedaction {
        KindRedaction {
            args: args.iter().map(|p| (*p).to_owned()).collect(),
            result: result.iter().map(|p| (*p).to_owned()).collect(),
            hide_args,
        }
    }

    fn job(args: Value, result: Option<Value>, message: &str) -> JobRow {
        let mut job: JobRow = serde_json::from_value(json!({
            "id": 1, "kind": "charge", "queue": "q", "args": args, "state": "discarded",
            "priority": 0, "attempt": 1, "fence": 1, "max_attempts": 1,
            "run_at": "2026-01-01T00:00:00Z", "unique_key": null, "tenant": null,
            "metadata": {}, "errors": [
                {"attempt": 1, "at": "2026-01-01T00:00:00Z", "kind": "error", "message": message,
                 "backtrace": null}
            ],
            "result": null, "progress": null, "timeout_ms": null, "backoff": null,
            "created_at": "2026-01-01T00:00:00Z", "attempted_at": null, "finished_at": null,
            "worker_id": null, "cancel_requested_at": null, "lease_expires_at": null
        }))
        .unwrap();
        job.result = result;
        job
    }

    #[test]
    fn redacts_paths_through_arrays_and_in_messages() {
        let redaction = Redaction::new().kind(
            "charge",
            rule(&["card.number", "items.sku"], &["token"], false),
        );
        let mut row = job(
            json!({"card": {"number": "4242424242424242", "cvc": 1}, "items": [{"sku": "AB-1"}, {"sku": "CD-2"}]}),
            Some(json!({"token": "tok_secret", "ok": true})),
            "card 4242424242424242 declined (tok_secret)",
        );
        redaction.redact_job(&mut row);
        assert_eq!(
            row.args,
            json!({"card": {"number": REDACTED, "cvc": 1}, "items": [{"sku": REDACTED}, {"sku": REDACTED}]})
        );
        assert_eq!(row.result, Some(json!({"token": REDACTED, "ok": true})));
        assert_eq!(
            row.errors[0].message,
            "card [redacted] declined ([redacted])"
        );
    }

    #[test]
    fn hides_args_whole_and_leaves_other_kinds() {
        let redaction = Redaction::new().kind("charge", rule(&[], &[], true));
        let mut row = job(
            json!({"password": "hunter22"}),
            None,
            "bad password hunter22",
        );
        redaction.redact_job(&mut row);
        assert_eq!(row.args, json!(HIDDEN));
        assert_eq!(row.errors[0].message, "bad password [redacted]");
        let mut other = job(json!({"password": "hunter22"}), None, "x");
        other.kind = "email".into();
        redaction.redact_job(&mut other);
        assert_eq!(other.args, json!({"password": "hunter22"}));
    }

    #[test]
    fn validates_paths() {
        assert!(Redaction::new()
            .kind("k", rule(&["a.b"], &[], false))
            .validate()
            .is_ok());
        let err = Redaction::new()
            .kind("k", rule(&["a..b"], &[], false))
            .validate()
            .unwrap_err();
        assert_eq!(err.field, "redact.k.args[0]");
    }
}
