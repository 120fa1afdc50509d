//! Failure groups, bulk operations by filter, and job logs (issue 13, items 3, 4 and 6): the
//! model the stores share, and the checks every caller goes through.
//!
//! - A **failure group** gathers every failed attempt with the same [`fingerprint`]: the job's
//!   kind, the error's class ([`ErrorKind`]) and its message with numbers, hex and UUIDs taken
//!   out. The store upserts the group in the same transaction that records the failure, and
//!   marks the job with it, so listing groups never scans jobs.
//! - A **bulk operation** applies one action to every job matching a [`BulkFilter`]. Creating
//!   it writes one row; a maintenance service then runs it in bounded batches
//!   ([`Store::bulk_op_step`](crate::Store::bulk_op_step)), so no request does unbounded work
//!   and a restart resumes where the last batch ended.
//! - **Job logs** are lines a running attempt writes to its job, fenced like progress and
//!   bounded per job by [`JOB_LOG_MAX_LINES`] and [`JOB_LOG_MAX_BYTES`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{validate_kind, ErrorKind, InvalidInput, JobId, Priority};

/// The most characters of a normalized message a group keeps (and fingerprints).
pub const FAILURE_MESSAGE_MAX_CHARS: usize = 500;
/// The most failure groups one list returns.
pub const FAILURE_LIST_MAX_LIMIT: u32 = 500;
/// The length of a fingerprint: 16 lowercase hex digits.
pub const FINGERPRINT_LEN: usize = 16;

/// The most log lines one job keeps, over all its attempts; later lines are dropped.
pub const JOB_LOG_MAX_LINES: u32 = 1000;
/// The most bytes of log lines one job keeps, over all its attempts; later lines are dropped.
pub const JOB_LOG_MAX_BYTES: u64 = 256 * 1024;
/// The longest single log line, in characters; longer lines are refused.
pub const JOB_LOG_LINE_MAX_CHARS: usize = 4096;
/// The most lines one append call carries.
pub const JOB_LOG_MAX_LINES_PER_CALL: usize = 100;

/// The most values each list of a [`BulkFilter`] holds.
pub const BULK_FILTER_MAX_VALUES: usize = crate::JOB_CRITERIA_MAX_VALUES;
/// The most bulk operations one list returns.
pub const BULK_LIST_MAX_LIMIT: u32 = 500;
/// The longest `created_by` of a bulk operation.
pub const BULK_CREATED_BY_MAX_LEN: usize = 255;

/// The class name of an error kind, as stored and shown (`error`, `panic`, `timeout`...).
pub fn error_class(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Error => "error",
        ErrorKind::Panic => "panic",
        ErrorKind::Timeout => "timeout",
        ErrorKind::WorkerLost => "worker_lost",
        ErrorKind::NoHandler => "no_handler",
        ErrorKind::InvalidArgs => "invalid_args",
        ErrorKind::Cancelled => "cancelled",
    }
}

