//! Handlers by kind: typed jobs and dynamic handlers that take JSON.

use std::collections::BTreeMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use stoker_core::{validate_kind, InvalidInput};

use crate::{Backoff, Error, Job, JobContext, JobError};

/// A handler for one kind of job that takes its args as JSON.
///
/// Typed [`Job`]s get one for free; implement this for kinds defined at run time, plugins, or
/// handlers that want the raw JSON.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Runs one attempt. `Ok(Some(value))` is stored as the job's result.
    async fn perform(&self, args: Value, ctx: JobContext) -> Result<Option<Value>, JobError>;

    /// Checks args before a job of this kind is written. Defaults to accepting everything.
    ///
    /// # Errors
    ///
    /// An [`InvalidInput`] naming the field at fault.
    fn validate(&self, _args: &Value) -> Result<(), InvalidInput> {
        Ok(())
    }

    /// The time limit of one attempt. Defaults to none.
    fn timeout(&self) -> Option<Duration> {
        None
    }

    /// The wait after failed attempt `attempt`. Defaults to [`Backoff::default`].
    fn backoff(&self, attempt: i32) -> Duration {
        Backoff::default().delay(attempt)
    }
}

struct TypedHandler<J>(PhantomData<fn() -> J>);

fn decode<J: Job>(args: Value) -> Result<J, InvalidInput> {
    serde_json::from_value(args).map_err(|err| {
        InvalidInput::new("args", format!("not valid for kind {:?}: {err}", J::KIND))
    })
}

#[async_trait]
impl<J: Job> Handler for TypedHandler<J> {
    async fn perform(&self, args: Value, ctx: JobContext) -> Result<Option<Value>, JobError> {
        // Args that no longer decode (the struct changed under stored jobs) never will: discard.
        let job = decode::<J>(args).map_err(JobError::fatal)?;
        let output = job.perform(ctx).await?;
        let value = serde_json::to_value(output)
            .map_err(|err| JobError::fatal(format!("could not encode the job's output: {err}")))?;
        Ok(if value.is_null() { None } else { Some(value) })
    }

    fn validate(&self, args: &Value) -> Result<(), InvalidInput> {
        decode::<J>(args.clone())?.validate()
    }

    fn timeout(&self) -> Option<Duration> {
        J::timeout()
    }

    fn backoff(&self, attempt: i32) -> Duration {
        J::backoff(attempt)
    }
}

struct FnHandler<F>(F);

#[async_trait]
impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(Value, JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, JobError>> + Send + 'static,
{
    async fn perform(&self, args: Value, ctx: JobContext) -> Result<Option<Value>, JobError> {
        let value = (self.0)(args, ctx).await?;
        Ok(if value.is_null() { None } else { Some(value) })
    }
}

/// The handlers a worker runs, by kind.
///
/// ```
/// use serde_json::{json, Value};
/// use stoker::{JobContext, JobError, Registry};
///
/// let mut registry = Registry::new();
/// registry
///     .register_fn("echo", |args: Value, _ctx: JobContext| async move { Ok::<_, JobError>(args) })
///     .unwrap();
/// assert_eq!(registry.kinds(), vec!["echo"]);
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    handlers: BTreeMap<String, Arc<dyn Handler>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.kinds())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Registers the typed job `J` under `J::KIND`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) if the kind is already registered, [`Error::Invalid`](crate::Error::Invalid) if its name is
    /// not a valid kind.
    pub fn register<J: Job>(&mut self) -> Result<&mut Self, Error> {
        self.register_handler(J::KIND, TypedHandler::<J>(PhantomData))
    }

    /// Registers a dynamic handler under `kind`.
    ///
    /// # Errors
    ///
    /// As [`Registry::register`].
    pub fn register_handler(
        &mut self,
        kind: impl Into<String>,
        handler: impl Handler,
    ) -> Result<&mut Self, Error> {
        let kind = kind.into();
        validate_kind(&kind)?;
        if self.handlers.contains_key(&kind) {
            return Err(Error::Config(format!(
                "a handler for kind {kind:?} is already registered"
            )));
        }
        self.handlers.insert(kind, Arc::new(handler));
        Ok(self)
    }

    /// Registers an async closure taking JSON args as the handler for `kind`. A `null` return
    /// value stores no result.
    ///
    /// # Errors
    ///
    /// As [`Registry::register`].
    pub fn register_fn<F, Fut>(&mut self, kind: impl Into<String>, f: F) -> Result<&mut Self, Error>
    where
        F: Fn(Value, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, JobError>> + Send + 'static,
    {
        self.register_handler(kind, FnHandler(f))
    }

    /// The registered kinds, sorted.
    pub fn kinds(&self) -> Vec<&str> {
        self.handlers.keys().map(String::as_str).collect()
    }

    /// The handler for `kind`, if one is registered.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Handler>> {
        self.handlers.get(kind)
    }

    /// Whether a handler for `kind` is registered.
    pub fn contains(&self, kind: &str) -> bool {
        self.handlers.contains_key(kind)
    }
}
