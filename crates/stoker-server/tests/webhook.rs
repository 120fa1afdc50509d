//! The built-in `webhook` handler against a real HTTP server on 127.0.0.1: retries on 503 and
//! 429 (honouring `Retry-After`), completes on 2xx, discards on other 4xx, and refuses bad
//! args at enqueue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use serde_json::{json, Value};
use stoker::sqlite::SqliteStore;
use stoker::{
    AttemptResult, Client, EnqueueOptions, ErrorKind, JobId, JobRow, JobState, Store, Worker,
    WorkerHandle,
};
use stoker_server::handlers;

/// What the test server saw, and how many requests each route got.
#[derive(Default)]
struct Seen {
    flaky: AtomicUsize,
    requests: Mutex<Vec<(Method, HeaderMap, Bytes)>>,
}

/// `/flaky` fails with 503, then 429, then answers 200; `/missing` is a 404; `/slow` never
/// answers within the test's timeout; `/big` answers 200 with 10 KB.
async fn serve() -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route("/flaky", any(flaky))
        .route("/missing", any(missing))
        .route("/slow", any(slow))
        .route("/big", any(big))
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

async fn flaky(
    State(seen): State<Arc<Seen>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    seen.requests.lock().unwrap().push((method, headers, body));
    match seen.flaky.fetch_add(1, Ordering::SeqCst) {
        0 => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "0")],
            "down for maintenance",
        )
            .into_response(),
        1 => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "slow down",
        )
            .into_response(),
        _ => (StatusCode::CREATED, "{\"accepted\":true}").into_response(),
    }
}

async fn missing() -> Response {
    (StatusCode::NOT_FOUND, "no such hook").into_response()
}

async fn slow() -> Response {
    tokio::time::sleep(Duration::from_secs(30)).await;
    StatusCode::OK.into_response()
}

async fn big() -> Response {
    "x".repeat(10_000).into_response()
}

struct Setup {
    client: Client,
    handle: WorkerHandle,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("stoker.sqlite3"))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let store: Arc<dyn Store> = Arc::new(store);
    let worker = Worker::builder(Arc::clone(&store))
        .queue("default", 4)
        .registry(handlers::builtin())
        .poll_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let client = worker.client();
    let handle = worker.start().await.unwrap();
    Setup {
        client,
        handle,
        _dir: dir,
    }
}

/// Waits for the job's final outcome (completed, discarded or cancelled), up to 20 s.
async fn finished(setup: &Setup, id: JobId) -> JobRow {
    let mut events = setup.handle.events();
    // The job may have finished before we subscribed.
    let job = setup.client.get(id).await.unwrap().unwrap();
    if job.state.is_finished() {
        return job;
    }
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let event = events.recv().await.unwrap();
            if event.id == id
                && matches!(
                    event.result,
                    AttemptResult::Completed | AttemptResult::Discarded | AttemptResult::Cancelled
                )
            {
                break;
            }
        }
    })
    .await
    .expect("the job finishes within 20 s");
    setup.client.get(id).await.unwrap().unwrap()
}

#[tokio::test]
async fn retries_503_and_429_then_completes_on_the_third_attempt() {
    let (base, seen) = serve().await;
    let setup = setup().await;
    let args = json!({
        "url": format!("{base}/flaky"),
        "method": "PUT",
        "headers": {"X-Signature": "sig-1"},
        "body": {"order": 42},
        "timeout_seconds": 5,
    });
    let started = std::time::Instant::now();
    let job = setup
        .client
        .enqueue_raw("webhook", args, EnqueueOptions::new())
        .await
        .unwrap();
    let job = finished(&setup, job.id).await;

    assert_eq!(job.state, JobState::Completed, "{job:#?}");
    assert_eq!(job.attempt, 3);
    assert_eq!(
        job.result,
        Some(json!({"status": 201, "body": "{\"accepted\":true}", "body_truncated": false}))
    );
    assert_eq!(job.errors.len(), 2);
    assert_eq!(job.errors[0].attempt, 1);
    assert_eq!(job.errors[0].kind, ErrorKind::Error);
    assert!(
        job.errors[0]
            .message
            .starts_with("HTTP 503 Service Unavailable: down for maintenance"),
        "{}",
        job.errors[0].message
    );
    assert_eq!(job.errors[1].attempt, 2);
    assert!(
        job.errors[1]
            .message
            .starts_with("HTTP 429 Too Many Requests: slow down"),
        "{}",
        job.errors[1].message
    );
    // Retry-After: 0 then 1 second, not the default backoff (2 s, then 4 s).
    let waited = job.errors[1].at - job.errors[0].at;
    assert!(waited < chrono::Duration::milliseconds(1500), "{waited}");
    let waited = job.finished_at.unwrap() - job.errors[1].at;
    assert!(waited >= chrono::Duration::milliseconds(900), "{waited}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let requests = seen.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 3);
    let (method, headers, body) = &requests[2];
    assert_eq!(method, Method::PUT);
    assert_eq!(headers["x-signature"], "sig-1");
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers["user-agent"]
        .to_str()
        .unwrap()
        .starts_with("stoker-webhook/"));
    assert_eq!(
        serde_json::from_slice::<Value>(body).unwrap(),
        json!({"order": 42})
    );
    setup.handle.shutdown().await;
}