/// An error message with what varies between occurrences of one failure taken out: UUIDs
/// become `<uuid>`, hex numbers (`0x1f`, or 8+ hex digits with a digit among them, such as
/// hashes and object ids) become `<hex>`, and every other run of digits becomes `<n>`. Runs
/// of whitespace become one space, and the result is cut at [`FAILURE_MESSAGE_MAX_CHARS`]
/// (only the message's first 8,000 characters are read).
///
/// ```
/// use stoker_core::normalize_message;
/// assert_eq!(
///     normalize_message("user 42 not found (req 550e8400-e29b-41d4-a716-446655440000)"),
///     "user <n> not found (req <uuid>)"
/// );
/// assert_eq!(normalize_message("bad hash deadbeef01 at 0x7ffe"), "bad hash <hex> at <hex>");
/// assert_eq!(normalize_message("order-17 took 1.5s"), "order-<n> took <n>.<n>s");
/// ```
pub fn normalize_message(message: &str) -> String {
    // Bounded work whatever the message's size: only its start can reach the result.
    let chars: Vec<char> = message
        .chars()
        .take(FAILURE_MESSAGE_MAX_CHARS * 16)
        .collect();
    let mut out = String::with_capacity(FAILURE_MESSAGE_MAX_CHARS);
    let mut i = 0;
    let mut last_space = false;
    // Four bytes hold any character, so past this many bytes `out` holds enough characters
    // (one more for a leading space the trim takes off); checked in O(1).
    while i < chars.len() && out.len() <= FAILURE_MESSAGE_MAX_CHARS * 4 {
        let c = chars[i];
        if c.is_whitespace() {
            if !last_space {
                out.push(' ');
            }
            last_space = true;
            i += 1;
            continue;
        }
        last_space = false;
        // Only at the start of a word: "x1" is a word with a number in it, not hex.
        let word_start = i == 0 || !chars[i - 1].is_ascii_alphanumeric();
        if word_start && is_uuid_at(&chars, i) {
            out.push_str("<uuid>");
            i += 36;
            continue;
        }
        if c.is_ascii_alphanumeric() && word_start {
            let end = chars[i..]
                .iter()
                .position(|c| !c.is_ascii_alphanumeric())
                .map_or(chars.len(), |n| i + n);
            let word = &chars[i..end];
            let is_hex = |w: &[char]| !w.is_empty() && w.iter().all(char::is_ascii_hexdigit);
            let prefixed_hex = word.len() > 2
                && word[0] == '0'
                && (word[1] == 'x' || word[1] == 'X')
                && is_hex(&word[2..]);
            let long_hex = word.len() >= 8
                && is_hex(word)
                && word.iter().any(char::is_ascii_digit)
                && !word.iter().all(char::is_ascii_digit);
            if prefixed_hex || long_hex {
                out.push_str("<hex>");
                i = end;
                continue;
            }
        }
        if c.is_ascii_digit() {
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            out.push_str("<n>");
            continue;
        }
        out.push(c);
        i += 1;
    }
    let trimmed = out.trim();
    trimmed.chars().take(FAILURE_MESSAGE_MAX_CHARS).collect()
}

/// Whether a UUID (8-4-4-4-12 hex digits) starts at `chars[i]` and is not followed by more
/// letters or digits.
fn is_uuid_at(chars: &[char], i: usize) -> bool {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let mut at = i;
    for (n, len) in GROUPS.iter().enumerate() {
        if n > 0 {
            if chars.get(at) != Some(&'-') {
                return false;
            }
            at += 1;
        }
        for _ in 0..*len {
            match chars.get(at) {
                Some(c) if c.is_ascii_hexdigit() => at += 1,
                _ => return false,
            }
        }
    }
    !chars.get(at).is_some_and(char::is_ascii_alphanumeric)
}

/// The fingerprint of a failure: 16 hex digits of a 64-bit FNV-1a hash of the kind, the
/// error class and the [normalized](normalize_message) message. Stable across builds and
/// processes, so every worker and both stores agree on it.
///
/// ```
/// use stoker_core::{fingerprint, ErrorKind};
/// let a = fingerprint("email", ErrorKind::Error, "smtp 421 from 10.0.0.7");
/// let b = fingerprint("email", ErrorKind::Error, "smtp 450 from 10.0.0.9");
/// assert_eq!(a, b);
/// assert_ne!(a, fingerprint("sms", ErrorKind::Error, "smtp 421 from 10.0.0.7"));
/// assert_eq!(a.len(), 16);
/// ```
pub fn fingerprint(kind: &str, error: ErrorKind, message: &str) -> String {
    fingerprint_normalized(kind, error, &normalize_message(message))
}

/// [`fingerprint`] of a message already normalized.
pub fn fingerprint_normalized(kind: &str, error: ErrorKind, normalized: &str) -> String {
    fingerprint_parts(&[kind, error_class(error), normalized])
}

