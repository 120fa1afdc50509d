//! Recurring schedules (issue 15): what a schedule is, which slots are due, and the one
//! routine every process runs to fire them.
//!
//! Schedules live in the store by name. Firing needs no leader: [`fire_due`] reads the due
//! schedules, works out in Rust which slots to fire under the schedule's catch-up policy, and
//! hands them to [`Store::cron_fire`], which inserts the slot's job (keyed by schedule and slot)
//! and moves the schedule's `next_slot` in one transaction, only if `next_slot` and the
//! schedule's revision are still what this process read (a compare-and-set). Any number of
//! processes may run it at once: exactly one of them wins each slot.

mod expr;

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use expr::{parse_tz, CronExpr, CRON_EXPR_MAX_LEN, CRON_TZ_MAX_LEN};

use crate::{
    validate_kind, validate_queue, InsertedJob, InvalidInput, JobId, JobInsert, JobState, Metadata,
    Priority, Store, StoreResult, MAX_ATTEMPTS_DEFAULT, QUEUE_DEFAULT, TENANT_MAX_LEN,
};

/// The longest schedule name.
pub const CRON_NAME_MAX_LEN: usize = 128;
/// The longest catch-up window: seven days.
pub const CRON_WINDOW_MAX_SECONDS: u32 = 7 * 86_400;
/// The default catch-up window: one hour.
pub const CRON_WINDOW_DEFAULT_SECONDS: u32 = 3_600;
/// The most slots the `all` policy fires after an outage.
pub const CRON_CATCH_UP_MAX_LIMIT: u32 = 1_000;
/// The default for [`CronSchedule::catch_up_max`].
pub const CRON_CATCH_UP_MAX_DEFAULT: u32 = 10;
/// A slot fired at most this late is on time; later ones are catch-ups (and `skip` drops
/// them). Firers tick every few seconds, so a minute covers a slow tick or a busy database.
pub const CRON_ON_TIME_SECONDS: i64 = 60;
/// How many runs of each schedule the store keeps for [`Store::cron_history`].
pub const CRON_HISTORY_KEEP: u32 = 100;
/// The prefix of every cron job's idempotency key: `cron:<name>:<slot>` for a slot,
/// `cron:<name>:run-now:<instant>` for a manual run, so the two never collide.
pub const CRON_KEY_PREFIX: &str = "cron:";

/// What happens to slots missed while no process was firing (an outage, a deploy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Missed slots are dropped; only a slot at most [`CRON_ON_TIME_SECONDS`] late fires.
    Skip,
    /// The newest missed slot fires once, if it is within the catch-up window.
    #[default]
    Latest,
    /// Every missed slot within the window fires, the newest `catch_up_max` of them.
    All,
}

impl CatchUp {
    /// The lowercase name used in the database, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Skip => "skip",
            CatchUp::Latest => "latest",
            CatchUp::All => "all",
        }
    }

    /// Parses a lowercase name.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming `catch_up`.
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        match s {
            "skip" => Ok(CatchUp::Skip),
            "latest" => Ok(CatchUp::Latest),
            "all" => Ok(CatchUp::All),
            _ => Err(InvalidInput::new(
                "catch_up",
                format!("{s:?} is not one of skip, latest, all"),
            )),
        }
    }
}

/// What happens to a slot while the previous run of the schedule is unfinished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// The slot fires anyway.
    #[default]
    Allow,
    /// The slot is skipped (recorded in the history as skipped).
    Skip,
}

impl Overlap {
    /// The lowercase name used in the database, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Allow => "allow",
            Overlap::Skip => "skip",
        }
    }

    /// Parses a lowercase name.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming `overlap`.
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        match s {
            "allow" => Ok(Overlap::Allow),
            "skip" => Ok(Overlap::Skip),
            _ => Err(InvalidInput::new(
                "overlap",
                format!("{s:?} is not one of allow, skip"),
            )),
        }
    }
}

