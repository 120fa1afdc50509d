//! The dashboard's pages: each handler reads through the viewer's [`stoker::Client`] and
//! fills a template's view model with text ready to show (numbers separated, durations in
//! words, instants in UTC with the exact instant for the local-time toggle).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::header::HOST;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use stoker::{
    BulkOpListParams, BulkOpRow, BulkOpState, Client, FailureGroupListParams, HistoryScope,
    JobCriteria, JobId, JobRow, JobSearchParams, JobState, SearchDirection, Series, SeriesRequest,
    StateCounts, StateView,
};

use super::chart::{self, Line};
use super::format::{self, When};
use super::session::Viewer;
use super::{render, Dash, DashError};

type Params = Query<HashMap<String, String>>;

/// A page of the navigation: key, label, path, and whether it spans every tenant (hidden
/// from tenant-bound tokens). Pages of later capabilities are one line here.
pub(crate) struct NavItem {
    pub(crate) key: &'static str,
    pub(crate) label: &'static str,
    pub(crate) href: &'static str,
    pub(crate) cluster: bool,
}

const NAV: &[NavItem] = &[
    NavItem {
        key: "overview",
        label: "Overview",
        href: "/",
        cluster: false,
    },
    NavItem {
        key: "queues",
        label: "Queues",
        href: "/queues",
        // --- stream tenant ---
        // A tenant-bound viewer sees its own tenant's part (issue 17).
        cluster: false,
    },
    NavItem {
        key: "jobs",
        label: "Jobs",
        href: "/jobs",
        cluster: false,
    },
    NavItem {
        key: "failures",
        label: "Failures",
        href: "/failures",
        // --- stream tenant ---
        // A tenant-bound viewer sees its own tenant's groups (issue 17).
        cluster: false,
    },
    NavItem {
        key: "workers",
        label: "Workers",
        href: "/workers",
        // --- stream tenant ---
        // A tenant-bound viewer sees its own tenant's part (issue 17).
        cluster: false,
    },
    NavItem {
        key: "ops",
        label: "Operations",
        href: "/ops",
        // --- stream tenant ---
        // A tenant-bound viewer sees its own tenant's part (issue 17).
        cluster: false,
    },
    NavItem {
        key: "cron",
        label: "Cron",
        href: "/cron",
        // A tenant-bound viewer sees its own tenant's schedules (issue 17).
        cluster: false,
    },
    // --- stream tenancy ---
    NavItem {
        key: "audit",
        label: "Audit",
        href: "/audit",
        cluster: false,
    },
    // --- stream flow ---
    NavItem {
        key: "limits",
        label: "Limits",
        href: "/limits",
        // --- stream tenant ---
        // A tenant-bound viewer sees its own tenant's part (issue 17).
        cluster: false,
    },
    // --- stream workflows ---
    NavItem {
        key: "workflows",
        label: "Workflows",
        href: "/workflows",
        cluster: false,
    },
    NavItem {
        key: "batches",
        label: "Batches",
        href: "/batches",
        cluster: false,
    },
];

/// What every page's frame shows: navigation, the viewer, the form token, a notice.
pub(crate) struct Chrome {
    pub(crate) title: String,
    pub(crate) nav: &'static str,
    pub(crate) user: String,
    pub(crate) tenant: String,
    pub(crate) csrf: String,
    pub(crate) can_act: bool,
    pub(crate) cluster: bool,
    pub(crate) auth: bool,
    pub(crate) notice: String,
    pub(crate) css: String,
    pub(crate) js: String,
    pub(crate) icon: String,
    /// The live stream the page follows (`/ui/live?...`), or empty.
    pub(crate) live: String,
    /// Where an action on this page returns to.
    pub(crate) back: String,
    pub(crate) version: &'static str,
}

/// The notices an action may ask the next page to show (by code, so a link cannot make the
/// page say anything else).
fn notice(code: Option<&String>) -> String {
    match code.map(String::as_str) {
        Some("paused") => "Queue paused: workers take no new jobs from it.",
        Some("resumed") => "Queue resumed.",
        Some("retried") => "Job queued to run again.",
        Some("cancelled") => "Job cancelled (a running job stops at its next check).",
        Some("deleted") => "Job deleted.",
        Some("selected") => "Done for the selected jobs.",
        Some("aborted") => "Operation aborted; batches already run stay applied.",
        Some("cron-paused") => "Schedule paused.",
        Some("cron-resumed") => "Schedule resumed.",
        Some("cron-run") => "Schedule fired now.",
        // --- stream workflows ---
        Some("batch-closed") => "Batch closed: its callback runs once every job has finished.",
        Some("batch-cancelled") => {
            "Batch cancelled: its waiting jobs and its callback were cancelled."
        }
        Some("workflow-cancelled") => "Workflow cancelled: its waiting jobs were cancelled.",
        _ => "",
    }
    .to_owned()
}

impl Chrome {
    pub(crate) fn new(
        viewer: &Viewer,
        nav: &'static str,
        title: impl Into<String>,
        params: &HashMap<String, String>,
    ) -> Self {
        Chrome {
            title: title.into(),
            nav,
            user: viewer.principal.name.clone().unwrap_or_default(),
            tenant: viewer.principal.tenant.clone().unwrap_or_default(),
            csrf: viewer.csrf.clone(),
            can_act: viewer.can_act(),
            cluster: viewer.cluster(),
            auth: viewer.auth,
            notice: notice(params.get("done")),
            css: super::asset_url(0),
            js: super::asset_url(1),
            icon: super::asset_url(2),
            live: String::new(),
            back: String::new(),
            version: env!("CARGO_PKG_VERSION"),
        }
    }

    fn live(mut self, live: impl Into<String>) -> Self {
        self.live = live.into();
        self
    }

    fn back(mut self, back: impl Into<String>) -> Self {
        self.back = back.into();
        self
    }

    pub(crate) fn nav_items(&self) -> &'static [NavItem] {
        NAV
    }

    /// Why a button is off for this viewer ("" when it is on).
    pub(crate) fn refused(&self) -> &'static str {
        if self.can_act {
            ""
        } else {
            "Read-only token: actions need the operate (or admin) scope"
        }
    }
}

// --- Ranges and charts ---

/// A range of the picker: key, label, length and step in seconds.
pub(crate) struct RangeOpt {
    pub(crate) key: &'static str,
    pub(crate) label: &'static str,
    secs: u64,
    step: u64,
    step_label: &'static str,
}

const RANGES: &[RangeOpt] = &[
    RangeOpt {
        key: "1h",
        label: "1 h",
        secs: 3_600,
        step: 60,
        step_label: "minute",
    },
    RangeOpt {
        key: "24h",
        label: "24 h",
        secs: 86_400,
        step: 900,
        step_label: "15 minutes",
    },
    RangeOpt {
        key: "7d",
        label: "7 d",
        secs: 7 * 86_400,
        step: 7_200,
        step_label: "2 hours",
    },
    RangeOpt {
        key: "30d",
        label: "30 d",
        secs: 30 * 86_400,
        step: 43_200,
        step_label: "12 hours",
    },
    RangeOpt {
        key: "90d",
        label: "90 d",
        secs: 90 * 86_400,
        step: 86_400,
        step_label: "day",
    },
];

fn range_of(params: &HashMap<String, String>) -> &'static RangeOpt {
    let key = params.get("range").map(String::as_str).unwrap_or("1h");
    RANGES.iter().find(|r| r.key == key).unwrap_or(&RANGES[0])
}

/// A chart as a page shows it.
pub(crate) struct ChartView {
    pub(crate) title: String,
    pub(crate) svg: String,
    pub(crate) top: String,
    pub(crate) start: When,
    pub(crate) legend: Vec<LegendItem>,
    /// What to say over an empty chart ("" when it has data).
    pub(crate) empty: String,
}

/// One line's key under a chart, with its total over the range and the change from the
/// period before.
pub(crate) struct LegendItem {
    pub(crate) class: &'static str,
    pub(crate) label: String,
    pub(crate) value: String,
    pub(crate) change: String,
    /// `up`, `down` or `flat`; whether up is good depends on the line (`good`/`bad`).
    pub(crate) trend: &'static str,
}

fn change_text(now: f64, before: Option<f64>, higher_is_bad: bool) -> (String, &'static str) {
    let Some(before) = before else {
        return (String::new(), "flat");
    };
    match format::change(now, before) {
        None if now > 0.0 => (
            "new vs previous period".to_owned(),
            if higher_is_bad { "bad" } else { "good" },
        ),
        None => ("same as previous period".to_owned(), "flat"),
        Some(pct) if pct.abs() < 1.0 => ("≈ previous period".to_owned(), "flat"),
        Some(pct) => {
            let worse = (pct > 0.0) == higher_is_bad;
            (
                format!(
                    "{}{:.0}% vs previous period",
                    if pct > 0.0 { "+" } else { "−" },
                    pct.abs()
                ),
                if worse { "bad" } else { "good" },
            )
        }
    }
}

