//! Job search (issue 14's Jobs page, issue 13's `scheduled` view): one set of criteria,
//! [`JobCriteria`], used by the job search ([`Store::job_search`](crate::Store::job_search)),
//! the bounded count ([`Store::job_count`](crate::Store::job_count)) and bulk operations
//! ([`BulkFilter`](crate::BulkFilter) is the same type), so "these jobs" means the same thing
//! on every surface.
//!
//! # Bounded work
//!
//! A search walks the jobs newest first (or oldest first from a cursor) along one index, the
//! *driver* ([`JobCriteria::driver`]): the ids asked for, the correlation id, parent, unique
//! key or failure group index, the `(state, id)` index for the states asked for, or the
//! primary key. It reads at most [`JOB_SEARCH_SCAN_MAX`] rows of that walk and keeps those
//! matching every other criterion. A page can therefore come back short, even empty, with a
//! cursor to go on ([`JobSearchPage::partial`]): a sparse criterion (a queue among millions
//! of jobs, a text search) costs the same bounded work per page as a dense one, and never a
//! table scan. Counts work the same way, capped at [`JOB_COUNT_CAP`] matches within
//! [`JOB_COUNT_SCAN_MAX`] rows of the driver ("10,000+").

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    validate_fingerprint, validate_kind, validate_queue, InvalidInput, JobId, JobRow, JobState,
    TENANT_MAX_LEN, UNIQUE_KEY_MAX_LEN,
};

/// The most values each list of a [`JobCriteria`] holds.
pub const JOB_CRITERIA_MAX_VALUES: usize = 32;
/// The longest free-text search, in characters.
pub const JOB_TEXT_MAX_CHARS: usize = 200;
/// The longest correlation id or worker id a criterion names, in bytes.
pub const JOB_LABEL_MAX_LEN: usize = 255;
/// The most jobs one search page returns.
pub const JOB_SEARCH_MAX_LIMIT: u32 = 1000;
/// The most rows of its driving index one search page reads.
pub const JOB_SEARCH_SCAN_MAX: u32 = 10_000;
/// The most matches a count counts exactly; past it the count is "at least".
pub const JOB_COUNT_CAP: u64 = 10_000;
/// The most rows of its driving index one count reads.
pub const JOB_COUNT_SCAN_MAX: u32 = 20_000;

/// A job's state as a search sees it: the six states, with `available` split into due work
/// (`available`) and work waiting for its `run_at` (`scheduled`).
///
/// `scheduled` is an available job still in the schedule: its `run_at` is in the future (the
/// stager moves it to due work within moments of `run_at`). A `retryable` job waiting for
/// its backoff stays `retryable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateView {
    /// Available and due: a worker may claim it now.
    Available,
    /// Available but waiting for its `run_at`.
    Scheduled,
    /// Running.
    Running,
    /// Failed an attempt, waiting for its backoff.
    Retryable,
    /// Completed.
    Completed,
    /// Failed for good (the dead letter).
    Discarded,
    /// Cancelled.
    Cancelled,
    /// Waiting for its workflow dependencies.
    Blocked,
}

impl StateView {
    /// Every view.
    pub const ALL: [StateView; 8] = [
        StateView::Blocked,
        StateView::Available,
        StateView::Scheduled,
        StateView::Running,
        StateView::Retryable,
        StateView::Completed,
        StateView::Discarded,
        StateView::Cancelled,
    ];

    /// What `failed` means in a search: jobs whose last attempt failed, whether they will be
    /// retried (`retryable`) or not (`discarded`).
    pub const FAILED: [StateView; 2] = [StateView::Retryable, StateView::Discarded];

