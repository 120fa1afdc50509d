//! Alert rules through the runtime (issue 13, item 8): the evaluator on a stub clock, on every
//! store. A rule fires once after its hold and resolves once after its resolve delay; a value
//! that flaps sends nothing; a second evaluator (a new leader, or two at once) never sends a
//! change twice; windowed metrics read the history, never the jobs.

mod common;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use stoker::alerts::{
    AlertBaseline, AlertEvaluator, AlertEvaluatorConfig, AlertEventKind, AlertFormat, AlertMetric,
    AlertRule, AlertState,
};
use stoker::core::{HistoryDelta, HistoryMetric, HistoryRecordParams};
use stoker::{Client, Clock, Error, JobFilter, JobRow, Store, StubClock};

fn start() -> DateTime<Utc> {
    "2030-01-01T00:00:30Z".parse().unwrap()
}

struct Setup {
    clock: StubClock,
    client: Client,
    store: Arc<dyn Store>,
}

fn setup(store: Arc<dyn Store>) -> Setup {
    let clock = StubClock::new(start());
    let client = Client::new(Arc::clone(&store)).with_clock(Arc::new(clock.clone()));
    Setup {
        clock,
        client,
        store,
    }
}

fn evaluator(setup: &Setup) -> AlertEvaluator {
    AlertEvaluator::new(
        setup.client.clone(),
        AlertEvaluatorConfig {
            queue: "alerts".into(),
            ..AlertEvaluatorConfig::default()
        },
    )
}

/// The delivery jobs queued so far, oldest first.
async fn messages(client: &Client) -> Vec<JobRow> {
    let mut jobs = client
        .list(&JobFilter::new().queue("alerts").limit(1000))
        .await
        .unwrap()
        .jobs;
    jobs.reverse();
    jobs
}