/// The four charts of a series: throughput, failures, wait time, run time.
fn charts(series: &Series) -> Vec<ChartView> {
    let start = When::new(series.from, series.to);
    let counts = |f: fn(&stoker::SeriesPoint) -> i64| -> Vec<Option<f64>> {
        series.points.iter().map(|p| Some(f(p) as f64)).collect()
    };
    let ms = |f: fn(&stoker::SeriesPoint) -> Option<u64>| -> Vec<Option<f64>> {
        series
            .points
            .iter()
            .map(|p| f(p).map(|v| v as f64))
            .collect()
    };
    let prev = series.previous.as_ref();
    let count_item = |class, label: &str, now: i64, before: Option<i64>, bad| {
        let (change, trend) = change_text(now as f64, before.map(|b| b as f64), bad);
        LegendItem {
            class,
            label: label.to_owned(),
            value: format::count(now),
            change,
            trend,
        }
    };
    let ms_item = |class, label: &str, now: Option<u64>, before: Option<Option<u64>>| {
        let (change, trend) = match (now, before.flatten()) {
            (Some(now), Some(before)) => change_text(now as f64, Some(before as f64), true),
            _ => (String::new(), "flat"),
        };
        LegendItem {
            class,
            label: label.to_owned(),
            value: now.map_or("—".to_owned(), format::millis),
            change,
            trend,
        }
    };
    let throughput = chart::line_chart(
        &[
            Line {
                class: "s-enqueued",
                values: counts(|p| p.enqueued),
            },
            Line {
                class: "s-completed",
                values: counts(|p| p.completed),
            },
        ],
        "Jobs enqueued and completed",
    );
    let failures = chart::line_chart(
        &[
            Line {
                class: "s-failed",
                values: counts(|p| p.failed),
            },
            Line {
                class: "s-discarded",
                values: counts(|p| p.discarded),
            },
        ],
        "Failed attempts and discarded jobs",
    );
    let wait = chart::line_chart(
        &[
            Line {
                class: "s-p95",
                values: ms(|p| p.wait.p95_ms),
            },
            Line {
                class: "s-p50",
                values: ms(|p| p.wait.p50_ms),
            },
        ],
        "Wait time p50 and p95",
    );
    let run = chart::line_chart(
        &[
            Line {
                class: "s-p95",
                values: ms(|p| p.run.p95_ms),
            },
            Line {
                class: "s-p50",
                values: ms(|p| p.run.p50_ms),
            },
        ],
        "Run time p50 and p95",
    );
    let total = &series.total;
    vec![
        ChartView {
            empty: if total.enqueued + total.completed == 0 {
                "No jobs enqueued or completed in this range".to_owned()
            } else {
                String::new()
            },
            title: "Throughput".to_owned(),
            top: format::short_count(throughput.max as i64),
            svg: throughput.svg,
            start: start.clone(),
            legend: vec![
                count_item(
                    "s-completed",
                    "completed",
                    total.completed,
                    prev.map(|p| p.completed),
                    false,
                ),
                count_item(
                    "s-enqueued",
                    "enqueued",
                    total.enqueued,
                    prev.map(|p| p.enqueued),
                    false,
                ),
            ],
        },
        ChartView {
            empty: String::new(),
            title: "Failures".to_owned(),
            top: format::short_count(failures.max as i64),
            svg: failures.svg,
            start: start.clone(),
            legend: vec![
                count_item(
                    "s-failed",
                    "failed attempts",
                    total.failed,
                    prev.map(|p| p.failed),
                    true,
                ),
                count_item(
                    "s-discarded",
                    "discarded",
                    total.discarded,
                    prev.map(|p| p.discarded),
                    true,
                ),
            ],
        },
        ChartView {
            empty: if total.wait.count == 0 {
                "No attempts started in this range".to_owned()
            } else {
                String::new()
            },
            title: "Wait time".to_owned(),
            top: format::millis(wait.max as u64),
            svg: wait.svg,
            start: start.clone(),
            legend: vec![
                ms_item(
                    "s-p95",
                    "p95",
                    total.wait.p95_ms,
                    prev.map(|p| p.wait.p95_ms),
                ),
                ms_item(
                    "s-p50",
                    "p50",
                    total.wait.p50_ms,
                    prev.map(|p| p.wait.p50_ms),
                ),
            ],
        },
        ChartView {
            empty: if total.run.count == 0 {
                "No attempts finished in this range".to_owned()
            } else {
                String::new()
            },
            title: "Run time".to_owned(),
            top: format::millis(run.max as u64),
            svg: run.svg,
            start,
            legend: vec![
                ms_item("s-p95", "p95", total.run.p95_ms, prev.map(|p| p.run.p95_ms)),
                ms_item("s-p50", "p50", total.run.p50_ms, prev.map(|p| p.run.p50_ms)),
            ],
        },
    ]
}

async fn series(
    client: &Client,
    range: &RangeOpt,
    scope: HistoryScope,
    compare: bool,
) -> Result<Series, DashError> {
    Ok(client
        .series(&SeriesRequest {
            range: Duration::from_secs(range.secs),
            step: Duration::from_secs(range.step),
            end: None,
            scope,
            compare,
        })
        .await?)
}

// --- Counters by state ---

/// One state's counter.
pub(crate) struct StateTile {
    pub(crate) state: &'static str,
    pub(crate) label: &'static str,
    pub(crate) value: String,
    pub(crate) href: String,
}

/// The tiles, one per state a search can name: due and scheduled work apart (a backlog that
/// is only waiting for its `run_at` needs no look), in the order a job moves through them.
const STATE_LABELS: [(StateView, &str); 8] = [
    (StateView::Available, "Due"),
    (StateView::Scheduled, "Scheduled"),
    (StateView::Blocked, "Blocked"),
    (StateView::Running, "Running"),
    (StateView::Retryable, "Retryable"),
    (StateView::Discarded, "Discarded"),
    (StateView::Completed, "Completed"),
    (StateView::Cancelled, "Cancelled"),
];

/// How many jobs `counts` holds in `view`: `available` counts due jobs only, as the live
/// snapshot's `states.available` does, so a tile never jumps when the first event arrives.
fn count_of(counts: &StateCounts, view: StateView) -> i64 {
    match view {
        StateView::Available => counts.available,
        StateView::Scheduled => counts.scheduled,
        StateView::Blocked => counts.blocked,
        StateView::Running => counts.running,
        StateView::Retryable => counts.retryable,
        StateView::Completed => counts.completed,
        StateView::Discarded => counts.discarded,
        StateView::Cancelled => counts.cancelled,
    }
}

/// The search-bar query for `criteria` with `states` in place of its own.
fn query_with_states(criteria: &JobCriteria, states: &[StateView]) -> String {
    let mut criteria = criteria.clone();
    criteria.states = states.to_vec();
    stoker::format_query(&criteria)
}