// --- stream tenant ---
/// [`fingerprint_normalized`] of a job of `tenant` (issue 17): a tenant's failures form groups
/// of their own, so a tenant sees its groups and their counts and never another tenant's. A
/// job without a tenant has the fingerprint it always had.
///
/// ```
/// use stoker_core::{fingerprint_normalized, fingerprint_of_tenant, ErrorKind};
/// let plain = fingerprint_normalized("email", ErrorKind::Error, "smtp <n>");
/// assert_eq!(fingerprint_of_tenant("email", ErrorKind::Error, "smtp <n>", None), plain);
/// assert_ne!(fingerprint_of_tenant("email", ErrorKind::Error, "smtp <n>", Some("acme")), plain);
/// ```
pub fn fingerprint_of_tenant(
    kind: &str,
    error: ErrorKind,
    normalized: &str,
    tenant: Option<&str>,
) -> String {
    match tenant {
        None => fingerprint_normalized(kind, error, normalized),
        Some(tenant) => fingerprint_parts(&[kind, error_class(error), normalized, tenant]),
    }
}

/// The FNV-1a hash of `parts`, separated by a byte none of them holds, as 16 hex digits.
fn fingerprint_parts(parts: &[&str]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (n, part) in parts.iter().enumerate() {
        if n > 0 {
            // A separator no kind or class holds, so ("ab", "c") and ("a", "bc") differ.
            hash = fnv_byte(hash, 0x1f);
        }
        for byte in part.bytes() {
            hash = fnv_byte(hash, byte);
        }
    }
    format!("{hash:016x}")
}

fn fnv_byte(hash: u64, byte: u8) -> u64 {
    (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
}

/// Checks a fingerprint given by a caller: exactly 16 lowercase hex digits.
///
/// # Errors
///
/// [`InvalidInput`] naming `field`.
pub fn validate_fingerprint(field: &str, value: &str) -> Result<(), InvalidInput> {
    if value.len() != FINGERPRINT_LEN
        || !value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(InvalidInput::new(
            field,
            format!("must be {FINGERPRINT_LEN} lowercase hex digits, got {value:?}"),
        ));
    }
    Ok(())
}

/// One failed attempt as the store records it in its failure group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureRecord {
    /// The job that failed.
    pub job_id: JobId,
    /// The group: [`fingerprint`] of the kind, class and message.
    pub fingerprint: String,
    /// The job's kind.
    pub kind: String,
    /// The error's class.
    pub error_kind: ErrorKind,
    /// The normalized message.
    pub message: String,
    /// The message as the attempt reported it (cut to [`FAILURE_MESSAGE_MAX_CHARS`]).
    pub sample: String,
    // --- stream tenant ---
    /// The job's tenant: part of the fingerprint when there is one (see
    /// [`FailureRecord::of_tenant`]).
    pub tenant: Option<String>,
}

impl FailureRecord {
    /// The record of a failed attempt of job `job_id` of `kind`.
    pub fn new(job_id: JobId, kind: &str, error_kind: ErrorKind, message: &str) -> Self {
        let normalized = normalize_message(message);
        FailureRecord {
            job_id,
            fingerprint: fingerprint_normalized(kind, error_kind, &normalized),
            kind: kind.to_owned(),
            error_kind,
            message: normalized,
            sample: message.chars().take(FAILURE_MESSAGE_MAX_CHARS).collect(),
            tenant: None,
        }
    }

    // --- stream tenant ---
    /// The record of a job of `tenant` (issue 17): its group is its tenant's own (see
    /// [`fingerprint_of_tenant`]). `None` changes nothing.
    #[must_use]
    pub fn of_tenant(mut self, tenant: Option<&str>) -> Self {
        if let Some(tenant) = tenant {
            self.fingerprint =
                fingerprint_of_tenant(&self.kind, self.error_kind, &self.message, Some(tenant));
            self.tenant = Some(tenant.to_owned());
        }
        self
    }
}