    /// The name used in the API, the CLI and the query language.
    pub fn as_str(self) -> &'static str {
        match self {
            StateView::Available => "available",
            StateView::Scheduled => "scheduled",
            StateView::Running => "running",
            StateView::Retryable => "retryable",
            StateView::Completed => "completed",
            StateView::Discarded => "discarded",
            StateView::Cancelled => "cancelled",
            StateView::Blocked => "blocked",
        }
    }

    /// The stored state of jobs in this view.
    pub fn state(self) -> JobState {
        match self {
            StateView::Available | StateView::Scheduled => JobState::Available,
            StateView::Running => JobState::Running,
            StateView::Retryable => JobState::Retryable,
            StateView::Completed => JobState::Completed,
            StateView::Discarded => JobState::Discarded,
            StateView::Cancelled => JobState::Cancelled,
            StateView::Blocked => JobState::Blocked,
        }
    }

    /// The view a job is in (`scheduled` is the job's schedule flag, as the store keeps it).
    pub fn of(state: JobState, scheduled: bool) -> StateView {
        match state {
            JobState::Available if scheduled => StateView::Scheduled,
            JobState::Available => StateView::Available,
            JobState::Running => StateView::Running,
            JobState::Retryable => StateView::Retryable,
            JobState::Completed => StateView::Completed,
            JobState::Discarded => StateView::Discarded,
            JobState::Cancelled => StateView::Cancelled,
            JobState::Blocked => StateView::Blocked,
        }
    }

    /// Parses one state word, where `failed` stands for `retryable` and `discarded` (see
    /// [`StateView::FAILED`]).
    ///
    /// ```
    /// use stoker_core::StateView;
    /// assert_eq!(StateView::parse_word("failed").unwrap(), StateView::FAILED.to_vec());
    /// assert_eq!(StateView::parse_word("scheduled").unwrap(), vec![StateView::Scheduled]);
    /// assert!(StateView::parse_word("faild").is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] for field `state` naming the word and the accepted ones.
    pub fn parse_word(word: &str) -> Result<Vec<StateView>, InvalidInput> {
        if word == "failed" {
            return Ok(StateView::FAILED.to_vec());
        }
        word.parse().map(|view| vec![view])
    }
}

impl std::fmt::Display for StateView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for StateView {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StateView::ALL
            .into_iter()
            .find(|view| view.as_str() == s)
            .ok_or_else(|| {
                InvalidInput::new(
                    "state",
                    format!(
                        "unknown job state {s:?}: expected one of available, scheduled, \
                         running, retryable, completed, discarded, cancelled, failed"
                    ),
                )
            })
    }
}

/// Which jobs: those matching every criterion given. An empty criteria matches every job;
/// an empty time range none. Used by search, count and bulk operations alike.
///
/// ```
/// use stoker_core::{JobCriteria, StateView};
/// let criteria = JobCriteria {
///     states: StateView::FAILED.to_vec(),
///     queues: vec!["mail".into()],
///     text: Some("ada@example.com".into()),
///     ..JobCriteria::default()
/// };
/// criteria.validate().unwrap();
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobCriteria {
    /// Only jobs in these states (with `available` meaning due and `scheduled` not yet due).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<StateView>,
    /// Only jobs in these queues.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<String>,
    /// Only jobs of these kinds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    /// Only this tenant's jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Only jobs whose latest failure is in this group (a [`fingerprint`](crate::fingerprint)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_group: Option<String>,
    /// Only jobs created at or after this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_after: Option<DateTime<Utc>>,
    /// Only jobs created before this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_before: Option<DateTime<Utc>>,
    /// Only these jobs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<JobId>,
    /// Only jobs with this idempotency key (in any tenant, unless `tenant` is given too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_key: Option<String>,
    /// Only jobs with this correlation id in their metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Only children of this job (their metadata's `parent_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<JobId>,
    /// Only jobs last run (or running) on this worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    /// Only jobs finished at or after this instant (so only finished jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_after: Option<DateTime<Utc>>,
    /// Only jobs finished before this instant (so only finished jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_before: Option<DateTime<Utc>>,
    /// Only jobs whose args or metadata contain this text: a case-sensitive substring of
    /// their JSON text (search for a value such as `ada@example.com`; how the stores space
    /// JSON punctuation differs, so do not search across `":`). Not index-backed: bounded by
    /// the scan budget (see the module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// The index a search walks for a [`JobCriteria`]: the most selective criterion with an
/// index that yields jobs in id order. Every other criterion filters the rows it yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanDriver {
    /// The primary key, restricted to these ids.
    Ids(Vec<JobId>),
    /// The correlation id index.
    CorrelationId(String),
    /// The parent index.
    ParentId(JobId),
    /// The unique key index.
    UniqueKey(String),
    /// The failure group index.
    FailureGroup(String),
    /// The `(state, id)` index, once per stored state (sorted, no duplicates).
    States(Vec<JobState>),
    /// The primary key: every job.
    All,
}