fn tiles(counts: &StateCounts, base: &JobCriteria) -> Vec<StateTile> {
    STATE_LABELS
        .iter()
        .map(|(view, label)| StateTile {
            state: view.as_str(),
            label,
            value: format::count(count_of(counts, *view)),
            href: format!("/jobs?q={}", encode(&query_with_states(base, &[*view]))),
        })
        .collect()
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// --- Queues, with what needs attention ---

/// A queue's row.
pub(crate) struct QueueView {
    pub(crate) name: String,
    pub(crate) href: String,
    pub(crate) paused: bool,
    pub(crate) available: String,
    pub(crate) running: String,
    pub(crate) retryable: String,
    pub(crate) discarded: String,
    pub(crate) due: String,
    pub(crate) scheduled: String,
    pub(crate) oldest: String,
    pub(crate) rate: String,
    pub(crate) p95_wait: String,
    pub(crate) workers: String,
    pub(crate) no_worker: bool,
    pub(crate) has_work: bool,
    pub(crate) concurrency: String,
    pub(crate) spark: String,
    pub(crate) attention: Vec<String>,
    // --- stream dash ---
    /// Its jobs by state, from the counters (so a page that shows queues needs no second
    /// read of them).
    pub(crate) counts: StateCounts,
}

// --- stream dash ---
/// Every queue's row, and the worker list they were built from: one read of the counters, the
/// depths and the workers for a whole page.
struct QueueViews {
    views: Vec<QueueView>,
    workers: Vec<stoker::WorkerStatus>,
}

impl QueueViews {
    /// Every queue's counts summed: the cluster's totals by state.
    fn totals(&self) -> StateCounts {
        let mut totals = StateCounts::default();
        for view in &self.views {
            let c = &view.counts;
            totals.available += c.available;
            totals.scheduled += c.scheduled;
            totals.blocked += c.blocked;
            totals.running += c.running;
            totals.retryable += c.retryable;
            totals.completed += c.completed;
            totals.discarded += c.discarded;
            totals.cancelled += c.cancelled;
        }
        totals
    }
}

/// A queue that needs a look, and why.
pub(crate) struct AttentionItem {
    pub(crate) queue: String,
    pub(crate) href: String,
    pub(crate) reasons: Vec<String>,
}

/// The oldest due job waiting longer than this draws attention.
const OLDEST_WAIT_ATTENTION: i64 = 300;

async fn queue_views(client: &Client) -> Result<QueueViews, DashError> {
    queue_views_of(client, None).await
}

// --- stream dash ---
/// The rows of every queue, or of `only` that one (a queue's page reads one queue's history,
/// not every queue's).
async fn queue_views_of(client: &Client, only: Option<&str>) -> Result<QueueViews, DashError> {
    let now = client.clock().now();
    let overview = client.queue_overview().await?;
    let depths = client.queue_depths().await?;
    let workers = client.worker_overview().await?;
    let hour = &RANGES[0];
    let mut views = Vec::with_capacity(overview.len());
    for queue in overview {
        if only.is_some_and(|name| name != queue.name) {
            continue;
        }
        let depth = depths.iter().find(|d| d.queue == queue.name);
        let (due, scheduled, oldest_secs) = match depth {
            Some(d) => (
                d.due,
                d.scheduled,
                d.oldest_due_at.map(|at| (now - at).num_seconds().max(0)),
            ),
            None => (queue.counts.available, 0, None),
        };
        let scope = HistoryScope {
            queue: Some(queue.name.clone()),
            ..HistoryScope::default()
        };
        let s = client
            .series(&SeriesRequest {
                range: Duration::from_secs(hour.secs),
                step: Duration::from_secs(300),
                end: None,
                scope,
                compare: true,
            })
            .await?;
        let alive = queue.workers.iter().filter(|w| w.alive).count();
        let concurrency: u32 = workers
            .iter()
            .filter(|w| w.alive && w.worker.queues.contains(&queue.name))
            .map(|w| w.worker.concurrency)
            .sum();
        let mut attention = Vec::new();
        if queue.paused && due > 0 {
            attention.push(format!("paused with {} due", format::count(due)));
        }
        // A tenant-bound viewer sees only the workers bound to its tenant (issue 17): the
        // workers serving every tenant are not its to know about.
        if client.tenant().is_none() && !queue.paused && due > 0 && alive == 0 {
            attention.push("no live worker serves it".to_owned());
        }
        if let Some(secs) = oldest_secs.filter(|s| *s > OLDEST_WAIT_ATTENTION) {
            attention.push(format!(
                "oldest job waiting {}",
                format::seconds(secs as u64)
            ));
        }
        let attempts = s.total.completed + s.total.failed;
        if attempts >= 10 && s.total.failed * 10 >= attempts {
            let rate = s.total.failed as f64 / attempts as f64 * 100.0;
            let before = s.previous.as_ref().map(|p| {
                let attempts = p.completed + p.failed;
                if attempts > 0 {
                    p.failed as f64 / attempts as f64 * 100.0
                } else {
                    0.0
                }
            });
            if before.is_none_or(|b| rate > b * 1.5) {
                attention.push(match before {
                    Some(b) => format!("failure rate {rate:.0}% in the last hour (was {b:.0}%)"),
                    None => format!("failure rate {rate:.0}% in the last hour"),
                });
            }
        }
        let depths: Vec<i64> = s.points.iter().filter_map(|p| p.depth).collect();
        if let (Some(first), Some(last)) = (depths.first(), depths.last()) {
            if *last >= 100 && *last as f64 > *first as f64 * 1.5 {
                attention.push(format!(
                    "backlog grew from {} to {} in the last hour",
                    format::count(*first),
                    format::count(*last)
                ));
            }
        }
        let completed: Vec<f64> = s.points.iter().map(|p| p.completed as f64).collect();
        views.push(QueueView {
            href: format!("/queues/{}", encode(&queue.name)),
            paused: queue.paused,
            available: format::count(queue.counts.available),
            running: format::count(queue.counts.running),
            retryable: format::count(queue.counts.retryable),
            discarded: format::count(queue.counts.discarded),
            due: format::count(due),
            scheduled: format::count(scheduled),
            oldest: oldest_secs.map_or("—".to_owned(), |s| format::seconds(s as u64)),
            rate: format!("{:.1}", s.total.completed as f64 / 60.0),
            p95_wait: s.total.wait.p95_ms.map_or("—".to_owned(), format::millis),
            workers: format!("{alive} / {}", queue.workers.len()),
            no_worker: alive == 0,
            has_work: due > 0,
            concurrency: if concurrency == 0 {
                "—".to_owned()
            } else {
                concurrency.to_string()
            },
            spark: chart::sparkline(&completed, "s-completed"),
            attention,
            counts: queue.counts,
            name: queue.name,
        });
    }
    Ok(QueueViews { views, workers })
}

// --- Overview ---

#[derive(Template)]
#[template(path = "dashboard/overview.html")]
struct OverviewPage {
    c: Chrome,
    tiles: Vec<StateTile>,
    total: String,
    attention: Vec<AttentionItem>,
    queues_ok: usize,
    ranges: &'static [RangeOpt],
    range: &'static str,
    step_label: &'static str,
    charts: Vec<ChartView>,
    workers_alive: usize,
    tenant_note: String,
}

pub(crate) async fn overview(
    State(dash): State<Dash>,
    viewer: Viewer,
    Query(params): Params,
) -> Result<Response, DashError> {
    let client = dash.app.client_for(&viewer.principal);
    let range = range_of(&params);
    let c = Chrome::new(&viewer, "overview", "Overview", &params)
        .back(format!("/?range={}", range.key));
    let series = series(&client, range, HistoryScope::default(), true).await?;
    let charts = charts(&series);
    let (tiles, total, attention, queues_ok, workers_alive, c) = if viewer.cluster() {
        // --- stream dash ---
        // The totals are the queues' counts summed: one read of the counters per page.
        let queues = queue_views(&client).await?;
        let totals = queues.totals();
        let QueueViews { views, workers } = queues;
        let queues_ok = views.iter().filter(|v| v.attention.is_empty()).count();
        let mut attention: Vec<AttentionItem> = alert_views(&client, client.clock().now())
            .await?
            .into_iter()
            .filter(|a| a.state == "firing")
            .map(|a| AttentionItem {
                reasons: vec![format!(
                    "alert firing: {} ({}), now {}",
                    a.condition, a.scope, a.value
                )],
                queue: a.name,
                href: "/ops#alerts".to_owned(),
            })
            .collect();
        attention.extend(
            views
                .into_iter()
                .filter(|v| !v.attention.is_empty())
                .map(|v| AttentionItem {
                    queue: v.name,
                    href: v.href,
                    reasons: v.attention,
                }),
        );
        (
            tiles(&totals, &JobCriteria::default()),
            format::count(totals.total()),
            attention,
            queues_ok,
            workers.iter().filter(|w| w.alive).count(),
            c.live("/ui/live?jobs=false"),
        )
    } else {
        (Vec::new(), String::new(), Vec::new(), 0, 0, c)
    };
    let tenant_note = viewer
        .principal
        .tenant
        .as_ref()
        .map(|t| format!("Charts show tenant {t:?} only; counters by state span every tenant and are not shown to this token."))
        .unwrap_or_default();
    Ok(render(&OverviewPage {
        c,
        tiles,
        total,
        attention,
        queues_ok,
        ranges: RANGES,
        range: range.key,
        step_label: range.step_label,
        charts,
        workers_alive,
        tenant_note,
    }))
}

// --- Queues ---

#[derive(Template)]
#[template(path = "dashboard/queues.html")]
struct QueuesPage {
    c: Chrome,
    queues: Vec<QueueView>,
}

pub(crate) async fn queues(
    State(dash): State<Dash>,
    viewer: Viewer,
    Query(params): Params,
) -> Result<Response, DashError> {
    let client = dash.app.client_for(&viewer.principal);
    let queues = queue_views(&client).await?.views;
    let c = Chrome::new(&viewer, "queues", "Queues", &params)
        .back("/queues")
        .live("/ui/live?jobs=false");
    Ok(render(&QueuesPage { c, queues }))
}

#[derive(Template)]
#[template(path = "dashboard/queue.html")]
struct QueuePage {
    c: Chrome,
    q: QueueView,
    ranges: &'static [RangeOpt],
    range: &'static str,
    step_label: &'static str,
    charts: Vec<ChartView>,
    jobs_href: String,
    tiles: Vec<StateTile>,
}

pub(crate) async fn queue(
    State(dash): State<Dash>,
    viewer: Viewer,
    Path(name): Path<String>,
    Query(params): Params,
) -> Result<Response, DashError> {
    let client = dash.app.client_for(&viewer.principal);
    let views = queue_views_of(&client, Some(&name)).await?.views;
    let Some(q) = views.into_iter().find(|v| v.name == name) else {
        return Err(DashError::new(
            StatusCode::NOT_FOUND,
            "No such queue",
            format!("Queue {name:?} has no jobs and no settings."),
        ));
    };
    let range = range_of(&params);
    let scope = HistoryScope {
        queue: Some(name.clone()),
        ..HistoryScope::default()
    };
    let charts = charts(&series(&client, range, scope, true).await?);
    // --- stream dash ---
    let counts = q.counts;
    let in_queue = JobCriteria {
        queues: vec![name.clone()],
        ..JobCriteria::default()
    };
    let c = Chrome::new(&viewer, "queues", format!("Queue {name}"), &params)
        .back(format!("/queues/{}?range={}", encode(&name), range.key))
        .live("/ui/live?jobs=false");
    Ok(render(&QueuePage {
        c,
        jobs_href: format!("/jobs?q={}", encode(&stoker::format_query(&in_queue))),
        tiles: tiles(&counts, &in_queue),
        q,
        ranges: RANGES,
        range: range.key,
        step_label: range.step_label,
        charts,
    }))
}

// --- Jobs ---

/// Jobs per page of the list; a page's ticked jobs fit in one bulk operation's id list
/// ([`stoker::core::JOB_CRITERIA_MAX_VALUES`]).
pub(crate) const PAGE_SIZE: u32 = 30;

/// Reads the search bar with the client's clock: the criteria, or the error to show.
pub(crate) fn read_query(client: &Client, q: &str) -> Result<JobCriteria, DashError> {
    match client.parse_query(q) {
        Ok(criteria) => Ok(criteria),
        Err(stoker::Error::Invalid(invalid)) => Err(DashError::new(
            StatusCode::BAD_REQUEST,
            "Search not understood",
            invalid.reason,
        )),
        Err(other) => Err(other.into()),
    }
}

/// A job's row in a list.
pub(crate) struct JobItem {
    pub(crate) id: String,
    pub(crate) href: String,
    pub(crate) kind: String,
    pub(crate) queue: String,
    pub(crate) state: &'static str,
    pub(crate) attempt: String,
    pub(crate) created: When,
    pub(crate) note: String,
    pub(crate) tenant: String,
}

fn job_item(job: &JobRow, now: DateTime<Utc>) -> JobItem {
    let note = match (&job.state, job.errors.last(), &job.progress) {
        (JobState::Running, _, Some(progress)) => format!(
            "{:.0}% {}",
            progress.fraction * 100.0,
            progress.message.as_deref().unwrap_or_default()
        ),
        (JobState::Available, _, _) if job.run_at > now => {
            format!("scheduled {}", format::ago(job.run_at, now))
        }
        (JobState::Retryable | JobState::Discarded, Some(error), _) => {
            format::clip(&error.message, 120)
        }
        _ => String::new(),
    };
    JobItem {
        id: job.id.to_string(),
        href: format!("/jobs/{}", job.id),
        kind: job.kind.clone(),
        queue: job.queue.clone(),
        state: job.state.as_str(),
        attempt: format!("{} / {}", job.attempt, job.max_attempts),
        created: When::new(job.created_at, now),
        note: note.trim().to_owned(),
        tenant: job.tenant.clone().unwrap_or_default(),
    }
}

/// A state tab over the job list.
pub(crate) struct Tab {
    pub(crate) label: &'static str,
    pub(crate) href: String,
    pub(crate) count: String,
    pub(crate) current: bool,
}

#[derive(Template)]
#[template(path = "dashboard/jobs.html")]
struct JobsPage {
    c: Chrome,
    q: String,
    error: String,
    tabs: Vec<Tab>,
    jobs: Vec<JobItem>,
    newest_href: String,
    newer_href: String,
    older_href: String,
    partial: String,
    matching: String,
    newest: String,
}

/// How many jobs a count found: `1,234`, or `10,000+` when it stopped at its cap.
fn count_text(count: stoker::JobCount) -> String {
    let n = format::count(i64::try_from(count.count).unwrap_or(i64::MAX));
    if count.exact {
        n
    } else {
        format!("{n}+")
    }
}

pub(crate) async fn jobs(
    State(dash): State<Dash>,
    viewer: Viewer,
    Query(params): Params,
) -> Result<Response, DashError> {
    let client = dash.app.client_for(&viewer.principal);
    let now = client.clock().now();
    let q = params.get("q").cloned().unwrap_or_default();
    let mut c = Chrome::new(&viewer, "jobs", "Jobs", &params);
    let (criteria, error) = match read_query(&client, &q) {
        Ok(criteria) => (criteria, String::new()),
        Err(error) => (JobCriteria::default(), error.message),
    };
    // `id:42` alone opens the job.
    if let [id] = criteria.ids[..] {
        let only_id = JobCriteria {
            ids: vec![id],
            ..JobCriteria::default()
        };
        if criteria == only_id {
            return Ok(super::session::see_other(&format!("/jobs/{id}")));
        }
    }
    let cursor = |name: &str| {
        params
            .get(name)
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|id| *id > 0)
            .map(JobId)
    };
    let mut search = JobSearchParams::new(criteria.clone(), PAGE_SIZE);
    if let Some(older) = cursor("older") {
        search.cursor = Some(older);
    } else if let Some(newer) = cursor("newer") {
        search.cursor = Some(newer);
        search.direction = SearchDirection::Newer;
    }
    let paged = search.cursor.is_some();
    // --- stream dash ---
    // Counts from the counters wherever they answer exactly (cluster-wide, by queue or by
    // kind, by state view): the tabs and the number of matches. Any other search shows a
    // bounded count of its matches ("10,000+"), which reads at most a bounded walk.
    let stats = if viewer.cluster() && error.is_empty() {
        Some(client.stats().await?)
    } else {
        None
    };
    let simple = JobCriteria {
        states: criteria.states.clone(),
        queues: criteria.queues.clone(),
        kinds: criteria.kinds.clone(),
        ..JobCriteria::default()
    } == criteria
        && (criteria.queues.is_empty() || criteria.kinds.is_empty());
    let counters = |view: StateView| -> Option<i64> {
        let stats = stats.as_ref().filter(|_| simple)?;
        let groups: Vec<&StateCounts> = if !criteria.queues.is_empty() {
            criteria
                .queues
                .iter()
                .filter_map(|q| stats.queues.get(q))
                .collect()
        } else if !criteria.kinds.is_empty() {
            criteria
                .kinds
                .iter()
                .filter_map(|k| stats.kinds.get(k))
                .collect()
        } else {
            vec![&stats.totals]
        };
        Some(groups.iter().map(|counts| count_of(counts, view)).sum())
    };
    let counted = |views: &[StateView]| -> Option<i64> {
        let views = if views.is_empty() {
            &StateView::ALL[..]
        } else {
            views
        };
        views.iter().map(|view| counters(*view)).sum()
    };
    let (page, matching) = if error.is_empty() {
        let page = client.search(search.clone()).await?;
        let matching = match counted(&criteria.states) {
            Some(n) => format::count(n),
            None => count_text(client.count(criteria.clone()).await?),
        };
        (Some(page), matching)
    } else {
        (None, String::new())
    };
    let mut tabs = vec![Tab {
        label: "All",
        href: format!("/jobs?q={}", encode(&query_with_states(&criteria, &[]))),
        count: counted(&[]).map(format::short_count).unwrap_or_default(),
        current: criteria.states.is_empty(),
    }];
    for view in StateView::ALL {
        tabs.push(Tab {
            label: state_label(view),
            href: format!("/jobs?q={}", encode(&query_with_states(&criteria, &[view]))),
            count: counters(view).map(format::short_count).unwrap_or_default(),
            current: criteria.states == [view],
        });
    }
    let link = |name: &str, id: JobId| format!("/jobs?q={}&{name}={id}", encode(&q));
    let back = match (search.cursor, search.direction) {
        (Some(id), SearchDirection::Older) => link("older", id),
        (Some(id), SearchDirection::Newer) => link("newer", id),
        (None, _) => format!("/jobs?q={}", encode(&q)),
    };
    c = c.back(back);
    // New jobs show as a banner, never by moving the rows (first page only).
    if !paged && error.is_empty() && criteria.queues.len() <= 1 && criteria.kinds.len() <= 1 {
        let mut live = "/ui/live?snapshot=false".to_owned();
        if let [queue] = &criteria.queues[..] {
            live.push_str(&format!("&queue={}", encode(queue)));
        }
        if let [kind] = &criteria.kinds[..] {
            live.push_str(&format!("&kind={}", encode(kind)));
        }
        if let Some(tenant) = &criteria.tenant {
            live.push_str(&format!("&tenant={}", encode(tenant)));
        }
        c = c.live(live);
    }
    let (jobs, older, newer, partial) = match page {
        Some(page) => {
            let partial = if page.partial {
                format!(
                    "This page stopped after reading {} rows without filling up: older \
                     matches may remain. Search further to go on.",
                    format::count(i64::try_from(page.scanned).unwrap_or(i64::MAX))
                )
            } else {
                String::new()
            };
            (page.jobs, page.older, page.newer, partial)
        }
        None => (Vec::new(), None, None, String::new()),
    };
    Ok(render(&JobsPage {
        c,
        newest: if paged {
            // A later page has no banner: its newest row is not the newest job.
            i64::MAX.to_string()
        } else {
            jobs.first()
                .map(|j| j.id.to_string())
                .unwrap_or_else(|| "0".to_owned())
        },
        jobs: jobs.iter().map(|j| job_item(j, now)).collect(),
        newest_href: if paged {
            format!("/jobs?q={}", encode(&q))
        } else {
            String::new()
        },
        newer_href: newer
            .filter(|_| paged)
            .map(|id| link("newer", id))
            .unwrap_or_default(),
        older_href: older.map(|id| link("older", id)).unwrap_or_default(),
        partial,
        matching,
        q,
        error,
        tabs,
    }))
}