/// A recurring schedule: which job to enqueue, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CronSchedule {
    /// Its identity: renaming makes a new schedule.
    pub name: String,
    /// 5 fields (minute hour day month weekday), 6 with seconds first, or a nickname.
    pub expr: String,
    /// The IANA time zone the expression is read in.
    pub tz: String,
    /// The job's kind.
    pub kind: String,
    /// The job's queue.
    pub queue: String,
    /// The job's args.
    pub args: Value,
    /// The job's priority.
    pub priority: Priority,
    /// The job's max attempts.
    pub max_attempts: i32,
    /// The job's tenant.
    pub tenant: Option<String>,
    /// The job's metadata (the `cron` entry is set per slot).
    pub metadata: Metadata,
    /// Missed slots: `skip`, `latest` or `all`.
    pub catch_up: CatchUp,
    /// How far back `latest` and `all` reach, in seconds.
    pub catch_up_window_seconds: u32,
    /// The most slots `all` fires at once.
    pub catch_up_max: u32,
    /// Whether a slot fires while the previous run is unfinished.
    pub overlap: Overlap,
    /// False while paused.
    pub enabled: bool,
}

impl CronSchedule {
    /// A schedule named `name` enqueueing `kind` with `args` at every slot of `expr` (UTC),
    /// every other field at its default.
    pub fn new(
        name: impl Into<String>,
        expr: impl Into<String>,
        kind: impl Into<String>,
        args: Value,
    ) -> Self {
        CronSchedule {
            name: name.into(),
            expr: expr.into(),
            tz: "UTC".to_owned(),
            kind: kind.into(),
            queue: QUEUE_DEFAULT.to_owned(),
            args,
            priority: Priority::NORMAL,
            max_attempts: MAX_ATTEMPTS_DEFAULT,
            tenant: None,
            metadata: Metadata::default(),
            catch_up: CatchUp::Latest,
            catch_up_window_seconds: CRON_WINDOW_DEFAULT_SECONDS,
            catch_up_max: CRON_CATCH_UP_MAX_DEFAULT,
            overlap: Overlap::Allow,
            enabled: true,
        }
    }

    /// Checks every field and returns the parsed expression.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming the field at fault: `name`, `expr`, `tz`, `kind`, `queue`,
    /// `args`, `max_attempts`, `tenant`, `catch_up_window_seconds` or `catch_up_max`.
    pub fn validate(&self, max_args_bytes: usize) -> Result<CronExpr, InvalidInput> {
        validate_name(&self.name)?;
        let expr = CronExpr::parse(&self.expr, &self.tz)?;
        validate_kind(&self.kind)?;
        validate_queue(&self.queue)?;
        if let Some(tenant) = &self.tenant {
            if tenant.is_empty() || tenant.len() > TENANT_MAX_LEN {
                return Err(InvalidInput::new(
                    "tenant",
                    format!("must be 1 to {TENANT_MAX_LEN} bytes"),
                ));
            }
        }
        if !(1..=CRON_WINDOW_MAX_SECONDS).contains(&self.catch_up_window_seconds) {
            return Err(InvalidInput::new(
                "catch_up_window_seconds",
                format!(
                    "must be from 1 to {CRON_WINDOW_MAX_SECONDS} (seven days), got {}",
                    self.catch_up_window_seconds
                ),
            ));
        }
        if !(1..=CRON_CATCH_UP_MAX_LIMIT).contains(&self.catch_up_max) {
            return Err(InvalidInput::new(
                "catch_up_max",
                format!(
                    "must be from 1 to {CRON_CATCH_UP_MAX_LIMIT}, got {}",
                    self.catch_up_max
                ),
            ));
        }
        // The job checks the rest (args size, max attempts, tenant characters) as an insert
        // would, so a schedule never holds a job its slot could not insert.
        self.job(Utc::now(), false, false)
            .validate(max_args_bytes)
            .map_err(|err| {
                if err.field == "unique_key" {
                    InvalidInput::new("name", err.reason)
                } else {
                    err
                }
            })?;
        Ok(expr)
    }