#[tokio::test]
async fn a_404_discards_at_once_with_the_response_recorded() {
    let (base, _seen) = serve().await;
    let setup = setup().await;
    let job = setup
        .client
        .enqueue_raw(
            "webhook",
            json!({"url": format!("{base}/missing"), "body": "plain text"}),
            EnqueueOptions::new().max_attempts(5),
        )
        .await
        .unwrap();
    let job = finished(&setup, job.id).await;
    assert_eq!(job.state, JobState::Discarded);
    assert_eq!(job.attempt, 1, "a 404 is not retried");
    assert_eq!(job.errors.len(), 1);
    assert_eq!(job.errors[0].message, "HTTP 404 Not Found: no such hook");
    assert_eq!(job.result, None);
    setup.handle.shutdown().await;
}

#[tokio::test]
async fn timeouts_and_connection_errors_are_retried() {
    let (base, _seen) = serve().await;
    // A port that was free a moment ago: nothing listens there.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let setup = setup().await;
    let slow = setup
        .client
        .enqueue_raw(
            "webhook",
            json!({"url": format!("{base}/slow"), "timeout_seconds": 0.2}),
            EnqueueOptions::new().max_attempts(1),
        )
        .await
        .unwrap();
    let refused = setup
        .client
        .enqueue_raw(
            "webhook",
            json!({"url": format!("http://{closed}/hook")}),
            EnqueueOptions::new().max_attempts(1),
        )
        .await
        .unwrap();
    let slow = finished(&setup, slow.id).await;
    assert_eq!(slow.state, JobState::Discarded, "its one attempt is used");
    assert!(
        slow.errors[0].message.contains("timed out after 200ms"),
        "{}",
        slow.errors[0].message
    );
    let refused = finished(&setup, refused.id).await;
    assert_eq!(refused.state, JobState::Discarded);
    assert!(
        refused.errors[0].message.starts_with("could not connect"),
        "{}",
        refused.errors[0].message
    );

    // With attempts left, a connection error schedules a retry instead of discarding.
    let mut events = setup.handle.events();
    let retried = setup
        .client
        .enqueue_raw(
            "webhook",
            json!({"url": format!("http://{closed}/hook")}),
            EnqueueOptions::new().max_attempts(3),
        )
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let event = events.recv().await.unwrap();
            if event.id == retried.id {
                return event;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(event.result, AttemptResult::Retried);
    let job = setup.client.get(retried.id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Retryable);
    setup.handle.shutdown().await;
}

#[tokio::test]
async fn a_large_response_body_is_truncated_in_the_result() {
    let (base, _seen) = serve().await;
    let setup = setup().await;
    let job = setup
        .client
        .enqueue_raw(
            "webhook",
            json!({"url": format!("{base}/big"), "method": "GET"}),
            EnqueueOptions::new(),
        )
        .await
        .unwrap();
    let job = finished(&setup, job.id).await;
    assert_eq!(job.state, JobState::Completed);
    let result = job.result.unwrap();
    assert_eq!(result["status"], 200);
    assert_eq!(
        result["body"].as_str().unwrap().len(),
        handlers::RESULT_BODY_MAX_BYTES
    );
    assert_eq!(result["body_truncated"], true);
    setup.handle.shutdown().await;
}

#[tokio::test]
async fn bad_args_are_refused_at_enqueue_and_nothing_is_written() {
    let setup = setup().await;
    let bad = [
        (json!({"method": "POST"}), "invalid args.url: is required"),
        (json!({"url": "example.com/hook"}), "invalid args.url"),
        (
            json!({"url": "ftp://example.com/"}),
            "must use http or https",
        ),
        (
            json!({"url": "http://example.com/", "method": "TELEPORT"}),
            "invalid args.method",
        ),
        (
            json!({"url": "http://example.com/", "headers": {"X-Count": 3}}),
            "invalid args.headers.X-Count: must be a string",
        ),
        (
            json!({"url": "http://example.com/", "timeout_seconds": 0}),
            "invalid args.timeout_seconds",
        ),
        (
            json!({"url": "http://example.com/", "body": "x", "retries": 3}),
            "args.retries",
        ),
    ];
    for (args, expected) in bad {
        let err = setup
            .client
            .enqueue_raw("webhook", args.clone(), EnqueueOptions::new())
            .await
            .expect_err(&format!("{args} is refused"));
        assert!(matches!(err, stoker::Error::Invalid(_)), "{err:?}");
        assert!(err.to_string().contains(expected), "{err} for {args}");
    }
    let page = setup.client.list(&stoker::JobFilter::new()).await.unwrap();
    assert!(page.jobs.is_empty(), "nothing was written");
    setup.handle.shutdown().await;
}