/// A state view's tab label.
fn state_label(view: StateView) -> &'static str {
    match view {
        StateView::Available => "Due",
        StateView::Scheduled => "Scheduled",
        StateView::Running => "Running",
        StateView::Retryable => "Retryable",
        StateView::Completed => "Completed",
        StateView::Discarded => "Discarded",
        StateView::Cancelled => "Cancelled",
        // --- stream wf ---
        StateView::Blocked => "Blocked",
    }
}

// --- Job detail ---

/// One entry of a job's attempt timeline.
pub(crate) struct AttemptView {
    pub(crate) attempt: String,
    pub(crate) when: When,
    pub(crate) outcome: &'static str,
    pub(crate) class: &'static str,
    pub(crate) kind: String,
    pub(crate) took: String,
    pub(crate) message: String,
    pub(crate) backtrace: String,
}

/// A job's fact: a label and a value, maybe a link.
pub(crate) struct Fact {
    pub(crate) label: &'static str,
    pub(crate) value: String,
    pub(crate) href: String,
    pub(crate) when: Option<When>,
}

/// A log line.
pub(crate) struct LogView {
    pub(crate) attempt: String,
    pub(crate) when: When,
    pub(crate) line: String,
}

#[derive(Template)]
#[template(path = "dashboard/job.html")]
struct JobPage {
    c: Chrome,
    id: String,
    kind: String,
    state: &'static str,
    queue: String,
    queue_href: String,
    facts: Vec<Fact>,
    args: String,
    result: String,
    has_result: bool,
    progress: String,
    progress_text: String,
    has_progress: bool,
    attempts: Vec<AttemptView>,
    parent: Option<JobItem>,
    children: Vec<JobItem>,
    children_href: String,
    logs: Vec<LogView>,
    cli: String,
    curl: String,
    can_retry: bool,
    can_cancel: bool,
    can_delete: bool,
    correlation_href: String,
}