    /// The job for `slot`: keyed by schedule and slot (or as a manual run, by the instant),
    /// with the slot and whether it is a catch-up in its metadata.
    pub fn job(&self, slot: DateTime<Utc>, catch_up: bool, run_now: bool) -> JobInsert {
        let mut metadata = self.metadata.clone();
        metadata.cron = Some(CronJobMeta {
            name: self.name.clone(),
            slot,
            catch_up,
            run_now,
        });
        if metadata.source.is_none() {
            metadata.source = Some("cron".to_owned());
        }
        JobInsert {
            kind: self.kind.clone(),
            queue: self.queue.clone(),
            args: self.args.clone(),
            priority: self.priority,
            max_attempts: self.max_attempts,
            run_at: None,
            unique_key: Some(slot_key(&self.name, slot, run_now)),
            tenant: self.tenant.clone(),
            metadata,
            timeout_ms: None,
            backoff: None,
        }
    }
}

/// The idempotency key of a schedule's job for `slot`.
pub fn slot_key(name: &str, slot: DateTime<Utc>, run_now: bool) -> String {
    let at = slot.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    if run_now {
        format!("{CRON_KEY_PREFIX}{name}:run-now:{at}")
    } else {
        format!("{CRON_KEY_PREFIX}{name}:{at}")
    }
}

/// Checks a schedule name: 1 to 128 characters of ASCII letters, digits, `_`, `-`, `.`.
///
/// # Errors
///
/// [`InvalidInput`] naming `name`.
pub fn validate_name(name: &str) -> Result<(), InvalidInput> {
    if name.is_empty() || name.len() > CRON_NAME_MAX_LEN {
        return Err(InvalidInput::new(
            "name",
            format!("must be 1 to {CRON_NAME_MAX_LEN} characters"),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(InvalidInput::new(
            "name",
            format!("{name:?} contains {c:?}; schedule names use letters, digits, '_', '-', '.'"),
        ));
    }
    Ok(())
}

/// What a cron job carries in its [`Metadata::cron`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronJobMeta {
    /// The schedule.
    pub name: String,
    /// The slot it was fired for (the instant of a manual run).
    pub slot: DateTime<Utc>,
    /// Fired late, after an outage, by the catch-up policy.
    pub catch_up: bool,
    /// Fired by hand (`run-now`), not by the schedule.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub run_now: bool,
}

/// A schedule as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CronRow {
    /// The definition.
    #[serde(flatten)]
    pub schedule: CronSchedule,
    /// The first slot not yet fired (or dropped).
    pub next_slot: DateTime<Utc>,
    /// The newest slot fired.
    pub last_slot: Option<DateTime<Utc>>,
    /// Grows with every change of the definition, so a fire planned on an older one loses.
    pub revision: i64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its definition last changed.
    pub updated_at: DateTime<Utc>,
}

/// How [`Store::cron_write`] writes a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CronWriteMode {
    /// A new schedule: `Conflict` if the name is taken.
    Create,
    /// An existing schedule: `NotFound` if there is none.
    Update,
    /// Either (the config file's schedules at start).
    Upsert,
}

/// Parameters of [`Store::cron_write`].
#[derive(Debug, Clone)]
pub struct CronWriteParams {
    /// The definition, validated by the caller.
    pub schedule: CronSchedule,
    /// The first slot after `now`: it becomes `next_slot` for a new schedule, when the
    /// expression or time zone changed, and when a paused schedule is resumed (nothing missed
    /// under an old expression or while paused is backfilled). Otherwise `next_slot` stays.
    pub next_slot: DateTime<Utc>,
    /// Create, update or either.
    pub mode: CronWriteMode,
    /// When.
    pub now: DateTime<Utc>,
}

/// What [`Store::cron_due`] returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CronDue {
    /// Enabled schedules whose `next_slot` is at or before `now`, earliest first.
    pub due: Vec<CronRow>,
    /// The earliest `next_slot` of the enabled schedules that are not due, so a firer can
    /// sleep until then.
    pub next_slot: Option<DateTime<Utc>>,
}

/// The compare-and-set of a scheduled fire.
#[derive(Debug, Clone, PartialEq)]
pub struct CronAdvance {
    /// The revision the fire was planned on.
    pub revision: i64,
    /// The `next_slot` the fire was planned from.
    pub from: DateTime<Utc>,
    /// The new `next_slot`.
    pub to: DateTime<Utc>,
}