impl JobCriteria {
    /// Criteria matching every job.
    pub fn new() -> Self {
        JobCriteria::default()
    }

    /// Whether no criterion is given (so it matches every job).
    pub fn is_empty(&self) -> bool {
        *self == JobCriteria::default()
    }

    /// Checks the criteria, naming fields after `prefix` (`filter.` for a bulk operation's,
    /// nothing for a search's query parameters): lists of at most [`JOB_CRITERIA_MAX_VALUES`]
    /// valid names, a valid fingerprint, ids of 1 or more, labels of at most
    /// [`JOB_LABEL_MAX_LEN`] bytes, a text of 1 to [`JOB_TEXT_MAX_CHARS`] characters.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming the field (`queues[i]`, `text`, ...).
    pub fn validate_as(&self, prefix: &str) -> Result<(), InvalidInput> {
        let field = |name: &str| format!("{prefix}{name}");
        for (name, len) in [
            ("states", self.states.len()),
            ("queues", self.queues.len()),
            ("kinds", self.kinds.len()),
            ("ids", self.ids.len()),
        ] {
            if len > JOB_CRITERIA_MAX_VALUES {
                return Err(InvalidInput::new(
                    field(name),
                    format!("name at most {JOB_CRITERIA_MAX_VALUES} values, got {len}"),
                ));
            }
        }
        for (i, queue) in self.queues.iter().enumerate() {
            validate_queue(queue)
                .map_err(|err| InvalidInput::new(field(&format!("queues[{i}]")), err.reason))?;
        }
        for (i, kind) in self.kinds.iter().enumerate() {
            validate_kind(kind)
                .map_err(|err| InvalidInput::new(field(&format!("kinds[{i}]")), err.reason))?;
        }
        for (i, id) in self.ids.iter().enumerate() {
            if id.0 < 1 {
                return Err(InvalidInput::new(
                    field(&format!("ids[{i}]")),
                    format!("must be a job id (1 or more), got {id}"),
                ));
            }
        }
        if self.parent_id.is_some_and(|id| id.0 < 1) {
            return Err(InvalidInput::new(
                field("parent_id"),
                "must be a job id (1 or more)",
            ));
        }
        for (name, value, max) in [
            ("tenant", &self.tenant, TENANT_MAX_LEN),
            ("unique_key", &self.unique_key, UNIQUE_KEY_MAX_LEN),
            ("correlation_id", &self.correlation_id, JOB_LABEL_MAX_LEN),
            ("worker_id", &self.worker_id, JOB_LABEL_MAX_LEN),
        ] {
            if let Some(value) = value {
                if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
                    return Err(InvalidInput::new(
                        field(name),
                        format!(
                            "must be 1 to {max} bytes of printable text, got {} bytes",
                            value.len()
                        ),
                    ));
                }
            }
        }
        if let Some(group) = &self.failure_group {
            validate_fingerprint(&field("failure_group"), group)?;
        }
        if let Some(text) = &self.text {
            let chars = text.chars().count();
            if chars == 0 || chars > JOB_TEXT_MAX_CHARS || text.chars().any(char::is_control) {
                return Err(InvalidInput::new(
                    field("text"),
                    format!(
                        "must be 1 to {JOB_TEXT_MAX_CHARS} characters of printable text, \
                         got {chars}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// [`JobCriteria::validate_as`] with the prefix `filter.`, as a bulk operation's filter.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming the field (`filter.queues[i]`, ...).
    pub fn validate(&self) -> Result<(), InvalidInput> {
        self.validate_as("filter.")
    }

    /// The stored states the criteria admit, or `None` for any.
    pub fn stored_states(&self) -> Option<Vec<JobState>> {
        if self.states.is_empty() {
            return None;
        }
        let mut states: Vec<JobState> = self.states.iter().map(|view| view.state()).collect();
        states.sort_by_key(|state| state.as_str());
        states.dedup();
        Some(states)
    }

    /// The schedule flag the `available`/`scheduled` views ask for: `Some(false)` for only
    /// `available` (due), `Some(true)` for only `scheduled`, `None` when both or neither are
    /// asked for (no condition on the flag).
    pub fn scheduled_flag(&self) -> Option<bool> {
        let due = self.states.contains(&StateView::Available);
        let scheduled = self.states.contains(&StateView::Scheduled);
        match (due, scheduled) {
            (true, false) => Some(false),
            (false, true) => Some(true),
            _ => None,
        }
    }

    /// The index a store walks for these criteria (see [`ScanDriver`]).
    pub fn driver(&self) -> ScanDriver {
        if !self.ids.is_empty() {
            let mut ids = self.ids.clone();
            ids.sort();
            ids.dedup();
            return ScanDriver::Ids(ids);
        }
        if let Some(key) = &self.unique_key {
            return ScanDriver::UniqueKey(key.clone());
        }
        if let Some(correlation) = &self.correlation_id {
            return ScanDriver::CorrelationId(correlation.clone());
        }
        if let Some(parent) = self.parent_id {
            return ScanDriver::ParentId(parent);
        }
        if let Some(group) = &self.failure_group {
            return ScanDriver::FailureGroup(group.clone());
        }
        match self.stored_states() {
            Some(states) => ScanDriver::States(states),
            None => ScanDriver::All,
        }
    }

    /// Whether the driver alone decides a match, so a count need not read the rows.
    pub fn driver_only(&self) -> bool {
        let bare = match self.driver() {
            ScanDriver::Ids(_) => JobCriteria {
                ids: self.ids.clone(),
                ..JobCriteria::default()
            },
            ScanDriver::States(_) if self.scheduled_flag().is_none() => JobCriteria {
                states: self.states.clone(),
                ..JobCriteria::default()
            },
            ScanDriver::All => JobCriteria::default(),
            _ => return false,
        };
        bare == *self
    }

    /// Whether `job` matches every criterion but `failure_group` (rows do not carry their
    /// group), as the stores' SQL decides; for callers holding rows, and for tests.
    /// `scheduled` is the job's schedule flag.
    pub fn matches(&self, job: &JobRow, scheduled: bool) -> bool {
        let view = StateView::of(job.state, scheduled);
        let json_contains = |text: &str| {
            let args = job.args.to_string();
            let metadata = serde_json::to_string(&job.metadata).unwrap_or_default();
            args.contains(text) || metadata.contains(text)
        };
        (self.states.is_empty() || self.states.contains(&view))
            && (self.queues.is_empty() || self.queues.contains(&job.queue))
            && (self.kinds.is_empty() || self.kinds.contains(&job.kind))
            && (self.tenant.is_none() || self.tenant == job.tenant)
            && (self.ids.is_empty() || self.ids.contains(&job.id))
            && (self.unique_key.is_none() || self.unique_key == job.unique_key)
            && (self.correlation_id.is_none() || self.correlation_id == job.metadata.correlation_id)
            && (self.parent_id.is_none() || self.parent_id == job.metadata.parent_id)
            && (self.worker_id.is_none() || self.worker_id == job.worker_id)
            && self.created_after.is_none_or(|at| job.created_at >= at)
            && self.created_before.is_none_or(|at| job.created_at < at)
            && self
                .finished_after
                .is_none_or(|at| job.finished_at.is_some_and(|f| f >= at))
            && self
                .finished_before
                .is_none_or(|at| job.finished_at.is_some_and(|f| f < at))
            && self.text.as_deref().is_none_or(json_contains)
    }
}

/// Which way a search page runs from its cursor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchDirection {
    /// Older jobs: ids below the cursor (the next page). Without a cursor, the newest jobs.
    #[default]
    Older,
    /// Newer jobs: ids above the cursor (the previous page). Without a cursor, the oldest.
    Newer,
}

/// Parameters of [`Store::job_search`](crate::Store::job_search).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSearchParams {
    /// Which jobs.
    pub criteria: JobCriteria,
    /// The keyset cursor: a job id the page starts after (not included), in `direction`.
    pub cursor: Option<JobId>,
    /// Which way from the cursor.
    pub direction: SearchDirection,
    /// The most jobs to return, 1 to [`JOB_SEARCH_MAX_LIMIT`].
    pub limit: u32,
    /// The most rows of the driving index to read, 1 to [`JOB_SEARCH_SCAN_MAX`].
    pub scan_max: u32,
}

impl JobSearchParams {
    /// A first page (newest jobs) of `limit` jobs matching `criteria`, with the default scan
    /// budget.
    pub fn new(criteria: JobCriteria, limit: u32) -> Self {
        JobSearchParams {
            criteria,
            cursor: None,
            direction: SearchDirection::Older,
            limit,
            scan_max: JOB_SEARCH_SCAN_MAX,
        }
    }

    /// Checks the criteria (fields named without a prefix), the limit, the scan budget and
    /// the cursor.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming the field.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        self.criteria.validate_as("")?;
        if !(1..=JOB_SEARCH_MAX_LIMIT).contains(&self.limit) {
            return Err(InvalidInput::new(
                "limit",
                format!(
                    "must be from 1 to {JOB_SEARCH_MAX_LIMIT}, got {}",
                    self.limit
                ),
            ));
        }
        if !(1..=JOB_SEARCH_SCAN_MAX).contains(&self.scan_max) {
            return Err(InvalidInput::new(
                "scan_max",
                format!(
                    "must be from 1 to {JOB_SEARCH_SCAN_MAX}, got {}",
                    self.scan_max
                ),
            ));
        }
        if self.cursor.is_some_and(|id| id.0 < 1) {
            return Err(InvalidInput::new("cursor", "must be a job id (1 or more)"));
        }
        Ok(())
    }
}

/// One page of a job search, newest first whichever way it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSearchPage {
    /// The matching jobs, newest first.
    pub jobs: Vec<JobRow>,
    /// The cursor for older jobs (search again with it and [`SearchDirection::Older`]), or
    /// `None` when the walk reached the oldest job.
    pub older: Option<JobId>,
    /// The cursor for newer jobs (with [`SearchDirection::Newer`]), or `None` when the walk
    /// reached the newest job.
    pub newer: Option<JobId>,
    /// Whether the page stopped at its scan budget before it was full: matches may lie
    /// beyond it, and the cursor of its direction goes on from where it stopped.
    pub partial: bool,
    /// Rows of the driving index read.
    pub scanned: u64,
}

/// A bounded count of matching jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCount {
    /// Matching jobs counted.
    pub count: u64,
    /// Whether `count` is the exact number; if not, it is a lower bound ("10,000+").
    pub exact: bool,
}