fn error_kind(kind: stoker::ErrorKind) -> &'static str {
    match kind {
        stoker::ErrorKind::Error => "error",
        stoker::ErrorKind::Panic => "panic",
        stoker::ErrorKind::Timeout => "timeout",
        stoker::ErrorKind::WorkerLost => "worker lost",
        stoker::ErrorKind::NoHandler => "no handler",
        stoker::ErrorKind::InvalidArgs => "invalid args",
        stoker::ErrorKind::Cancelled => "cancelled",
    }
}

fn copy_commands(job: &JobRow, base_url: &str) -> (String, String) {
    let args = job.args.to_string();
    let mut cli = format!(
        "stoker enqueue {} --args {}",
        format::shell_quote(&job.kind),
        format::shell_quote(&args)
    );
    if job.queue != stoker::QUEUE_DEFAULT {
        cli.push_str(&format!(" --queue {}", format::shell_quote(&job.queue)));
    }
    if job.priority != stoker::Priority::default() {
        cli.push_str(&format!(" --priority {}", job.priority.0));
    }
    if job.max_attempts != stoker::MAX_ATTEMPTS_DEFAULT {
        cli.push_str(&format!(" --max-attempts {}", job.max_attempts));
    }
    if let Some(tenant) = &job.tenant {
        cli.push_str(&format!(" --tenant {}", format::shell_quote(tenant)));
    }
    if let Some(corr) = &job.metadata.correlation_id {
        cli.push_str(&format!(" --correlation-id {}", format::shell_quote(corr)));
    }
    for tag in &job.metadata.tags {
        cli.push_str(&format!(" --tag {}", format::shell_quote(tag)));
    }
    // --- stream history ---
    // The CLI's flag names only the URL (the `default` queue delivers it); a callback on
    // another queue is in the curl body only.
    if let Some(on_finish) = job
        .metadata
        .on_finish
        .as_ref()
        .filter(|on_finish| on_finish.queue.is_none())
    {
        cli.push_str(&format!(
            " --on-finish {}",
            format::shell_quote(&on_finish.url)
        ));
    }
    let mut body = serde_json::json!({
        "kind": job.kind,
        "args": job.args,
        "queue": job.queue,
        "priority": job.priority.0,
        "max_attempts": job.max_attempts,
    });
    if let Some(tenant) = &job.tenant {
        body["tenant"] = serde_json::json!(tenant);
    }
    if let Some(on_finish) = &job.metadata.on_finish {
        body["on_finish"] = serde_json::json!(on_finish);
    }
    if job.metadata.correlation_id.is_some() || !job.metadata.tags.is_empty() {
        body["metadata"] = serde_json::json!({
            "correlation_id": job.metadata.correlation_id,
            "tags": job.metadata.tags,
        });
    }
    let curl = format!(
        "curl -X POST {base_url}/v1/jobs \\\n  -H 'content-type: application/json' \\\n  -H \"authorization: Bearer $STOKER_TOKEN\" \\\n  -d {}",
        format::shell_quote(&body.to_string())
    );
    (cli, curl)
}

pub(crate) async fn job(
    State(dash): State<Dash>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
) -> Result<Response, DashError> {
    let Ok(id) = id.parse::<i64>().map(JobId) else {
        return Err(DashError::new(
            StatusCode::BAD_REQUEST,
            "Not a job id",
            format!("{id:?} is not a job id (a whole number)."),
        ));
    };
    let client = dash.app.client_for(&viewer.principal);
    let now = client.clock().now();
    let Some(job) = client.get(id).await? else {
        return Err(DashError::new(
            StatusCode::NOT_FOUND,
            "No such job",
            format!("Job {id} does not exist (it may have been pruned or deleted)."),
        ));
    };
    let logs = client.job_logs(id).await?;
    let mut facts = vec![
        Fact {
            label: "Priority",
            value: job.priority.0.to_string(),
            href: String::new(),
            when: None,
        },
        Fact {
            label: "Attempts",
            value: format!("{} of {}", job.attempt, job.max_attempts),
            href: String::new(),
            when: None,
        },
        Fact {
            label: "Created",
            value: String::new(),
            href: String::new(),
            when: Some(When::new(job.created_at, now)),
        },
        Fact {
            label: "Run at",
            value: String::new(),
            href: String::new(),
            when: Some(When::new(job.run_at, now)),
        },
    ];
    let mut push = |label, value: Option<String>, href: String| {
        if let Some(value) = value {
            facts.push(Fact {
                label,
                value,
                href,
                when: None,
            });
        }
    };
    push("Tenant", job.tenant.clone(), String::new());
    push("Idempotency key", job.unique_key.clone(), String::new());
    push(
        "Correlation id",
        job.metadata.correlation_id.clone(),
        String::new(),
    );
    push(
        "Parent",
        job.metadata.parent_id.map(|p| format!("job {p}")),
        job.metadata
            .parent_id
            .map(|p| format!("/jobs/{p}"))
            .unwrap_or_default(),
    );
    push("Source", job.metadata.source.clone(), String::new());
    // --- stream history ---
    push(
        "On finish",
        job.metadata
            .on_finish
            .as_ref()
            .map(|on_finish| match &on_finish.queue {
                Some(queue) => format!("POST {} (from queue {queue})", on_finish.url),
                None => format!("POST {}", on_finish.url),
            }),
        String::new(),
    );
    push(
        "Tags",
        (!job.metadata.tags.is_empty()).then(|| job.metadata.tags.join(", ")),
        String::new(),
    );
    push("Worker", job.worker_id.clone(), String::new());
    push(
        "Timeout",
        job.timeout_ms.map(|ms| format::millis(ms.max(0) as u64)),
        String::new(),
    );
    if let Some(cron) = &job.metadata.cron {
        push("Schedule", Some(cron.name.clone()), "/cron".to_owned());
    }
    for (label, at) in [
        ("Last attempt", job.attempted_at),
        ("Finished", job.finished_at),
        ("Cancel asked", job.cancel_requested_at),
    ] {
        if let Some(at) = at {
            facts.push(Fact {
                label,
                value: String::new(),
                href: String::new(),
                when: Some(When::new(at, now)),
            });
        }
    }
    // --- stream workflows ---
    // A parent that waits for its children (issue 18): how many are pending, and how its
    // children stand.
    if let Some(wait) = client.job_children(id).await? {
        let s = wait.states;
        let mut value = format!(
            "{} pending of {} ({} completed, {} failed",
            wait.pending,
            s.total(),
            s.completed,
            s.discarded + s.cancelled
        );
        if wait.failed > 0 {
            value.push_str(&format!(
                ", {} under cancel: this job is cancelled",
                wait.failed
            ));
        }
        value.push(')');
        facts.push(Fact {
            label: "Waits for children",
            value,
            href: format!("/jobs?q={}", encode(&format!("parent:{id}"))),
            when: None,
        });
    }
    let attempts: Vec<AttemptView> = stoker::attempt_timeline(&job)
        .into_iter()
        .rev()
        .map(|entry| {
            let (outcome, class) = match entry.outcome {
                stoker::AttemptOutcome::Failed => ("failed", "bad"),
                stoker::AttemptOutcome::Running => ("running", "live"),
                stoker::AttemptOutcome::Completed => ("completed", "good"),
                stoker::AttemptOutcome::Cancelled => ("cancelled", "muted"),
            };
            let at = entry
                .ended_at
                .or(entry.started_at)
                .unwrap_or(job.created_at);
            let took = match (entry.started_at, entry.ended_at) {
                (Some(from), Some(to)) if to >= from => {
                    format!(
                        "ran {}",
                        format::millis((to - from).num_milliseconds() as u64)
                    )
                }
                (Some(_), None) => format!("on {}", job.worker_id.as_deref().unwrap_or("a worker")),
                _ => String::new(),
            };
            let (kind, message, backtrace) = match entry.error {
                Some(error) => (
                    error_kind(error.kind).to_owned(),
                    error.message,
                    error.backtrace.unwrap_or_default(),
                ),
                None => (String::new(), String::new(), String::new()),
            };
            AttemptView {
                attempt: entry.attempt.to_string(),
                when: When::new(at, now),
                outcome,
                class,
                kind,
                took,
                message,
                backtrace,
            }
        })
        .collect();
    let lineage = client.lineage(id).await?;
    let (parent, children, more_children) = match lineage {
        Some(lineage) => (
            lineage.parent.map(|p| job_item(&p, now)),
            lineage
                .children
                .iter()
                .map(|child| job_item(child, now))
                .collect(),
            lineage.more_children,
        ),
        None => (None, Vec::new(), false),
    };
    let base_url = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(|host| format!("http://{host}"))
        .unwrap_or_else(|| "http://127.0.0.1:7700".to_owned());
    let (cli, curl) = copy_commands(&job, &base_url);
    let (progress, progress_text) = match &job.progress {
        Some(p) => (
            chart::bar(p.fraction, "progress"),
            format!(
                "{:.0}%{}",
                p.fraction * 100.0,
                p.message
                    .as_deref()
                    .map(|m| format!(" — {m}"))
                    .unwrap_or_default()
            ),
        ),
        None => (String::new(), String::new()),
    };
    let finished = matches!(
        job.state,
        JobState::Completed | JobState::Discarded | JobState::Cancelled
    );
    let c = Chrome::new(&viewer, "jobs", format!("Job {id}"), &params)
        .back(format!("/jobs/{id}"))
        .live(if finished {
            String::new()
        } else {
            format!("/ui/live?snapshot=false&job={id}")
        });
    Ok(render(&JobPage {
        c,
        id: id.to_string(),
        kind: job.kind.clone(),
        state: job.state.as_str(),
        queue_href: format!("/queues/{}", encode(&job.queue)),
        queue: job.queue.clone(),
        facts,
        args: format::pretty_json(&job.args),
        has_result: job.result.is_some(),
        result: job
            .result
            .as_ref()
            .map(format::pretty_json)
            .unwrap_or_default(),
        has_progress: job.progress.is_some(),
        progress,
        progress_text,
        attempts,
        parent,
        children_href: if more_children {
            format!("/jobs?q={}", encode(&format!("parent:{id}")))
        } else {
            String::new()
        },
        children,
        logs: logs
            .iter()
            .map(|l| LogView {
                attempt: l.attempt.to_string(),
                when: When::new(l.at, now),
                line: l.line.clone(),
            })
            .collect(),
        cli,
        curl,
        can_retry: finished,
        can_cancel: !finished,
        can_delete: job.state != JobState::Running,
        correlation_href: job
            .metadata
            .correlation_id
            .as_ref()
            .map(|corr| {
                let criteria = JobCriteria {
                    correlation_id: Some(corr.clone()),
                    ..JobCriteria::default()
                };
                format!("/jobs?q={}", encode(&stoker::format_query(&criteria)))
            })
            .unwrap_or_default(),
    }))
}