/// A failure group: every failed attempt of one kind with the same class and normalized
/// message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureGroup {
    /// The group's id: see [`fingerprint`].
    pub fingerprint: String,
    /// The jobs' kind.
    pub kind: String,
    /// The error class.
    pub error_kind: ErrorKind,
    /// The normalized message.
    pub message: String,
    /// Failed attempts recorded in the group, ever.
    pub count: i64,
    /// When the first was recorded.
    pub first_seen: DateTime<Utc>,
    /// When the latest was recorded.
    pub last_seen: DateTime<Utc>,
    /// The job of the latest failure (it may since have been deleted).
    pub sample_job_id: JobId,
    /// The latest failure's message as reported.
    pub sample_message: String,
    // --- stream tenant ---
    /// The tenant whose jobs' failures it gathers (issue 17); `None` for jobs without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// Parameters of [`Store::failure_group_list`](crate::Store::failure_group_list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailureGroupListParams {
    /// Only groups seen at or after this instant (`last_seen >= since`).
    pub since: Option<DateTime<Utc>>,
    /// Only groups first seen before this instant (`first_seen < until`).
    pub until: Option<DateTime<Utc>>,
    /// Only groups of this kind.
    pub kind: Option<String>,
    /// The most groups to return, 1 to [`FAILURE_LIST_MAX_LIMIT`]; the most recently seen
    /// come first.
    pub limit: u32,
    // --- stream tenant ---
    /// Only groups of this tenant's jobs (issue 17); a client scoped to a tenant always sets
    /// its own.
    pub tenant: Option<String>,
}

impl FailureGroupListParams {
    /// Checks the limit and the kind (an empty range is no error: it lists nothing).
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming `limit` or `kind`.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if !(1..=FAILURE_LIST_MAX_LIMIT).contains(&self.limit) {
            return Err(InvalidInput::new(
                "limit",
                format!(
                    "must be from 1 to {FAILURE_LIST_MAX_LIMIT}, got {}",
                    self.limit
                ),
            ));
        }
        if let Some(kind) = &self.kind {
            validate_kind(kind)?;
        }
        Ok(())
    }
}

/// What a bulk operation does to each matching job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkAction {
    /// Run again now, as [`Store::job_retry`](crate::Store::job_retry) does one job; running
    /// jobs are skipped.
    Retry,
    /// Cancel, as [`Store::job_cancel`](crate::Store::job_cancel) does one job (a running job
    /// gets a cancel request); finished jobs are skipped.
    Cancel,
    /// Delete; running jobs are skipped.
    Delete,
    /// Stop retrying: `available` and `retryable` jobs become `discarded` (dead letter); others
    /// are skipped.
    Discard,
    /// Set the priority of `available` and `retryable` jobs; others are skipped.
    SetPriority,
    /// Set the `run_at` of `available` and `retryable` jobs; others are skipped.
    SetRunAt,
}

impl BulkAction {
    /// Every action.
    pub const ALL: [BulkAction; 6] = [
        BulkAction::Retry,
        BulkAction::Cancel,
        BulkAction::Delete,
        BulkAction::Discard,
        BulkAction::SetPriority,
        BulkAction::SetRunAt,
    ];

    /// The snake_case name used in the database, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            BulkAction::Retry => "retry",
            BulkAction::Cancel => "cancel",
            BulkAction::Delete => "delete",
            BulkAction::Discard => "discard",
            BulkAction::SetPriority => "set_priority",
            BulkAction::SetRunAt => "set_run_at",
        }
    }
}

impl std::str::FromStr for BulkAction {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BulkAction::ALL
            .into_iter()
            .find(|action| action.as_str() == s)
            .ok_or_else(|| {
                InvalidInput::new(
                    "action",
                    format!(
                        "unknown action {s:?}: expected one of retry, cancel, delete, discard, \
                         set_priority, set_run_at"
                    ),
                )
            })
    }
}