/// One slot to fire.
#[derive(Debug, Clone, PartialEq)]
pub struct CronSlotJob {
    /// The slot.
    pub slot: DateTime<Utc>,
    /// Whether it fires late.
    pub catch_up: bool,
    /// Fired by hand.
    pub run_now: bool,
    /// Its job (see [`CronSchedule::job`]).
    pub job: JobInsert,
}

/// Parameters of [`Store::cron_fire`].
#[derive(Debug, Clone)]
pub struct CronFireParams {
    /// The schedule.
    pub name: String,
    /// For a scheduled fire, the compare-and-set; `None` for a manual run.
    pub advance: Option<CronAdvance>,
    /// The slots, oldest first; may be empty (the slots were dropped by the policy).
    pub slots: Vec<CronSlotJob>,
    /// With [`Overlap::Skip`], no job is inserted while the schedule's latest run is
    /// unfinished.
    pub overlap: Overlap,
    /// When.
    pub now: DateTime<Utc>,
    /// Args larger than this are refused.
    pub max_args_bytes: usize,
}

/// What [`Store::cron_fire`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CronFireOutcome {
    /// Another process fired these slots first, or the schedule changed: nothing written.
    Lost,
    /// The jobs, one per slot in order (a duplicate when a slot's key was already taken).
    Fired(Vec<InsertedJob>),
    /// The previous run was unfinished under [`Overlap::Skip`]: `next_slot` moved, no job.
    SkippedOverlap,
}

/// One run of a schedule, for [`Store::cron_history`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CronRun {
    /// The schedule.
    pub name: String,
    /// The slot (the instant of a manual run).
    pub slot: DateTime<Utc>,
    /// When it fired.
    pub fired_at: DateTime<Utc>,
    /// The job, unless the slot was skipped.
    pub job_id: Option<JobId>,
    /// Fired late by the catch-up policy.
    pub catch_up: bool,
    /// Fired by hand.
    pub run_now: bool,
    /// Skipped because the previous run was unfinished.
    pub skipped: bool,
    /// The job's state, while the job exists.
    pub state: Option<JobState>,
    /// When its latest attempt started.
    pub attempted_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
}

impl CronRun {
    /// How long its latest attempt ran, once finished.
    pub fn duration(&self) -> Option<Duration> {
        Some(self.finished_at? - self.attempted_at?)
    }
}

/// What to fire for a due schedule at `now`.
#[derive(Debug, Clone, PartialEq)]
pub struct CronPlan {
    /// The slots to fire, oldest first, with whether each is a catch-up.
    pub slots: Vec<(DateTime<Utc>, bool)>,
    /// The new `next_slot`: the first slot after `now`.
    pub next_slot: DateTime<Utc>,
}

/// The far future, for a schedule whose expression never matches again; the stores' time
/// types all hold it.
fn never() -> DateTime<Utc> {
    "9999-12-31T00:00:00Z"
        .parse()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Which slots in `[row.next_slot, now]` fire under the row's catch-up policy, and the next
/// slot after `now`.
pub fn plan(row: &CronRow, expr: &CronExpr, now: DateTime<Utc>) -> CronPlan {
    let schedule = &row.schedule;
    let on_time = Duration::seconds(CRON_ON_TIME_SECONDS);
    let reach = match schedule.catch_up {
        CatchUp::Skip => on_time,
        CatchUp::Latest | CatchUp::All => {
            Duration::seconds(i64::from(schedule.catch_up_window_seconds))
        }
    };
    let keep = match schedule.catch_up {
        CatchUp::Skip | CatchUp::Latest => 1,
        CatchUp::All => schedule.catch_up_max.max(1) as usize,
    };
    // Slots older than the reach are dropped without being enumerated one by one.
    let start = row.next_slot.max(now - reach);
    let mut slots: VecDeque<DateTime<Utc>> = VecDeque::with_capacity(keep);
    let mut slot = if start == row.next_slot {
        Some(row.next_slot)
    } else {
        expr.next_after(start - Duration::microseconds(1))
    };
    while let Some(at) = slot {
        if at > now {
            break;
        }
        if slots.len() == keep {
            slots.pop_front();
        }
        slots.push_back(at);
        slot = expr.next_after(at);
    }
    let next_slot = match slot {
        Some(at) if at > now => at,
        _ => expr.next_after(now).unwrap_or_else(never),
    };
    CronPlan {
        slots: slots
            .into_iter()
            .map(|at| (at, now - at > on_time))
            .collect(),
        next_slot,
    }
}

/// What one [`fire_due`] call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FireReport {
    /// Jobs inserted.
    pub fired: usize,
    /// Schedules another process fired first (or that changed under this one).
    pub lost: usize,
    /// Slots skipped because the previous run was unfinished.
    pub skipped: usize,
    /// The earliest `next_slot` still ahead, so the caller can sleep until then.
    pub next_slot: Option<DateTime<Utc>>,
    // --- stream history ---
    /// The jobs inserted (as many as `fired`), for the caller to publish as live events.
    pub jobs: Vec<FiredJob>,
}