// --- Failures ---

/// A failure group's row.
pub(crate) struct GroupView {
    pub(crate) fingerprint: String,
    pub(crate) kind: String,
    pub(crate) error_kind: &'static str,
    pub(crate) message: String,
    pub(crate) sample: String,
    pub(crate) sample_href: String,
    pub(crate) count: String,
    pub(crate) first: When,
    pub(crate) last: When,
    pub(crate) spark: String,
    // --- stream ops ---
    /// Its failed attempts in the page's range.
    pub(crate) in_range: String,
    pub(crate) jobs_href: String,
    /// Its jobs failed now (retryable or discarded), a bounded count.
    pub(crate) failing: String,
    pub(crate) none_failing: bool,
}

#[derive(Template)]
#[template(path = "dashboard/failures.html")]
struct FailuresPage {
    c: Chrome,
    groups: Vec<GroupView>,
    // --- stream ops ---
    ranges: &'static [RangeOpt],
    range: &'static str,
    range_label: &'static str,
    spark_title: String,
}

pub(crate) async fn failures(
    State(dash): State<Dash>,
    viewer: Viewer,
    Query(params): Params,
) -> Result<Response, DashError> {
    let client = dash.app.client_for(&viewer.principal);
    let now = client.clock().now();
    // The groups seen in the range (24 hours unless the page asks), those failing most in it
    // first, with their failed attempts per hour: the groups' own hourly counts, one indexed
    // read for every group on the page.
    let range = params
        .get("range")
        .and_then(|key| RANGES.iter().find(|r| r.key == key))
        .unwrap_or(&RANGES[1]);
    let since = now - chrono::Duration::seconds(range.secs as i64);
    let mut groups = client
        .failure_groups(FailureGroupListParams {
            since: Some(since),
            limit: 100,
            ..FailureGroupListParams::default()
        })
        .await?;
    // The sparkline spans the range, or the last day for a shorter one, in at most 24 steps
    // of whole hours (the counts' grain).
    let spark_secs = range.secs.max(86_400) as i64;
    let step = (spark_secs / 24).max(3_600) / 3_600 * 3_600;
    let spark_end = (now.timestamp().div_euclid(3_600) + 1) * 3_600;
    let spark_start = spark_end - step * ((spark_secs + step - 1) / step);
    let hours = client
        .failure_group_hours(
            groups.iter().map(|g| g.fingerprint.clone()).collect(),
            chrono::DateTime::from_timestamp(spark_start, 0)
                .unwrap_or(since)
                .min(since),
            None,
        )
        .await?;
    let mut in_range: BTreeMap<&str, i64> = BTreeMap::new();
    let mut sparks: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let points = ((spark_end - spark_start) / step) as usize;
    for hour in &hours {
        let at = hour.hour.timestamp();
        // The hour holding `since` overlaps the range: counted, as the API counts it.
        if at + 3_600 > since.timestamp() {
            *in_range.entry(&hour.fingerprint).or_default() += hour.count;
        }
        if at >= spark_start {
            let slot = ((at - spark_start) / step) as usize;
            let values = sparks
                .entry(&hour.fingerprint)
                .or_insert_with(|| vec![0.0; points]);
            if let Some(value) = values.get_mut(slot.min(points.saturating_sub(1))) {
                *value += hour.count as f64;
            }
        }
    }
    let in_range: BTreeMap<String, i64> = in_range
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let sparks: BTreeMap<String, String> = sparks
        .into_iter()
        .map(|(k, v)| (k.to_owned(), chart::sparkline(&v, "s-failed")))
        .collect();
    groups.sort_by_key(|g| std::cmp::Reverse(in_range.get(&g.fingerprint).copied().unwrap_or(0)));
    let flat = chart::sparkline(&vec![0.0; points], "s-failed");
    let spark_title = format!(
        "failed attempts per {}, last {}",
        format::seconds(step as u64),
        format::seconds((spark_end - spark_start) as u64)
    );
    // How many of each group's jobs are failed now: what a retry or discard would act on.
    let mut failing = Vec::with_capacity(groups.len());
    for group in &groups {
        let count = client
            .count(JobCriteria {
                failure_group: Some(group.fingerprint.clone()),
                states: StateView::FAILED.to_vec(),
                ..JobCriteria::default()
            })
            .await?;
        failing.push(count);
    }
    let c = Chrome::new(&viewer, "failures", "Failures", &params)
        .back(format!("/failures?range={}", range.key));
    Ok(render(&FailuresPage {
        c,
        ranges: RANGES,
        range: range.key,
        range_label: range.label,
        spark_title,
        groups: groups
            .into_iter()
            .zip(failing)
            .map(|(g, failing)| GroupView {
                none_failing: failing.count == 0,
                failing: count_text(failing),
                spark: sparks
                    .get(&g.fingerprint)
                    .cloned()
                    .unwrap_or_else(|| flat.clone()),
                in_range: format::count(in_range.get(&g.fingerprint).copied().unwrap_or(0)),
                jobs_href: format!(
                    "/jobs?q={}",
                    encode(&format!("group:{} state:failed", g.fingerprint))
                ),
                sample_href: format!("/jobs/{}", g.sample_job_id),
                sample: g.sample_message,
                error_kind: error_kind(g.error_kind),
                message: g.message,
                count: format::count(g.count),
                first: When::new(g.first_seen, now),
                last: When::new(g.last_seen, now),
                kind: g.kind,
                fingerprint: g.fingerprint,
            })
            .collect(),
    }))
}

// --- Workers ---

/// A worker's row.
pub(crate) struct WorkerView {
    pub(crate) id: String,
    pub(crate) host: String,
    pub(crate) pid: String,
    pub(crate) version: String,
    pub(crate) queues: String,
    pub(crate) concurrency: String,
    pub(crate) in_flight: String,
    pub(crate) heartbeat: When,
    pub(crate) state: &'static str,
    pub(crate) done: String,
    pub(crate) failed: String,
    pub(crate) mean: String,
    pub(crate) started: When,
}