/// Where a bulk operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkOpState {
    /// Batches remain; the maintenance service runs them.
    Running,
    /// Every matching job was visited.
    Done,
    /// Stopped by a caller before it was done; batches already run stay applied.
    Aborted,
}

impl BulkOpState {
    /// The name used in the database, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            BulkOpState::Running => "running",
            BulkOpState::Done => "done",
            BulkOpState::Aborted => "aborted",
        }
    }
}

impl std::str::FromStr for BulkOpState {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "running" => Ok(BulkOpState::Running),
            "done" => Ok(BulkOpState::Done),
            "aborted" => Ok(BulkOpState::Aborted),
            other => Err(InvalidInput::new(
                "state",
                format!("unknown operation state {other:?}"),
            )),
        }
    }
}

/// Which jobs a bulk operation applies to: the same criteria as a job search (see
/// [`JobCriteria`](crate::JobCriteria)), so an operator can act on exactly what a search
/// showed. The CLI asks for `--all` before it sends an empty filter.
pub type BulkFilter = crate::JobCriteria;

/// Parameters of [`Store::bulk_op_create`](crate::Store::bulk_op_create).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkOpCreateParams {
    /// What to do.
    pub action: BulkAction,
    /// To which jobs.
    pub filter: BulkFilter,
    /// The new priority, for [`BulkAction::SetPriority`] (and only for it).
    pub priority: Option<Priority>,
    /// The new `run_at`, for [`BulkAction::SetRunAt`] (and only for it).
    pub run_at: Option<DateTime<Utc>>,
    /// Who asked (an API token's name, `cli`...), for the record.
    pub created_by: Option<String>,
    /// When.
    pub now: DateTime<Utc>,
}

impl BulkOpCreateParams {
    /// Checks the filter and that the action has exactly the value it needs.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming the field.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        self.filter.validate()?;
        match (self.action, self.priority.is_some(), self.run_at.is_some()) {
            (BulkAction::SetPriority, false, _) => {
                return Err(InvalidInput::new(
                    "priority",
                    "set_priority needs a priority",
                ))
            }
            (BulkAction::SetRunAt, _, false) => {
                return Err(InvalidInput::new("run_at", "set_run_at needs a run_at"))
            }
            (action, true, _) if action != BulkAction::SetPriority => {
                return Err(InvalidInput::new(
                    "priority",
                    format!(
                        "only set_priority takes a priority, not {}",
                        action.as_str()
                    ),
                ))
            }
            (action, _, true) if action != BulkAction::SetRunAt => {
                return Err(InvalidInput::new(
                    "run_at",
                    format!("only set_run_at takes a run_at, not {}", action.as_str()),
                ))
            }
            _ => {}
        }
        if let Some(by) = &self.created_by {
            if by.len() > BULK_CREATED_BY_MAX_LEN || by.chars().any(char::is_control) {
                return Err(InvalidInput::new(
                    "created_by",
                    format!("must be at most {BULK_CREATED_BY_MAX_LEN} bytes of printable text"),
                ));
            }
        }
        Ok(())
    }
}

/// A bulk operation and its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkOpRow {
    /// Assigned by the store; only grows.
    pub id: i64,
    /// What it does.
    pub action: BulkAction,
    /// To which jobs.
    pub filter: BulkFilter,
    /// The new priority of [`BulkAction::SetPriority`].
    pub priority: Option<Priority>,
    /// The new `run_at` of [`BulkAction::SetRunAt`].
    pub run_at: Option<DateTime<Utc>>,
    /// Where it is.
    pub state: BulkOpState,
    /// Jobs visited so far that matched the filter (the total once `done`).
    pub matched: i64,
    /// Matched jobs the action changed.
    pub done: i64,
    /// Matched jobs the action did not apply to (e.g. running jobs for a delete).
    pub skipped: i64,
    /// Jobs with ids up to this one have been visited.
    pub cursor: i64,
    /// The highest job id when it was created: jobs inserted later are left alone.
    pub max_id: i64,
    /// Who asked.
    pub created_by: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its last batch ran (or it was created or aborted).
    pub updated_at: DateTime<Utc>,
    /// When it ended (done or aborted).
    pub finished_at: Option<DateTime<Utc>>,
}

