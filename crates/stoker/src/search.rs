//! Job search (issue 14): the search-bar query language shared by the dashboard, the CLI and
//! the API, and the client's search, count, lineage and attempt timeline.
//!
//! # The query language
//!
//! A query is words separated by spaces. A word `qualifier:value` narrows the search; any
//! other word is free text. A value or free text with spaces goes in double quotes (`\"` and
//! `\\` escape inside them).
//!
//! | qualifier | criterion | example |
//! |---|---|---|
//! | `state:` | states, comma-separated; `failed` = `retryable` + `discarded`, `scheduled` = available but not yet due, `available` = due | `state:failed,running` |
//! | `queue:` | queues, comma-separated | `queue:mail` |
//! | `kind:` | kinds, comma-separated | `kind:email` |
//! | `tenant:` | the tenant | `tenant:acme` |
//! | `id:` | job ids, comma-separated | `id:42,43` |
//! | `key:` | the idempotency key | `key:order-7` |
//! | `corr:` | the correlation id | `corr:req-9f` |
//! | `worker:` | the worker that ran it last | `worker:w1` |
//! | `parent:` | children of this job | `parent:42` |
//! | `group:` | the failure group (fingerprint) | `group:0123456789abcdef` |
//! | `after:` / `before:` | created at or after / before | `after:1h`, `before:2026-12-01` |
//! | `finished-after:` / `finished-before:` | finished at or after / before | `finished-after:7d` |
//!
//! Times are an RFC 3339 instant (`2026-12-01T08:00:00Z`), a UTC date (`2026-12-01`, its
//! midnight) or an age before now (`30s`, `15m`, `1h`, `7d`, `2w`): `after:1h` is "created in
//! the last hour". Free words and quoted texts together form one text, joined by single
//! spaces, searched as a substring of the jobs' args and metadata (see
//! [`JobCriteria::text`]). A qualifier that takes one value may not be given two.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use stoker::{format_query, parse_query, StateView};
//!
//! let now = Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap();
//! let criteria = parse_query(r#"state:failed queue:mail after:1h "ada@example.com""#, now)?;
//! assert_eq!(criteria.states, StateView::FAILED.to_vec());
//! assert_eq!(criteria.queues, vec!["mail".to_owned()]);
//! assert_eq!(criteria.created_after, Some(now - chrono::Duration::hours(1)));
//! assert_eq!(criteria.text.as_deref(), Some("ada@example.com"));
//! assert_eq!(parse_query(&format_query(&criteria), now)?, criteria);
//!
//! let err = parse_query("stat:failed", now).unwrap_err();
//! assert_eq!(err.reason, r#"unknown qualifier "stat:" (did you mean "state:"?)"#);
//! # Ok::<(), stoker::InvalidInput>(())
//! ```

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use stoker_core::{
    AttemptError, InvalidInput, JobCount, JobCriteria, JobId, JobRow, JobSearchPage,
    JobSearchParams, JobState, SearchDirection, StateView, Store,
};

use crate::{Client, Result};

/// The field a query's errors name.
pub const QUERY_FIELD: &str = "q";
/// The longest query, in characters.
pub const QUERY_MAX_CHARS: usize = 2000;
/// The most children [`Client::lineage`] returns.
pub const LINEAGE_CHILDREN_MAX: u32 = 100;

/// Every qualifier of the query language, with the colon.
pub const QUALIFIERS: [&str; 14] = [
    "state:",
    "queue:",
    "kind:",
    "tenant:",
    "id:",
    "key:",
    "corr:",
    "worker:",
    "parent:",
    "group:",
    "after:",
    "before:",
    "finished-after:",
    "finished-before:",
];

fn query_error(reason: impl Into<String>) -> InvalidInput {
    InvalidInput::new(QUERY_FIELD, reason)
}

/// One word of a query: a qualifier with its value, or free text.
#[derive(Debug, PartialEq)]
enum Word {
    Qualified(String, String),
    Text(String),
}