#[derive(Template)]
#[template(path = "dashboard/workers.html")]
struct WorkersPage {
    c: Chrome,
    workers: Vec<WorkerView>,
    alive: usize,
    stale: usize,
}

pub(crate) async fn workers(
    State(dash): State<Dash>,
    viewer: Viewer,
    Query(params): Params,
) -> Result<Response, DashError> {
    let client = dash.app.client_for(&viewer.principal);
    let now = client.clock().now();
    let mut list = client.worker_overview().await?;
    list.sort_by(|a, b| {
        b.alive
            .cmp(&a.alive)
            .then(b.worker.heartbeat_at.cmp(&a.worker.heartbeat_at))
    });
    let alive = list.iter().filter(|w| w.alive).count();
    let c = Chrome::new(&viewer, "workers", "Workers", &params);
    Ok(render(&WorkersPage {
        c,
        stale: list.len() - alive,
        alive,
        workers: list
            .iter()
            .map(|w| WorkerView {
                id: w.worker.id.clone(),
                host: w.worker.host.clone(),
                pid: w.worker.pid.to_string(),
                version: w
                    .worker
                    .details
                    .as_ref()
                    .and_then(|d| d.version.clone())
                    .unwrap_or_else(|| "—".to_owned()),
                queues: w.worker.queues.join(", "),
                concurrency: w.worker.concurrency.to_string(),
                in_flight: w
                    .worker
                    .details
                    .as_ref()
                    .map_or("—".to_owned(), |d| d.running.len().to_string()),
                heartbeat: When::new(w.worker.heartbeat_at, now),
                state: w.state().as_str(),
                done: format::count(w.worker.jobs_done),
                failed: format::count(w.worker.jobs_failed),
                mean: w.mean_run_ms().map_or("—".to_owned(), format::millis),
                started: When::new(w.worker.started_at, now),
            })
            .collect(),
    }))
}

// --- Operations ---

/// A bulk operation's row.
pub(crate) struct OpView {
    pub(crate) id: String,
    pub(crate) href: String,
    pub(crate) action: &'static str,
    pub(crate) filter: String,
    pub(crate) state: &'static str,
    pub(crate) running: bool,
    pub(crate) bar: String,
    pub(crate) percent: String,
    pub(crate) matched: String,
    pub(crate) done: String,
    pub(crate) skipped: String,
    pub(crate) created: When,
    pub(crate) by: String,
}

fn fraction(op: &BulkOpRow) -> f64 {
    match op.state {
        BulkOpState::Done => 1.0,
        _ if op.max_id <= 0 => 0.0,
        _ => (op.cursor as f64 / op.max_id as f64).clamp(0.0, 1.0),
    }
}

fn filter_text(op: &BulkOpRow) -> String {
    let query = stoker::format_query(&op.filter);
    if query.is_empty() {
        "every job".to_owned()
    } else {
        query
    }
}

fn op_view(op: &BulkOpRow, now: DateTime<Utc>) -> OpView {
    let fraction = fraction(op);
    OpView {
        id: op.id.to_string(),
        href: format!("/ops/{}", op.id),
        action: op.action.as_str(),
        filter: filter_text(op),
        state: op.state.as_str(),
        running: op.state == BulkOpState::Running,
        bar: chart::bar(fraction, op.state.as_str()),
        percent: format!("{:.0}%", fraction * 100.0),
        matched: format::count(op.matched),
        done: format::count(op.done),
        skipped: format::count(op.skipped),
        created: When::new(op.created_at, now),
        by: op.created_by.clone().unwrap_or_else(|| "—".to_owned()),
    }
}

/// An alert rule's row.
pub(crate) struct AlertView {
    pub(crate) name: String,
    pub(crate) condition: String,
    pub(crate) scope: String,
    pub(crate) state: &'static str,
    pub(crate) since: Option<When>,
    pub(crate) value: String,
}

/// A number as an alert shows it: whole when it is, else three decimals at most.
fn alert_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

async fn alert_views(client: &Client, now: DateTime<Utc>) -> Result<Vec<AlertView>, DashError> {
    let rows = client.alert_list().await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let rule = &row.rule;
            let mut scope = Vec::new();
            if let Some(queue) = &rule.scope.queue {
                scope.push(format!("queue {queue}"));
            }
            if let Some(kind) = &rule.scope.kind {
                scope.push(format!("kind {kind}"));
            }
            if let Some(tenant) = &rule.scope.tenant {
                scope.push(format!("tenant {tenant}"));
            }
            AlertView {
                condition: format!(
                    "{} {} {} over {}",
                    rule.metric.as_str(),
                    if rule.metric.fires_below() { "<" } else { ">" },
                    alert_number(rule.threshold),
                    format::seconds(rule.window_seconds)
                ),
                scope: if scope.is_empty() {
                    "every queue".to_owned()
                } else {
                    scope.join(", ")
                },
                state: row.status.state.as_str(),
                since: row.status.since.map(|at| When::new(at, now)),
                value: row.status.value.map(alert_number).unwrap_or_default(),
                name: rule.name.clone(),
            }
        })
        .collect())
}

#[derive(Template)]
#[template(path = "dashboard/ops.html")]
struct OpsPage {
    c: Chrome,
    ops: Vec<OpView>,
    alerts: Vec<AlertView>,
}

pub(crate) async fn ops(
    State(dash): State<Dash>,
    viewer: Viewer,
    Query(params): Params,
) -> Result<Response, DashError> {
    let client = dash.app.client_for(&viewer.principal);
    let now = client.clock().now();
    let list = client
        .bulk_ops(BulkOpListParams {
            limit: 100,
            ..BulkOpListParams::default()
        })
        .await?;
    let alerts = alert_views(&client, now).await?;
    let c = Chrome::new(&viewer, "ops", "Operations and alerts", &params).back("/ops");
    Ok(render(&OpsPage {
        c,
        ops: list.iter().map(|op| op_view(op, now)).collect(),
        alerts,
    }))
}

#[derive(Template)]
#[template(path = "dashboard/op.html")]
struct OpPage {
    c: Chrome,
    op: OpView,
    finished: String,
}

async fn find_op(client: &Client, id: &str) -> Result<BulkOpRow, DashError> {
    let not_found = || {
        DashError::new(
            StatusCode::NOT_FOUND,
            "No such operation",
            format!("There is no bulk operation {id:?}."),
        )
    };
    let id: i64 = id.parse().map_err(|_| not_found())?;
    client.bulk_op(id).await?.ok_or_else(not_found)
}

pub(crate) async fn op(
    State(dash): State<Dash>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(params): Params,
) -> Result<Response, DashError> {
    let client = dash.app.client_for(&viewer.principal);
    let now = client.clock().now();
    let op = find_op(&client, &id).await?;
    let c = Chrome::new(&viewer, "ops", format!("Operation {}", op.id), &params)
        .back(format!("/ops/{}", op.id));
    Ok(render(&OpPage {
        c,
        finished: op
            .finished_at
            .map(|at| format!("{} UTC", format::utc(at)))
            .unwrap_or_default(),
        op: op_view(&op, now),
    }))
}

/// `GET /ui/ops/{id}/progress`: where an operation is, for the page's script.
pub(crate) async fn op_progress(
    State(dash): State<Dash>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, DashError> {
    let client = dash.app.client_for(&viewer.principal);
    let op = find_op(&client, &id).await?;
    let fraction = fraction(&op);
    Ok(Json(serde_json::json!({
        "state": op.state.as_str(),
        "matched": format::count(op.matched),
        "done": format::count(op.done),
        "skipped": format::count(op.skipped),
        "percent": format!("{:.0}%", fraction * 100.0),
        "fraction": fraction,
    }))
    .into_response())
}

// --- Cron ---

/// A schedule's row.
pub(crate) struct CronView {
    pub(crate) name: String,
    pub(crate) expr: String,
    pub(crate) tz: String,
    pub(crate) kind: String,
    pub(crate) queue: String,
    pub(crate) enabled: bool,
    pub(crate) next: When,
    pub(crate) last: Option<When>,
}

#[derive(Template)]
#[template(path = "dashboard/cron.html")]
struct CronPage {
    c: Chrome,
    schedules: Vec<CronView>,
}

pub(crate) async fn cron(
    State(dash): State<Dash>,
    viewer: Viewer,
    Query(params): Params,
) -> Result<Response, DashError> {
    let client = dash.app.client_for(&viewer.principal);
    let now = client.clock().now();
    let list = client.cron_list().await?;
    let c = Chrome::new(&viewer, "cron", "Cron", &params).back("/cron");
    Ok(render(&CronPage {
        c,
        schedules: list
            .into_iter()
            .map(|row| CronView {
                next: When::new(row.next_slot, now),
                last: row.last_slot.map(|at| When::new(at, now)),
                name: row.schedule.name,
                expr: row.schedule.expr,
                tz: row.schedule.tz,
                kind: row.schedule.kind,
                queue: row.schedule.queue,
                enabled: row.schedule.enabled,
            })
            .collect(),
    }))
}

// --- Login and errors ---

#[derive(Template)]
#[template(path = "dashboard/login.html")]
struct LoginPage {
    css: String,
    icon: String,
    js: String,
    next: String,
    message: String,
}

/// The login form, with a message when a sign-in was refused.
pub(crate) fn login_form(status: StatusCode, next: &str, message: &str) -> Response {
    let mut response = render(&LoginPage {
        css: super::asset_url(0),
        js: super::asset_url(1),
        icon: super::asset_url(2),
        next: next.to_owned(),
        message: message.to_owned(),
    });
    *response.status_mut() = status;
    response
}

/// `GET /login`.
pub(crate) async fn login(State(dash): State<Dash>, Query(params): Params) -> Response {
    let next = super::session::local_path(params.get("next").map(String::as_str));
    if !crate::auth::auth_required(&dash.app).await.unwrap_or(true) {
        return super::session::see_other(&next);
    }
    login_form(StatusCode::OK, &next, "")
}

#[derive(Template)]
#[template(path = "dashboard/error.html")]
struct ErrorPage<'a> {
    css: String,
    icon: String,
    status: u16,
    title: &'a str,
    message: &'a str,
}