// --- stream history ---
/// A job a bulk change moved (a bulk operation's batch, a bulk retry), as the change left it:
/// what a live-events subscriber needs to see it move, so the runtime need not read the jobs
/// again (issue 13, item 7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedJob {
    /// The job.
    pub id: crate::JobId,
    /// Its state now; for a deleted job, the state it had when it was deleted.
    pub state: crate::JobState,
    /// Its queue.
    pub queue: String,
    /// Its kind.
    pub kind: String,
    /// Its tenant, if any.
    pub tenant: Option<String>,
    /// Its attempt count.
    pub attempt: i32,
    /// Its correlation id, if its metadata has one.
    pub correlation_id: Option<String>,
}

/// One batch of a bulk operation, as [`Store::bulk_op_step_jobs`](crate::Store::bulk_op_step_jobs)
/// ran it: the operation as the batch left it, and the jobs the batch changed (deleted, for a
/// [`BulkAction::Delete`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkOpStep {
    /// The operation after the batch.
    pub op: BulkOpRow,
    /// The jobs the batch changed, lowest id first.
    pub changed: Vec<ChangedJob>,
}
// --- end stream history ---

/// Parameters of [`Store::bulk_op_list`](crate::Store::bulk_op_list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkOpListParams {
    /// Only operations in these states; empty means any.
    pub states: Vec<BulkOpState>,
    /// Keyset cursor: only operations with an id below this (newest first).
    pub before_id: Option<i64>,
    /// The most to return, 1 to [`BULK_LIST_MAX_LIMIT`].
    pub limit: u32,
}

impl BulkOpListParams {
    /// Checks the limit and the cursor.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming `limit` or `before_id`.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if !(1..=BULK_LIST_MAX_LIMIT).contains(&self.limit) {
            return Err(InvalidInput::new(
                "limit",
                format!(
                    "must be from 1 to {BULK_LIST_MAX_LIMIT}, got {}",
                    self.limit
                ),
            ));
        }
        if self.before_id.is_some_and(|id| id < 1) {
            return Err(InvalidInput::new(
                "before_id",
                "must be an operation id (1 or more)",
            ));
        }
        Ok(())
    }
}

/// Parameters of [`Store::bulk_op_step`](crate::Store::bulk_op_step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkOpStepParams {
    /// The most jobs one batch changes; a batch also visits at most ten times as many ids, so
    /// a sparse filter costs bounded work per batch too.
    pub limit: u32,
    /// When: the jobs' new `run_at` on retry, `finished_at` on cancel and discard.
    pub now: DateTime<Utc>,
}

/// One log line of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLogLine {
    /// Its place among the job's lines, from 1.
    pub seq: i64,
    /// The attempt that wrote it.
    pub attempt: i32,
    /// When it was written.
    pub at: DateTime<Utc>,
    /// The text.
    pub line: String,
}

/// Parameters of [`Store::job_log_append`](crate::Store::job_log_append).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLogParams {
    /// The job.
    pub id: JobId,
    /// The fencing token, as for progress.
    pub fence: i64,
    /// The lines: 1 to [`JOB_LOG_MAX_LINES_PER_CALL`], each at most
    /// [`JOB_LOG_LINE_MAX_CHARS`].
    pub lines: Vec<String>,
    /// When.
    pub now: DateTime<Utc>,
}