impl std::fmt::Display for JobCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.exact {
            write!(f, "{}", self.count)
        } else {
            write!(f, "{}+", self.count)
        }
    }
}

/// A page's cursors, from what a store read: `ids` are the matching ids in walk order (at
/// most `limit + 1` of them: one more than the page shows tells that the page is full with
/// more beyond), `scanned` rows of the driver were read out of a budget of `scan_max`, and
/// `last_scanned` is the last id the walk read. Shared by the stores so pages end alike.
///
/// Returns (the ids to show, older cursor, newer cursor, partial).
pub fn search_cursors(
    params: &JobSearchParams,
    mut ids: Vec<JobId>,
    scanned: u64,
    last_scanned: Option<JobId>,
) -> (Vec<JobId>, Option<JobId>, Option<JobId>, bool) {
    let limit = params.limit as usize;
    let full = ids.len() > limit;
    ids.truncate(limit);
    let budget_hit = !full && scanned >= u64::from(params.scan_max);
    // The cursor in the walk's direction: past the last shown job when the page is full,
    // past the last row read when the budget ran out, none at the end of the index.
    let onward = if full {
        ids.last().copied()
    } else if budget_hit {
        last_scanned
    } else {
        None
    };
    // The cursor back: the first shown job, or the page's own cursor when it shows none
    // (from a first page it is where newly arrived jobs will be found).
    let back = ids.first().copied().or(params.cursor);
    let (older, newer) = match params.direction {
        SearchDirection::Older => (onward, back),
        SearchDirection::Newer => (back, onward),
    };
    (ids, older, newer, budget_hit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_means_retryable_and_discarded() {
        assert_eq!(
            StateView::parse_word("failed").unwrap(),
            vec![StateView::Retryable, StateView::Discarded]
        );
        let err = StateView::parse_word("faild").unwrap_err();
        assert!(
            err.reason.contains("unknown job state \"faild\""),
            "{}",
            err.reason
        );
    }

    #[test]
    fn views_split_available() {
        let due = JobCriteria {
            states: vec![StateView::Available],
            ..JobCriteria::default()
        };
        assert_eq!(due.scheduled_flag(), Some(false));
        assert_eq!(due.stored_states(), Some(vec![JobState::Available]));
        assert!(!due.driver_only());
        let both = JobCriteria {
            states: vec![
                StateView::Scheduled,
                StateView::Available,
                StateView::Running,
            ],
            ..JobCriteria::default()
        };
        assert_eq!(both.scheduled_flag(), None);
        assert!(both.driver_only());
        assert_eq!(
            both.driver(),
            ScanDriver::States(vec![JobState::Available, JobState::Running])
        );
    }

    #[test]
    fn the_most_selective_index_drives() {
        let criteria = JobCriteria {
            states: vec![StateView::Completed],
            correlation_id: Some("c".into()),
            ..JobCriteria::default()
        };
        assert_eq!(criteria.driver(), ScanDriver::CorrelationId("c".into()));
        assert!(!criteria.driver_only());
        assert_eq!(JobCriteria::new().driver(), ScanDriver::All);
        assert!(JobCriteria::new().driver_only());
    }

    #[test]
    fn criteria_are_checked_with_their_prefix() {
        let criteria = JobCriteria {
            queues: vec!["ok".into(), "bad queue".into()],
            ..JobCriteria::default()
        };
        assert_eq!(criteria.validate_as("").unwrap_err().field, "queues[1]");
        assert_eq!(criteria.validate().unwrap_err().field, "filter.queues[1]");
        let criteria = JobCriteria {
            text: Some(String::new()),
            ..JobCriteria::default()
        };
        assert_eq!(criteria.validate_as("").unwrap_err().field, "text");
        let criteria = JobCriteria {
            ids: vec![JobId(0)],
            ..JobCriteria::default()
        };
        assert_eq!(criteria.validate_as("").unwrap_err().field, "ids[0]");
    }

    #[test]
    fn old_bulk_filters_still_read() {
        let criteria: JobCriteria =
            serde_json::from_str(r#"{"states":["discarded"],"queues":["q"]}"#).unwrap();
        assert_eq!(criteria.states, vec![StateView::Discarded]);
        assert!(serde_json::from_str::<JobCriteria>(r#"{"stat":[]}"#).is_err());
    }

    #[test]
    fn cursors_follow_the_walk() {
        let mut params = JobSearchParams::new(JobCriteria::new(), 2);
        params.scan_max = 10;
        let ids = |v: &[i64]| v.iter().map(|&i| JobId(i)).collect::<Vec<_>>();
        // A full page: one more match than shown.
        let (shown, older, newer, partial) =
            search_cursors(&params, ids(&[9, 8, 7]), 3, Some(JobId(7)));
        assert_eq!(shown, ids(&[9, 8]));
        assert_eq!(older, Some(JobId(8)));
        assert_eq!(newer, Some(JobId(9)));
        assert!(!partial);
        // The budget ran out first.
        let (shown, older, _, partial) = search_cursors(&params, ids(&[9]), 10, Some(JobId(3)));
        assert_eq!(shown, ids(&[9]));
        assert_eq!(older, Some(JobId(3)));
        assert!(partial);
        // The end of the index.
        let (_, older, _, partial) = search_cursors(&params, ids(&[9]), 4, Some(JobId(1)));
        assert_eq!(older, None);
        assert!(!partial);
    }
}