/// Splits a query into words, honouring double quotes (in a value too: `key:"a b"`).
fn words(query: &str) -> std::result::Result<Vec<Word>, InvalidInput> {
    let mut words = Vec::new();
    let mut chars = query.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(words);
        }
        // A word: text up to whitespace, where a quoted part may hold spaces.
        let mut value = String::new();
        let mut qualifier: Option<String> = None;
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            if c == '"' {
                quoted = true;
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next() {
                            Some(escaped) => value.push(escaped),
                            None => break,
                        },
                        c => value.push(c),
                    }
                }
                if !closed {
                    return Err(query_error("unclosed quote: add the closing \""));
                }
                continue;
            }
            if c == ':' && qualifier.is_none() && !quoted {
                qualifier = Some(format!("{}:", std::mem::take(&mut value)));
                continue;
            }
            value.push(c);
        }
        match qualifier {
            Some(qualifier) => words.push(Word::Qualified(qualifier, value)),
            None => words.push(Word::Text(value)),
        }
    }
}

/// How far apart two short words are (edits), for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + cost);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// Parses a time value: an RFC 3339 instant, a UTC date, or an age before `now`.
fn parse_time(
    qualifier: &str,
    value: &str,
    now: DateTime<Utc>,
) -> std::result::Result<DateTime<Utc>, InvalidInput> {
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Ok(at.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        if let Some(midnight) = date.and_hms_opt(0, 0, 0) {
            return Ok(midnight.and_utc());
        }
    }
    let bad = || {
        query_error(format!(
            "bad time {value:?} in \"{qualifier}\": use an instant (2026-12-01T08:00:00Z), a \
             date (2026-12-01) or an age (30s, 15m, 1h, 7d, 2w)"
        ))
    };
    let unit_at = value.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = value.split_at(unit_at);
    let number: i64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    number
        .checked_mul(seconds)
        .and_then(chrono::Duration::try_seconds)
        .and_then(|age| now.checked_sub_signed(age))
        .ok_or_else(bad)
}

/// Splits a comma-separated value into its non-empty parts.
fn list(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
}

fn parse_id(qualifier: &str, value: &str) -> std::result::Result<JobId, InvalidInput> {
    match value.parse::<i64>() {
        Ok(id) if id >= 1 => Ok(JobId(id)),
        _ => Err(query_error(format!(
            "bad job id {value:?} in \"{qualifier}\": expected a whole number, 1 or more"
        ))),
    }
}