impl JobLogParams {
    /// Checks the count and the length of each line.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming `lines` or `lines[i]`.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if self.lines.is_empty() || self.lines.len() > JOB_LOG_MAX_LINES_PER_CALL {
            return Err(InvalidInput::new(
                "lines",
                format!(
                    "give 1 to {JOB_LOG_MAX_LINES_PER_CALL} lines, got {}",
                    self.lines.len()
                ),
            ));
        }
        for (i, line) in self.lines.iter().enumerate() {
            let chars = line.chars().count();
            if chars > JOB_LOG_LINE_MAX_CHARS {
                return Err(InvalidInput::new(
                    format!("lines[{i}]"),
                    format!("is {chars} characters, over the limit of {JOB_LOG_LINE_MAX_CHARS}"),
                ));
            }
        }
        Ok(())
    }
}

/// What [`Store::job_log_append`](crate::Store::job_log_append) kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLogAppended {
    /// Lines stored.
    pub accepted: u32,
    /// Lines dropped because the job reached [`JOB_LOG_MAX_LINES`] or [`JOB_LOG_MAX_BYTES`].
    pub dropped: u32,
}

/// Which of `lines` fit when the job already holds `lines_held` lines of `bytes_held` bytes:
/// the longest prefix within both limits. Shared by the stores so they drop alike.
pub fn log_lines_that_fit(lines: &[String], lines_held: i64, bytes_held: i64) -> usize {
    let mut bytes = bytes_held;
    let room = (i64::from(JOB_LOG_MAX_LINES) - lines_held).max(0) as usize;
    lines
        .iter()
        .take(room)
        .take_while(|line| {
            bytes += line.len() as i64;
            bytes <= JOB_LOG_MAX_BYTES as i64
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_numbers_hex_and_uuids() {
        assert_eq!(normalize_message("timeout after 30s"), "timeout after <n>s");
        assert_eq!(
            normalize_message("row 123 id=9f86d081884c7d65 conflict"),
            "row <n> id=<hex> conflict"
        );
        assert_eq!(
            normalize_message("ID 123E4567-E89B-12D3-A456-426614174000 gone"),
            "ID <uuid> gone"
        );
        // Words that merely look like hex stay: they carry meaning.
        assert_eq!(
            normalize_message("deadbeef facade accepted"),
            "deadbeef facade accepted"
        );
        assert_eq!(normalize_message("  a \n\t b  "), "a b");
        assert_eq!(normalize_message("v2 api"), "v<n> api");
    }

    #[test]
    fn cuts_long_messages() {
        let long = "x".repeat(2000);
        assert_eq!(
            normalize_message(&long).chars().count(),
            FAILURE_MESSAGE_MAX_CHARS
        );
    }

    #[test]
    fn fingerprint_separates_parts() {
        assert_ne!(
            fingerprint("ab", ErrorKind::Error, "c"),
            fingerprint("a", ErrorKind::Error, "bc")
        );
        assert_ne!(
            fingerprint("a", ErrorKind::Error, "m"),
            fingerprint("a", ErrorKind::Panic, "m")
        );
        // Pinned: a change to the hash would split every existing group.
        assert_eq!(
            fingerprint("email", ErrorKind::Error, "smtp 421"),
            fingerprint_normalized("email", ErrorKind::Error, "smtp <n>")
        );
        validate_fingerprint("f", &fingerprint("k", ErrorKind::Error, "m")).unwrap();
    }

    #[test]
    fn filter_values_are_checked() {
        BulkFilter::default().validate().unwrap();
        let filter = BulkFilter {
            failure_group: Some("nothex".into()),
            ..BulkFilter::default()
        };
        assert_eq!(filter.validate().unwrap_err().field, "filter.failure_group");
        let filter = BulkFilter {
            queues: vec!["bad queue".into()],
            ..BulkFilter::default()
        };
        assert_eq!(filter.validate().unwrap_err().field, "filter.queues[0]");
    }

    #[test]
    fn logs_fit_within_both_limits() {
        let lines = vec!["ab".to_owned(); 5];
        assert_eq!(log_lines_that_fit(&lines, 0, 0), 5);
        assert_eq!(log_lines_that_fit(&lines, 998, 0), 2);
        assert_eq!(
            log_lines_that_fit(&lines, 0, JOB_LOG_MAX_BYTES as i64 - 5),
            2
        );
    }
}

// --- stream ops ---
// Failure-group counts by time range (issue 13, item 3): every failed attempt also adds one
// to its group's row for the hour it was recorded in, in the same statement batch as the
// group's upsert, so "how often did this fail in the last 24 hours" reads a few rows of one
// index, never the jobs. The rows live as long as the history's hours.

/// The most groups one [`Store::failure_group_counts`](crate::Store::failure_group_counts)
/// call reads.
pub const FAILURE_COUNT_MAX_GROUPS: usize = FAILURE_LIST_MAX_LIMIT as usize;

/// The longest range one [`Store::failure_group_counts`](crate::Store::failure_group_counts)
/// call reads: 400 days (at most 9,600 hours per group).
pub const FAILURE_COUNT_MAX_RANGE_SECS: i64 = 400 * 86_400;

/// Parameters of [`Store::failure_group_counts`](crate::Store::failure_group_counts): the
/// failed attempts of some groups in the hours overlapping `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureCountParams {
    /// The groups, 1 to [`FAILURE_COUNT_MAX_GROUPS`] fingerprints.
    pub fingerprints: Vec<String>,
    /// The range's start: the hour holding it is the first counted.
    pub from: DateTime<Utc>,
    /// The range's end (exclusive): hours starting at or after it are not counted.
    pub to: DateTime<Utc>,
}

impl FailureCountParams {
    /// Checks the groups and the range.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming `fingerprints` (none, too many, or one malformed), or `to`
    /// (not after `from`, or more than [`FAILURE_COUNT_MAX_RANGE_SECS`] after it).
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if self.fingerprints.is_empty() || self.fingerprints.len() > FAILURE_COUNT_MAX_GROUPS {
            return Err(InvalidInput::new(
                "fingerprints",
                format!(
                    "must name 1 to {FAILURE_COUNT_MAX_GROUPS} groups, got {}",
                    self.fingerprints.len()
                ),
            ));
        }
        for fingerprint in &self.fingerprints {
            validate_fingerprint("fingerprints", fingerprint)?;
        }
        if self.to <= self.from {
            return Err(InvalidInput::new(
                "to",
                format!("must be after from ({}), got {}", self.from, self.to),
            ));
        }
        if (self.to - self.from).num_seconds() > FAILURE_COUNT_MAX_RANGE_SECS {
            return Err(InvalidInput::new(
                "to",
                format!(
                    "the range may span at most {} days",
                    FAILURE_COUNT_MAX_RANGE_SECS / 86_400
                ),
            ));
        }
        Ok(())
    }

    /// The first hour counted, as Unix seconds: `from` rounded down to the hour.
    pub fn first_hour(&self) -> i64 {
        self.from.timestamp().div_euclid(3600) * 3600
    }

    /// The end of the hours counted, as Unix seconds (exclusive): `to`, so an hour is counted
    /// when it starts before `to`.
    pub fn end(&self) -> i64 {
        // An hour starting exactly at a fractional `to` would start after it: round up.
        let secs = self.to.timestamp();
        if self.to.timestamp_subsec_nanos() > 0 {
            secs + 1
        } else {
            secs
        }
    }
}

/// One group's failed attempts in one hour, from
/// [`Store::failure_group_counts`](crate::Store::failure_group_counts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureHour {
    /// The group.
    pub fingerprint: String,
    /// The hour's start.
    pub hour: DateTime<Utc>,
    /// Failed attempts recorded in the group in that hour.
    pub count: i64,
}