fn message_type(job: &JobRow) -> String {
    job.args["body"]["type"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn depth_rule() -> AlertRule {
    let mut rule = AlertRule::new(
        "mail-backlog",
        AlertMetric::QueueDepth,
        2.0,
        "http://127.0.0.1:9/hook",
    );
    rule.scope.queue = Some("mail".into());
    rule.for_seconds = 60;
    rule.resolve_seconds = 30;
    rule
}

async fn enqueue_mail(client: &Client, n: usize) -> Vec<stoker::JobId> {
    let mut ids = Vec::new();
    for i in 0..n {
        let opts = stoker::EnqueueOptions::new().queue("mail");
        ids.push(
            client
                .enqueue_raw("send", json!({ "i": i }), opts)
                .await
                .unwrap()
                .id,
        );
    }
    ids
}

mod scenarios {
    use super::*;

    /// Pending, then firing once after `for_seconds`; a later pass sends nothing more; clear
    /// for less than `resolve_seconds` keeps it firing; then one resolved message.
    pub async fn fires_once_and_resolves_once(store: Arc<dyn Store>) {
        let s = setup(store);
        let evaluator = evaluator(&s);
        s.client.alert_create(depth_rule()).await.unwrap();
        let ids = enqueue_mail(&s.client, 5).await;

        let report = evaluator.run_once().await.unwrap();
        assert_eq!((report.evaluated, report.fired), (1, 0));
        let row = s.client.alert_get("mail-backlog").await.unwrap();
        assert_eq!(row.status.state, AlertState::Pending);
        assert!(messages(&s.client).await.is_empty());

        s.clock.advance(Duration::seconds(30));
        evaluator.run_once().await.unwrap();
        assert!(messages(&s.client).await.is_empty(), "not held long enough");

        s.clock.advance(Duration::seconds(30));
        assert_eq!(evaluator.run_once().await.unwrap().fired, 1);
        for _ in 0..3 {
            s.clock.advance(Duration::seconds(10));
            assert_eq!(evaluator.run_once().await.unwrap().fired, 0);
        }
        let sent = messages(&s.client).await;
        assert_eq!(sent.len(), 1, "one message per change");
        assert_eq!(message_type(&sent[0]), "alert.firing");
        assert_eq!(sent[0].kind, "webhook");
        assert_eq!(sent[0].args["url"], "http://127.0.0.1:9/hook");
        assert_eq!(sent[0].args["body"]["value"], 5.0);
        assert_eq!(sent[0].args["body"]["scope"]["queue"], "mail");

        // The backlog drains: clear, but not yet for 30 s.
        for id in ids {
            s.client.delete(id).await.unwrap();
        }
        s.clock.advance(Duration::seconds(10));
        evaluator.run_once().await.unwrap();
        s.clock.advance(Duration::seconds(20));
        evaluator.run_once().await.unwrap();
        assert_eq!(
            s.client
                .alert_get("mail-backlog")
                .await
                .unwrap()
                .status
                .state,
            AlertState::Firing
        );
        s.clock.advance(Duration::seconds(10));
        assert_eq!(evaluator.run_once().await.unwrap().resolved, 1);
        s.clock.advance(Duration::seconds(10));
        evaluator.run_once().await.unwrap();
        let sent = messages(&s.client).await;
        assert_eq!(
            sent.iter().map(message_type).collect::<Vec<_>>(),
            ["alert.firing", "alert.resolved"]
        );
        let events = s.client.alert_events("mail-backlog", 10).await.unwrap();
        assert_eq!(
            events.iter().map(|e| e.kind).collect::<Vec<_>>(),
            [AlertEventKind::Resolved, AlertEventKind::Firing]
        );
        assert_eq!(events[1].job_id, Some(sent[0].id));
        let row = s.client.alert_get("mail-backlog").await.unwrap();
        assert_eq!(row.status.state, AlertState::Ok);
    }

    /// A backlog that comes and goes faster than `for_seconds` never fires.
    pub async fn flapping_sends_nothing(store: Arc<dyn Store>) {
        let s = setup(store);
        let evaluator = evaluator(&s);
        s.client.alert_create(depth_rule()).await.unwrap();
        for _ in 0..6 {
            let ids = enqueue_mail(&s.client, 3).await;
            evaluator.run_once().await.unwrap();
            s.clock.advance(Duration::seconds(20));
            evaluator.run_once().await.unwrap();
            for id in ids {
                s.client.delete(id).await.unwrap();
            }
            s.clock.advance(Duration::seconds(20));
            evaluator.run_once().await.unwrap();
        }
        assert!(messages(&s.client).await.is_empty());
    }

    /// A new leader reads the state its predecessor left: no second firing message. Two
    /// evaluators at once send each change once.
    pub async fn another_evaluator_never_resends(store: Arc<dyn Store>) {
        let s = setup(store);
        let mut rule = depth_rule();
        rule.for_seconds = 0;
        s.client.alert_create(rule).await.unwrap();
        enqueue_mail(&s.client, 3).await;
        let (a, b) = (evaluator(&s), evaluator(&s));
        let (ra, rb) = tokio::join!(a.run_once(), b.run_once());
        let fired = ra.unwrap().fired + rb.unwrap().fired;
        assert_eq!(fired, 1);
        // The old leader is gone; a new one takes over.
        let successor = evaluator(&s);
        s.clock.advance(Duration::seconds(5));
        assert_eq!(successor.run_once().await.unwrap().fired, 0);
        assert_eq!(messages(&s.client).await.len(), 1);
    }

    /// Failure rate, discarded and throughput read the per-minute history; a Slack rule posts
    /// `{"text"}`; a throughput baseline without data sends nothing.
    pub async fn windowed_metrics_read_the_history(store: Arc<dyn Store>) {
        let s = setup(store);
        let evaluator = evaluator(&s);
        let minute = start() - Duration::seconds(30);
        let delta = |metric, value, kind: &str, at: DateTime<Utc>| HistoryDelta {
            minute: at,
            queue: "mail".into(),
            kind: kind.into(),
            tenant: None,
            metric,
            value,
        };
        s.store
            .history_record(HistoryRecordParams {
                deltas: vec![
                    delta(HistoryMetric::Completed, 6, "send", minute),
                    delta(HistoryMetric::Failed, 4, "send", minute),
                    delta(HistoryMetric::Discarded, 1, "render", minute),
                    // Outside a 5-minute window: not counted.
                    delta(
                        HistoryMetric::Failed,
                        100,
                        "send",
                        minute - Duration::hours(1),
                    ),
                    // A day earlier: the baseline.
                    delta(
                        HistoryMetric::Completed,
                        60,
                        "send",
                        minute - Duration::days(1),
                    ),
                ],
            })
            .await
            .unwrap();

        let mut rate = AlertRule::new("rate", AlertMetric::FailureRate, 0.3, "http://x.test/a");
        rate.scope.kind = Some("send".into());
        rate.format = AlertFormat::Slack;
        s.client.alert_create(rate).await.unwrap();
        let mut discarded = AlertRule::new(
            "dead-render",
            AlertMetric::Discarded,
            0.0,
            "http://x.test/b",
        );
        discarded.scope.kind = Some("render".into());
        s.client.alert_create(discarded).await.unwrap();
        let mut slow = AlertRule::new("slow", AlertMetric::Throughput, 0.5, "http://x.test/c");
        slow.baseline = Some(AlertBaseline::Day);
        s.client.alert_create(slow).await.unwrap();
        let mut weekly = AlertRule::new("weekly", AlertMetric::Throughput, 0.5, "http://x.test/d");
        weekly.baseline = Some(AlertBaseline::Week);
        s.client.alert_create(weekly).await.unwrap();
        let quiet = AlertRule::new(
            "quiet-ok",
            AlertMetric::FailureCount,
            10.0,
            "http://x.test/e",
        );
        s.client.alert_create(quiet).await.unwrap();

        let report = evaluator.run_once().await.unwrap();
        assert_eq!(report.evaluated, 5);
        assert_eq!(report.fired, 3, "{report}");
        assert_eq!(report.skipped, 1, "no weekly baseline yet: {report}");
        let sent = messages(&s.client).await;
        let by_url = |url: &str| {
            sent.iter()
                .find(|job| job.args["url"] == url)
                .unwrap_or_else(|| panic!("no message to {url}: {sent:#?}"))
        };
        let text = by_url("http://x.test/a").args["body"]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(text.contains("[FIRING] rate"), "{text}");
        assert!(text.contains("kind=send"), "{text}");
        assert_eq!(by_url("http://x.test/b").args["body"]["value"], 1.0);
        // 6 completed now against 60 a day ago.
        let ratio = by_url("http://x.test/c").args["body"]["value"]
            .as_f64()
            .unwrap();
        assert!((ratio - 0.1).abs() < 1e-9, "{ratio}");
    }

    /// No live worker for a queue fires; a worker's heartbeat resolves it.
    pub async fn no_worker_follows_the_registry(store: Arc<dyn Store>) {
        let s = setup(store);
        let evaluator = evaluator(&s);
        let mut rule = AlertRule::new(
            "mail-workers",
            AlertMetric::NoWorker,
            1.0,
            "http://x.test/w",
        );
        rule.scope.queue = Some("mail".into());
        s.client.alert_create(rule).await.unwrap();
        assert_eq!(evaluator.run_once().await.unwrap().fired, 1);
        s.store
            .worker_heartbeat(stoker::core::WorkerHeartbeatParams {
                id: "w1".into(),
                host: "h".into(),
                pid: 1,
                queues: vec!["mail".into()],
                concurrency: 1,
                started_at: s.clock.now(),
                done_delta: 0,
                failed_delta: 0,
                running: Vec::new(),
                now: s.clock.now(),
                details: Default::default(),
            })
            .await
            .unwrap();
        assert_eq!(evaluator.run_once().await.unwrap().resolved, 1);
        // Silent past `stale_after`: no longer live.
        s.clock.advance(Duration::seconds(60));
        assert_eq!(evaluator.run_once().await.unwrap().fired, 1);
        assert_eq!(messages(&s.client).await.len(), 3);
    }

    /// Bad rules are refused naming the field, and nothing is written; unknown names are not
    /// found.
    pub async fn bad_rules_write_nothing(store: Arc<dyn Store>) {
        let s = setup(store);
        let field = |err: Error| match err {
            Error::Invalid(input) => input.field,
            other => panic!("expected Invalid, got {other:?}"),
        };
        let mut rule = depth_rule();
        rule.threshold = -3.0;
        assert_eq!(
            field(s.client.alert_create(rule).await.unwrap_err()),
            "threshold"
        );
        let mut rule = AlertRule::new("r", AlertMetric::FailureRate, 0.5, "http://x.test/h");
        rule.window_seconds = 10;
        assert_eq!(
            field(s.client.alert_create(rule).await.unwrap_err()),
            "window_seconds"
        );
        let rule = AlertRule::new("r", AlertMetric::QueueDepth, 1.0, "not a url");
        assert_eq!(field(s.client.alert_create(rule).await.unwrap_err()), "url");
        assert!(s.client.alert_list().await.unwrap().is_empty());
        assert!(matches!(
            s.client.alert_get("nope").await,
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            s.client.alert_events("nope", 10).await,
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            s.client.alert_events("nope", 0).await,
            Err(Error::Invalid(_))
        ));
        // A tenant-bound client cannot manage rules.
        assert!(s
            .client
            .for_tenant("acme")
            .alert_create(depth_rule())
            .await
            .is_err());
        assert!(s.client.alert_list().await.unwrap().is_empty());
    }
}

macro_rules! alert_tests {
    ($factory:path $(, #[$attr:meta])*) => {
        alert_tests!(@each $factory, [$(#[$attr])*],
            fires_once_and_resolves_once,
            flapping_sends_nothing,
            another_evaluator_never_resends,
            windowed_metrics_read_the_history,
            no_worker_follows_the_registry,
            bad_rules_write_nothing,
        );
    };
    (@each $factory:path, $attrs:tt, $($name:ident),* $(,)?) => {
        $( alert_tests!(@one $factory, $attrs, $name); )*
    };
    (@one $factory:path, [$(#[$attr:meta])*], $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$attr])*
        async fn $name() {
            let store: Arc<dyn Store> = $factory().await;
            crate::scenarios::$name(store).await;
        }
    };
}

mod sqlite {
    use super::*;
    alert_tests!(crate::common::sqlite);
}

mod postgres {
    use super::*;
    alert_tests!(
        crate::common::postgres,
        #[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
    );
}
