//! What the stores know of sealed (encrypted) job payloads (issue 17 item 4): enough to find
//! them and swap them during a key rotation, nothing of their content. The client seals and
//! opens; a store only sees JSON objects with a `$enc` key, a key id `kid` and a nonce `n`.

use serde_json::Value;

use crate::JobId;

/// What [`Store::job_sealed_list`](crate::Store::job_sealed_list) takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSealedListParams {
    /// Only jobs with an id above this (the cursor of the walk; 0 to start).
    pub after: JobId,
    /// Leave out values sealed with this key id (the active key, during a rotation); `None`
    /// lists every sealed value.
    pub except_kid: Option<u32>,
    /// The most jobs to return.
    pub limit: u32,
}

/// A job whose args or result are sealed.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedJob {
    /// The job.
    pub id: JobId,
    /// Its kind (bound into the ciphertext's associated data).
    pub kind: String,
    /// Its tenant (bound too).
    pub tenant: Option<String>,
    /// Its args as stored.
    pub args: Value,
    /// Its result as stored.
    pub result: Option<Value>,
}

/// One replacement in [`Store::job_sealed_rewrite`](crate::Store::job_sealed_rewrite): the
/// new value applies only while the stored one still has the nonce `old_nonce`, so a value
/// that changed since it was read (a result written by a worker meanwhile) is left alone.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedRewrite {
    /// The job.
    pub id: JobId,
    /// `false` for the args, `true` for the result.
    pub result: bool,
    /// The nonce (`n`) of the value as it was read.
    pub old_nonce: String,
    /// The value sealed again.
    pub value: Value,
}