/// Sets a single-valued criterion, refusing a second, different value.
fn set_once<T: PartialEq>(
    slot: &mut Option<T>,
    value: T,
    qualifier: &str,
) -> std::result::Result<(), InvalidInput> {
    match slot {
        Some(existing) if *existing != value => Err(query_error(format!(
            "\"{qualifier}\" is given twice: it takes one value"
        ))),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

/// Parses a search-bar query (see the [module docs](self)) into criteria, with ages counted
/// back from `now`. The criteria are checked too, so a bad queue name or an over-long text is
/// refused here.
///
/// # Errors
///
/// [`InvalidInput`] for field `q` naming the word at fault, e.g. `unknown qualifier
/// "stat:"`, `bad state "faild"`, `bad time "yesterday" in "after:"`.
pub fn parse_query(
    query: &str,
    now: DateTime<Utc>,
) -> std::result::Result<JobCriteria, InvalidInput> {
    let chars = query.chars().count();
    if chars > QUERY_MAX_CHARS {
        return Err(query_error(format!(
            "is {chars} characters, over the limit of {QUERY_MAX_CHARS}"
        )));
    }
    let mut criteria = JobCriteria::default();
    let mut text: Vec<String> = Vec::new();
    for word in words(query)? {
        let (qualifier, value) = match word {
            Word::Text(value) => {
                if !value.is_empty() {
                    text.push(value);
                }
                continue;
            }
            Word::Qualified(qualifier, value) => (qualifier, value),
        };
        if !QUALIFIERS.contains(&qualifier.as_str()) {
            let hint = QUALIFIERS
                .iter()
                .min_by_key(|known| distance(known, &qualifier))
                .filter(|known| distance(known, &qualifier) <= 2)
                .map(|known| format!(" (did you mean \"{known}\"?)"))
                .unwrap_or_default();
            return Err(query_error(format!(
                "unknown qualifier \"{qualifier}\"{hint}"
            )));
        }
        if value.is_empty() {
            return Err(query_error(format!("\"{qualifier}\" needs a value")));
        }
        match qualifier.as_str() {
            "state:" => {
                for word in list(&value) {
                    let views = StateView::parse_word(word).map_err(|_| {
                        query_error(format!(
                            "bad state {word:?}: expected one of available, scheduled, \
                             running, retryable, completed, discarded, cancelled, failed"
                        ))
                    })?;
                    for view in views {
                        if !criteria.states.contains(&view) {
                            criteria.states.push(view);
                        }
                    }
                }
            }
            "queue:" => criteria.queues.extend(list(&value).map(str::to_owned)),
            "kind:" => criteria.kinds.extend(list(&value).map(str::to_owned)),
            "id:" => {
                for id in list(&value) {
                    criteria.ids.push(parse_id(&qualifier, id)?);
                }
            }
            "tenant:" => set_once(&mut criteria.tenant, value, &qualifier)?,
            "key:" => set_once(&mut criteria.unique_key, value, &qualifier)?,
            "corr:" => set_once(&mut criteria.correlation_id, value, &qualifier)?,
            "worker:" => set_once(&mut criteria.worker_id, value, &qualifier)?,
            "group:" => set_once(&mut criteria.failure_group, value, &qualifier)?,
            "parent:" => {
                let id = parse_id(&qualifier, &value)?;
                set_once(&mut criteria.parent_id, id, &qualifier)?;
            }
            "after:" => {
                let at = parse_time(&qualifier, &value, now)?;
                set_once(&mut criteria.created_after, at, &qualifier)?;
            }
            "before:" => {
                let at = parse_time(&qualifier, &value, now)?;
                set_once(&mut criteria.created_before, at, &qualifier)?;
            }
            "finished-after:" => {
                let at = parse_time(&qualifier, &value, now)?;
                set_once(&mut criteria.finished_after, at, &qualifier)?;
            }
            "finished-before:" => {
                let at = parse_time(&qualifier, &value, now)?;
                set_once(&mut criteria.finished_before, at, &qualifier)?;
            }
            _ => unreachable!("every qualifier is handled"),
        }
    }
    if !text.is_empty() {
        criteria.text = Some(text.join(" "));
    }
    // The criteria's own checks, worded for the query.
    criteria.validate_as("").map_err(|err| {
        let qualifier = match err.field.split(['[', '.']).next().unwrap_or_default() {
            "states" => "state:",
            "queues" => "queue:",
            "kinds" => "kind:",
            "ids" => "id:",
            "tenant" => "tenant:",
            "unique_key" => "key:",
            "correlation_id" => "corr:",
            "worker_id" => "worker:",
            "parent_id" => "parent:",
            "failure_group" => "group:",
            _ => "text",
        };
        let name = if qualifier == "text" {
            "the free text".to_owned()
        } else {
            format!("\"{qualifier}\"")
        };
        query_error(format!("bad value in {name}: {}", err.reason))
    })?;
    Ok(criteria)
}

/// Writes a value so [`parse_query`] reads it back: bare if it can be, else quoted.
fn quote(value: &str) -> String {
    let bare = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\\' || c == ':' || c == ',');
    if bare {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Writes criteria as a query that [`parse_query`] reads back to the same criteria (times as
/// RFC 3339 instants), e.g. to put a search in a URL or show what a bulk operation matches.
pub fn format_query(criteria: &JobCriteria) -> String {
    let mut words: Vec<String> = Vec::new();
    let join = |values: &mut dyn Iterator<Item = String>| {
        values.map(|v| quote(&v)).collect::<Vec<_>>().join(",")
    };
    if !criteria.states.is_empty() {
        let states = join(&mut criteria.states.iter().map(|s| s.as_str().to_owned()));
        words.push(format!("state:{states}"));
    }
    for queue in &criteria.queues {
        words.push(format!("queue:{}", quote(queue)));
    }
    for kind in &criteria.kinds {
        words.push(format!("kind:{}", quote(kind)));
    }
    if !criteria.ids.is_empty() {
        let ids = join(&mut criteria.ids.iter().map(|id| id.0.to_string()));
        words.push(format!("id:{ids}"));
    }
    let single = [
        ("tenant:", criteria.tenant.clone()),
        ("key:", criteria.unique_key.clone()),
        ("corr:", criteria.correlation_id.clone()),
        ("worker:", criteria.worker_id.clone()),
        ("parent:", criteria.parent_id.map(|id| id.0.to_string())),
        ("group:", criteria.failure_group.clone()),
    ];
    for (qualifier, value) in single {
        if let Some(value) = value {
            words.push(format!("{qualifier}{}", quote(&value)));
        }
    }
    let times = [
        ("after:", criteria.created_after),
        ("before:", criteria.created_before),
        ("finished-after:", criteria.finished_after),
        ("finished-before:", criteria.finished_before),
    ];
    for (qualifier, at) in times {
        if let Some(at) = at {
            words.push(format!(
                "{qualifier}{}",
                quote(&at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            ));
        }
    }
    if let Some(text) = &criteria.text {
        // Quoted, so a word of it that looks like a qualifier stays text.
        let mut quoted = quote(text);
        if !quoted.starts_with('"') {
            quoted = format!("\"{quoted}\"");
        }
        words.push(quoted);
    }
    words.join(" ")
}

/// Combines criteria from two sources (a query and separate parameters, say): lists are
/// joined, and a single-valued criterion given by both must agree.
///
/// # Errors
///
/// [`InvalidInput`] naming the criterion's field (`tenant`, `created_after`...) when both give
/// it different values.
pub fn merge_criteria(
    mut base: JobCriteria,
    extra: JobCriteria,
) -> std::result::Result<JobCriteria, InvalidInput> {
    fn join<T: PartialEq>(into: &mut Vec<T>, from: Vec<T>) {
        for value in from {
            if !into.contains(&value) {
                into.push(value);
            }
        }
    }
    fn one<T: PartialEq + std::fmt::Debug>(
        into: &mut Option<T>,
        from: Option<T>,
        field: &str,
    ) -> std::result::Result<(), InvalidInput> {
        match (into.as_ref(), from) {
            (Some(a), Some(b)) if *a != b => Err(InvalidInput::new(
                field,
                format!("is given twice with different values: {a:?} and {b:?}"),
            )),
            (None, Some(b)) => {
                *into = Some(b);
                Ok(())
            }
            _ => Ok(()),
        }
    }
    join(&mut base.states, extra.states);
    join(&mut base.queues, extra.queues);
    join(&mut base.kinds, extra.kinds);
    join(&mut base.ids, extra.ids);
    one(&mut base.tenant, extra.tenant, "tenant")?;
    one(
        &mut base.failure_group,
        extra.failure_group,
        "failure_group",
    )?;
    one(
        &mut base.created_after,
        extra.created_after,
        "created_after",
    )?;
    one(
        &mut base.created_before,
        extra.created_before,
        "created_before",
    )?;
    one(&mut base.unique_key, extra.unique_key, "unique_key")?;
    one(
        &mut base.correlation_id,
        extra.correlation_id,
        "correlation_id",
    )?;
    one(&mut base.parent_id, extra.parent_id, "parent_id")?;
    one(&mut base.worker_id, extra.worker_id, "worker_id")?;
    one(
        &mut base.finished_after,
        extra.finished_after,
        "finished_after",
    )?;
    one(
        &mut base.finished_before,
        extra.finished_before,
        "finished_before",
    )?;
    one(&mut base.text, extra.text, "text")?;
    Ok(base)
}

/// A job with its parent and children, for a job's detail page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobLineage {
    /// The job that enqueued this one (its metadata's `parent_id`), if it still exists and the
    /// client may see it.
    pub parent: Option<JobRow>,
    /// Jobs it enqueued, newest first, at most [`LINEAGE_CHILDREN_MAX`].
    pub children: Vec<JobRow>,
    /// Whether it has more children than those listed (search `parent:ID` for all).
    pub more_children: bool,
}

/// How one attempt of a job ended, or that it is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// It failed (its error is in the entry).
    Failed,
    /// It is running now.
    Running,
    /// It completed the job.
    Completed,
    /// It was cancelled.
    Cancelled,
}

/// One attempt in a job's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptEntry {
    /// The attempt, from 1.
    pub attempt: i32,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// When it started, where known (the job keeps the start of its latest attempt only).
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended (none while running).
    pub ended_at: Option<DateTime<Utc>>,
    /// The error of a failed attempt, with its backtrace when one was captured.
    pub error: Option<AttemptError>,
}

/// The attempts of a job, first to latest, from its error history and its current state: one
/// entry per recorded failure, plus the latest attempt when it is running, completed, or
/// cancelled without an error. A job never attempted has none.
pub fn attempt_timeline(job: &JobRow) -> Vec<AttemptEntry> {
    let mut entries: Vec<AttemptEntry> = job
        .errors
        .iter()
        .map(|error| AttemptEntry {
            attempt: error.attempt,
            outcome: if error.kind == stoker_core::ErrorKind::Cancelled {
                AttemptOutcome::Cancelled
            } else {
                AttemptOutcome::Failed
            },
            started_at: None,
            ended_at: Some(error.at),
            error: Some(error.clone()),
        })
        .collect();
    let latest_failed = entries.last().map(|entry| entry.attempt);
    let latest = match job.state {
        JobState::Running => Some((AttemptOutcome::Running, None)),
        JobState::Completed => Some((AttemptOutcome::Completed, job.finished_at)),
        JobState::Cancelled if job.attempt > 0 => {
            Some((AttemptOutcome::Cancelled, job.finished_at))
        }
        _ => None,
    };
    if let Some((outcome, ended_at)) = latest {
        if job.attempt > 0 && latest_failed != Some(job.attempt) {
            entries.push(AttemptEntry {
                attempt: job.attempt,
                outcome,
                started_at: job.attempted_at,
                ended_at,
                error: None,
            });
        }
    }
    if let Some(last) = entries.last_mut() {
        if last.attempt == job.attempt && last.started_at.is_none() {
            last.started_at = job.attempted_at;
        }
    }
    entries
}

impl<S: Store + ?Sized> Client<S> {
    /// Parses a search-bar query with this client's clock (see [`parse_query`]).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) for field `q` naming the word at fault.
    pub fn parse_query(&self, query: &str) -> Result<JobCriteria> {
        Ok(parse_query(query, self.clock().now())?)
    }

    /// One page of jobs matching `params.criteria`, newest first, reading a bounded part of
    /// one index (see [`JobCriteria::driver`]): a page may come back short or empty with
    /// `partial` set and a cursor to go on. A tenant-scoped client searches its own tenant.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) naming the field (`limit`, `queues[0]`,
    /// `cursor`...); [`Error::TenantForbidden`](crate::Error::TenantForbidden) for another
    /// tenant; a store error.
    pub async fn search(&self, mut params: JobSearchParams) -> Result<JobSearchPage> {
        params.criteria.tenant = self.tenant_for(params.criteria.tenant.take(), "tenant")?;
        params.validate()?;
        let text = params.criteria.text.clone();
        let mut page = self.store().job_search(params).await?;
        // --- stream crypt ---
        // Jobs are shown opened and redacted as `get` shows them. A redacting client's text
        // search would otherwise be an oracle for the hidden values (search "4242" and see
        // which job comes back): a job of a redacted kind stays only if the text is in what
        // the client shows of it.
        page.jobs = page
            .jobs
            .into_iter()
            .map(|job| self.reveal(job))
            .filter(|job| match (&text, self.redaction()) {
                (Some(text), Some(redaction)) if redaction.get(&job.kind).is_some() => {
                    job.args.to_string().contains(text.as_str())
                        || serde_json::to_string(&job.metadata)
                            .is_ok_and(|metadata| metadata.contains(text.as_str()))
                }
                _ => true,
            })
            .collect();
        Ok(page)
    }

    /// How many jobs match. Criteria of states, queues and kinds only (over every tenant, and
    /// not splitting `available` from `scheduled`) are counted exactly from the store's counts
    /// by queue, kind and state, which read no jobs. Others are counted by the store: exact up
    /// to [`stoker_core::JOB_COUNT_CAP`] (else a lower bound, shown as "10,000+"), reading at
    /// most [`stoker_core::JOB_COUNT_SCAN_MAX`] rows of one index.
    ///
    /// # Errors
    ///
    /// As [`Client::search`].
    pub async fn count(&self, mut criteria: JobCriteria) -> Result<JobCount> {
        criteria.tenant = self.tenant_for(criteria.tenant.take(), "tenant")?;
        criteria.validate_as("")?;
        let counted = JobCriteria {
            states: criteria.states.clone(),
            queues: criteria.queues.clone(),
            kinds: criteria.kinds.clone(),
            ..JobCriteria::default()
        };
        if counted == criteria && criteria.scheduled_flag().is_none() {
            let states = criteria.stored_states();
            let total: i64 = self
                .store()
                .job_stats()
                .await?
                .iter()
                .filter(|count| {
                    states.as_ref().is_none_or(|s| s.contains(&count.state))
                        && (criteria.queues.is_empty() || criteria.queues.contains(&count.queue))
                        && (criteria.kinds.is_empty() || criteria.kinds.contains(&count.kind))
                })
                .map(|count| count.count)
                .sum();
            return Ok(JobCount {
                count: u64::try_from(total).unwrap_or(0),
                exact: true,
            });
        }
        Ok(self.store().job_count(criteria).await?)
    }

    /// A job's parent and children (jobs its handler enqueued with
    /// [`JobContext::enqueue`](crate::JobContext::enqueue), or with a `parent_id` in their
    /// metadata), or `None` if there is no such job (or it is another tenant's).
    ///
    /// # Errors
    ///
    /// A store error.
    pub async fn lineage(&self, id: JobId) -> Result<Option<JobLineage>> {
        let Some(job) = self.get(id).await? else {
            return Ok(None);
        };
        let parent = match job.metadata.parent_id {
            Some(parent) => self.get(parent).await?,
            None => None,
        };
        let criteria = JobCriteria {
            parent_id: Some(id),
            ..JobCriteria::default()
        };
        let mut params = JobSearchParams::new(criteria, LINEAGE_CHILDREN_MAX);
        params.direction = SearchDirection::Older;
        let page = self.search(params).await?;
        Ok(Some(JobLineage {
            parent,
            children: page.jobs,
            more_children: page.older.is_some(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap()
    }

    fn parse(query: &str) -> JobCriteria {
        parse_query(query, now()).unwrap()
    }

    fn error(query: &str) -> String {
        let err = parse_query(query, now()).unwrap_err();
        assert_eq!(err.field, "q");
        err.reason
    }

    #[test]
    fn parses_every_qualifier() {
        let criteria = parse(
            "state:failed queue:mail kind:email tenant:acme id:42 key:abc corr:xyz worker:w1 \
             before:2026-12-01 after:1h free text \"quoted text\"",
        );
        assert_eq!(criteria.states, StateView::FAILED.to_vec());
        assert_eq!(criteria.queues, vec!["mail"]);
        assert_eq!(criteria.kinds, vec!["email"]);
        assert_eq!(criteria.tenant.as_deref(), Some("acme"));
        assert_eq!(criteria.ids, vec![JobId(42)]);
        assert_eq!(criteria.unique_key.as_deref(), Some("abc"));
        assert_eq!(criteria.correlation_id.as_deref(), Some("xyz"));
        assert_eq!(criteria.worker_id.as_deref(), Some("w1"));
        assert_eq!(
            criteria.created_before,
            Some(Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap())
        );
        assert_eq!(
            criteria.created_after,
            Some(now() - chrono::Duration::hours(1))
        );
        assert_eq!(criteria.text.as_deref(), Some("free text quoted text"));
    }

    #[test]
    fn more_qualifiers_and_lists() {
        let criteria = parse(
            "state:scheduled,running state:running id:1,2 parent:7 group:0123456789abcdef \
             finished-after:2026-12-01T08:00:00Z finished-before:2w key:\"a b\"",
        );
        assert_eq!(
            criteria.states,
            vec![StateView::Scheduled, StateView::Running]
        );
        assert_eq!(criteria.ids, vec![JobId(1), JobId(2)]);
        assert_eq!(criteria.parent_id, Some(JobId(7)));
        assert_eq!(criteria.failure_group.as_deref(), Some("0123456789abcdef"));
        assert_eq!(
            criteria.finished_after,
            Some(Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap())
        );
        assert_eq!(
            criteria.finished_before,
            Some(now() - chrono::Duration::weeks(2))
        );
        assert_eq!(criteria.unique_key.as_deref(), Some("a b"));
        assert_eq!(parse("   "), JobCriteria::default());
    }

    #[test]
    fn bad_words_are_named() {
        assert_eq!(
            error("stat:failed"),
            "unknown qualifier \"stat:\" (did you mean \"state:\"?)"
        );
        assert_eq!(error("colour:red"), "unknown qualifier \"colour:\"");
        assert!(error("state:faild").starts_with("bad state \"faild\""));
        assert!(error("after:yesterday").starts_with("bad time \"yesterday\" in \"after:\""));
        assert!(error("after:5y").starts_with("bad time \"5y\""));
        assert!(error("id:abc").starts_with("bad job id \"abc\" in \"id:\""));
        assert!(error("id:0").starts_with("bad job id \"0\""));
        assert_eq!(error("queue:"), "\"queue:\" needs a value");
        assert_eq!(
            error("tenant:a tenant:b"),
            "\"tenant:\" is given twice: it takes one value"
        );
        assert_eq!(error("\"open"), "unclosed quote: add the closing \"");
        assert!(error("queue:\"bad queue\"").starts_with("bad value in \"queue:\""));
        assert!(error("group:xyz").starts_with("bad value in \"group:\""));
        assert!(error(&"x".repeat(300)).starts_with("bad value in the free text"));
        assert!(error(&"x".repeat(QUERY_MAX_CHARS + 1)).contains("over the limit"));
    }

    #[test]
    fn quoted_colons_are_text() {
        let criteria = parse("\"state:failed\" note\\");
        assert_eq!(criteria.text.as_deref(), Some("state:failed note\\"));
        assert!(criteria.states.is_empty());
    }

    #[test]
    fn formats_back_to_the_same_criteria() {
        for query in [
            "state:failed queue:mail kind:email tenant:acme id:42 key:abc corr:xyz worker:w1 \
             before:2026-12-01 after:1h free text \"quoted text\"",
            "key:\"a b\" corr:\"x\\\"y\" \"queue:not\" parent:3 finished-after:1d",
            "",
        ] {
            let criteria = parse(query);
            let formatted = format_query(&criteria);
            assert_eq!(parse(&formatted), criteria, "{formatted}");
        }
    }

    #[test]
    fn merges_lists_and_agreeing_values() {
        let merged = merge_criteria(
            parse("state:failed queue:a tenant:acme"),
            parse("state:running queue:a queue:b tenant:acme"),
        )
        .unwrap();
        assert_eq!(merged.queues, vec!["a", "b"]);
        assert_eq!(merged.states.len(), 3);
        let err = merge_criteria(parse("tenant:a"), parse("tenant:b")).unwrap_err();
        assert_eq!(err.field, "tenant");
    }

    #[test]
    fn timeline_lists_each_attempt() {
        let at = now();
        let mut job: JobRow = serde_json::from_value(serde_json::json!({
            "id": 1, "kind": "k", "queue": "q", "args": {}, "state": "completed",
            "priority": 0, "attempt": 2, "fence": 2, "max_attempts": 5, "run_at": at,
            "unique_key": null, "tenant": null, "metadata": {}, "errors": [
                {"attempt": 1, "at": at, "kind": "panic", "message": "boom",
                 "backtrace": "at main.rs:1"}
            ],
            "result": null, "progress": null, "timeout_ms": null, "backoff": null,
            "created_at": at, "attempted_at": at, "finished_at": at, "worker_id": "w",
            "cancel_requested_at": null, "lease_expires_at": null
        }))
        .unwrap();
        let timeline = attempt_timeline(&job);
        assert_eq!(timeline.len(), 2);
        assert_eq!(timeline[0].outcome, AttemptOutcome::Failed);
        assert_eq!(
            timeline[0].error.as_ref().unwrap().backtrace.as_deref(),
            Some("at main.rs:1")
        );
        assert_eq!(timeline[1].outcome, AttemptOutcome::Completed);
        assert_eq!(timeline[1].started_at, Some(at));
        job.state = JobState::Available;
        job.attempt = 0;
        job.errors.clear();
        assert!(attempt_timeline(&job).is_empty());
    }
}