/// A page that says what went wrong.
pub(crate) fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let mut response = render(&ErrorPage {
        css: super::asset_url(0),
        icon: super::asset_url(2),
        status: status.as_u16(),
        title,
        message,
    });
    *response.status_mut() = status;
    response
}

// --- stream wf ---
// --- Workflows (issue 18) ---

#[derive(Template)]
#[template(path = "dashboard/workflow.html")]
struct WorkflowPage {
    c: Chrome,
    id: i64,
    name: String,
    state: String,
    counts: String,
    result: String,
    graph: String,
    jobs: Vec<WorkflowJobLine>,
}

/// One job of the workflow page's table.
struct WorkflowJobLine {
    id: i64,
    name: String,
    kind: String,
    state: &'static str,
    waits: String,
}

/// A workflow: its state and counts, its graph drawn in layers (as `stoker workflows show`),
/// and its jobs, each linking to the job page.
pub(crate) async fn workflow(
    State(dash): State<Dash>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(params): Params,
) -> Result<Response, DashError> {
    let Ok(id) = id.parse::<i64>() else {
        return Err(DashError::new(
            StatusCode::BAD_REQUEST,
            "Not a workflow id",
            format!("{id:?} is not a workflow id (a whole number)."),
        ));
    };
    let client = dash.app.client_for(&viewer.principal);
    let workflow_id = stoker::WorkflowId(id);
    let Some(row) = client.workflow(workflow_id).await? else {
        return Err(DashError::new(
            StatusCode::NOT_FOUND,
            "No such workflow",
            format!("Workflow {id} does not exist."),
        ));
    };
    let jobs = client.workflow_jobs(workflow_id).await?;
    let view = crate::api::workflows::view(row, jobs);
    let graph = crate::cli::draw_workflow(&view);
    let names: HashMap<i64, String> = view
        .jobs
        .iter()
        .map(|job| (job.id, job.name.clone()))
        .collect();
    let counts = view.counts;
    let c = Chrome::new(&viewer, "workflows", format!("Workflow {id}"), &params)
        .back(format!("/workflows/{id}"));
    Ok(render(&WorkflowPage {
        c,
        id,
        name: view.name.clone(),
        state: serde_json::to_value(view.state)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default(),
        counts: format!(
            "{} blocked, {} waiting, {} running, {} retrying, {} completed, {} discarded, {} cancelled",
            counts.blocked,
            counts.available,
            counts.running,
            counts.retryable,
            counts.completed,
            counts.discarded,
            counts.cancelled
        ),
        result: view
            .result
            .as_ref()
            .map(|result| result.to_string())
            .unwrap_or_default(),
        graph,
        jobs: view
            .jobs
            .iter()
            .map(|job| WorkflowJobLine {
                id: job.id,
                name: job.name.clone(),
                kind: job.kind.clone(),
                state: job.state.as_str(),
                waits: job
                    .depends_on
                    .iter()
                    .map(|edge| {
                        names
                            .get(&edge.id)
                            .cloned()
                            .unwrap_or_else(|| format!("#{}", edge.id))
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabs_keep_the_rest_of_the_query() {
        let criteria = JobCriteria {
            states: vec![StateView::Running],
            queues: vec!["mail".to_owned()],
            ..JobCriteria::default()
        };
        assert_eq!(
            query_with_states(&criteria, &[StateView::Available, StateView::Scheduled]),
            "state:available,scheduled queue:mail"
        );
        assert_eq!(query_with_states(&criteria, &[]), "queue:mail");
    }
}

// --- stream flow ---
/// One limit on the Limits page, with its limiters in use.
pub(crate) struct LimitPageView {
    pub(crate) name: String,
    pub(crate) scope: String,
    pub(crate) key: String,
    pub(crate) rate: String,
    pub(crate) concurrency: String,
    pub(crate) limiters: Vec<LimiterPageView>,
}

/// One limiter in use: its key, running jobs, and until when it is throttled.
pub(crate) struct LimiterPageView {
    pub(crate) key: String,
    pub(crate) running: String,
    pub(crate) throttled: Option<When>,
    // --- stream flow ---
    /// Starts its rate allows now, as "3 of 10 tokens", if the limit has a rate.
    pub(crate) tokens: Option<String>,
    /// When its rate next allows a start, if none now.
    pub(crate) next_token: Option<When>,
    /// Its quota's use in the window, as "40 of 100 submissions", if it has a quota.
    pub(crate) quota: Option<String>,
    /// Jobs waiting because of it, as "1,200" or "10,000+"; `None` when it holds none.
    pub(crate) held_back: Option<String>,
}

#[derive(Template)]
#[template(path = "dashboard/limits.html")]
struct LimitsPage {
    c: Chrome,
    limits: Vec<LimitPageView>,
}

/// `GET /limits`: the flow-control limits (issue 16) and the limiters in use now: running
/// jobs against each concurrency limit, and the rate limiters holding jobs back.
// --- stream dash ---
/// A rate's period as people say it: "minute" for 60,000 ms, else its length ("1.5 s").
fn per_period(ms: u64) -> String {
    match ms {
        1_000 => "second".to_owned(),
        60_000 => "minute".to_owned(),
        3_600_000 => "hour".to_owned(),
        86_400_000 => "day".to_owned(),
        other => format::millis(other),
    }
}

pub(crate) async fn limits(
    State(dash): State<Dash>,
    viewer: Viewer,
    Query(params): Params,
) -> Result<Response, DashError> {
    let client = dash.app.client_for(&viewer.principal);
    let now = client.clock().now();
    let rows = client.limits().await?;
    let usage = client.limit_usage().await?;
    let c = Chrome::new(&viewer, "limits", "Limits", &params).back("/limits");
    let limits = rows
        .into_iter()
        .map(|row| {
            let spec = row.spec;
            let scope = match (&spec.queue, &spec.kind) {
                (None, None) => "every job".to_owned(),
                (Some(queue), None) => format!("queue {queue}"),
                (None, Some(kind)) => format!("kind {kind}"),
                (Some(queue), Some(kind)) => format!("kind {kind} in queue {queue}"),
            };
            let limiters = usage
                .iter()
                .filter(|limiter| limiter.name == spec.name)
                .map(|limiter| LimiterPageView {
                    key: if limiter.key.is_empty() {
                        "(all)".to_owned()
                    } else {
                        limiter.key.clone()
                    },
                    running: match spec.concurrency {
                        Some(max) => format!("{} of {max}", limiter.running),
                        None => "—".to_owned(),
                    },
                    throttled: limiter.throttled_until.map(|at| When::new(at, now)),
                    tokens: spec.rate.and_then(|rate| {
                        limiter
                            .tokens_left
                            .map(|left| format!("{left} of {} tokens", rate.burst))
                    }),
                    next_token: limiter.next_token_at.map(|at| When::new(at, now)),
                    quota: spec.quota.and_then(|quota| {
                        limiter
                            .quota_used
                            .map(|used| format!("{used} of {} submissions", quota.burst))
                    }),
                    held_back: (limiter.held_back > 0 || limiter.held_back_more).then(|| {
                        format!(
                            "{}{}",
                            format::count(i64::try_from(limiter.held_back).unwrap_or(i64::MAX)),
                            if limiter.held_back_more { "+" } else { "" }
                        )
                    }),
                })
                .collect();
            LimitPageView {
                scope,
                key: spec.key.to_string(),
                rate: spec.rate.map_or_else(
                    || "—".to_owned(),
                    // --- stream dash ---
                    |rate| {
                        let burst = if rate.burst > 1 {
                            format!(", bursts of {}", format::count(i64::from(rate.burst)))
                        } else {
                            String::new()
                        };
                        format!(
                            "{} per {}{burst}",
                            format::count(i64::from(rate.count)),
                            per_period(rate.period_ms)
                        )
                    },
                ),
                concurrency: spec
                    .concurrency
                    .map_or_else(|| "—".to_owned(), |max| max.to_string()),
                name: spec.name,
                limiters,
            }
        })
        .collect();
    Ok(render(&LimitsPage { c, limits }))
}