/// A job a schedule inserted, as [`FireReport::jobs`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiredJob {
    /// The new job.
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its kind.
    pub kind: String,
    /// Its tenant.
    pub tenant: Option<String>,
    /// Its correlation id.
    pub correlation_id: Option<String>,
}

impl FiredJob {
    /// The fired job `inserted`, as `job` described it.
    pub fn new(job: &JobInsert, inserted: &InsertedJob) -> Self {
        FiredJob {
            id: inserted.id,
            queue: job.queue.clone(),
            kind: job.kind.clone(),
            tenant: job.tenant.clone(),
            correlation_id: job.metadata.correlation_id.clone(),
        }
    }
}

/// The most schedules one [`fire_due`] call fires.
pub const FIRE_BATCH: u32 = 100;

/// Fires every due slot of every schedule at `now`: the routine every process may run, as
/// often as it likes; each slot gets exactly one job across all of them.
///
/// A schedule whose stored expression no longer parses (written by an older build) is
/// skipped with a warning.
pub async fn fire_due<S: Store + ?Sized>(
    store: &S,
    now: DateTime<Utc>,
    max_args_bytes: usize,
) -> StoreResult<FireReport> {
    let due = store.cron_due(now, FIRE_BATCH).await?;
    // A full batch may have left due schedules behind: ask to be called again at once.
    let more = due.due.len() >= FIRE_BATCH as usize;
    let mut report = FireReport {
        next_slot: if more { Some(now) } else { due.next_slot },
        ..FireReport::default()
    };
    for row in due.due {
        let expr = match CronExpr::parse(&row.schedule.expr, &row.schedule.tz) {
            Ok(expr) => expr,
            Err(err) => {
                tracing::warn!(schedule = %row.schedule.name, error = %err, "cron schedule cannot be evaluated");
                continue;
            }
        };
        let plan = plan(&row, &expr, now);
        let slots: Vec<CronSlotJob> = plan
            .slots
            .iter()
            .map(|&(slot, catch_up)| CronSlotJob {
                slot,
                catch_up,
                run_now: false,
                job: row.schedule.job(slot, catch_up, false),
            })
            .collect();
        let described: Vec<JobInsert> = slots.iter().map(|slot| slot.job.clone()).collect();
        let outcome = store
            .cron_fire(CronFireParams {
                name: row.schedule.name.clone(),
                advance: Some(CronAdvance {
                    revision: row.revision,
                    from: row.next_slot,
                    to: plan.next_slot,
                }),
                slots,
                overlap: row.schedule.overlap,
                now,
                max_args_bytes,
            })
            .await?;
        match outcome {
            CronFireOutcome::Lost => report.lost += 1,
            CronFireOutcome::Fired(jobs) => {
                report.fired += jobs.iter().filter(|job| !job.duplicate).count();
                report.jobs.extend(
                    described
                        .iter()
                        .zip(&jobs)
                        .filter(|(_, inserted)| !inserted.duplicate)
                        .map(|(job, inserted)| FiredJob::new(job, inserted)),
                );
            }
            CronFireOutcome::SkippedOverlap => report.skipped += 1,
        }
        report.next_slot = Some(match report.next_slot {
            Some(next) => next.min(plan.next_slot),
            None => plan.next_slot,
        });
    }
    Ok(report)
}
