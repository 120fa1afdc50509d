//! The pull protocol over a real socket, on every store: reserve, heartbeat, progress,
//! complete, fail, snooze, long-polls, lease lapses and fencing.

mod api_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stoker::Store;

use api_support::{config, eventually, start};

store_tests!(
    enqueue_reserve_complete_shows_the_result,
    long_poll_is_woken_by_an_enqueue,
    long_poll_without_jobs_answers_empty_after_the_wait,
    lapsed_lease_is_rescued_and_reservable_again,
    stale_and_unknown_fences_are_refused,
    a_late_report_after_a_snooze_and_a_new_reservation_is_refused,
    a_lapsed_lease_refuses_reports_before_the_rescuer_runs,
    huge_and_malformed_durations_are_refused_and_change_nothing,
    a_reserve_naming_thousands_of_queues_is_refused_at_once,
    a_cancel_is_acknowledged_with_the_fence,
    a_job_carries_its_own_backoff,
    progress_carries_details,
    the_openapi_document_lists_pull_statuses_and_bounds,
    failures_retry_then_discard_and_retry_all_brings_them_back,
    snooze_and_cancel_reach_the_worker,
    reserve_filters_kinds_and_checks_its_input,
);

async fn enqueue_reserve_complete_shows_the_result(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let id = server
        .enqueue(json!({
            "kind": "resize",
            "queue": "media",
            "args": {"image": "cat.png", "width": 100},
            "priority": "HIGH",
            "metadata": {"correlation_id": "req-1", "tags": ["images"]},
            "timeout_seconds": 60,
        }))
        .await;

    let jobs = server
        .reserve(json!({"worker": "py-1", "queues": ["media"], "host": "box-7", "pid": 4242}))
        .await;
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job["id"], id);
    assert_eq!(job["state"], "running");
    assert_eq!(job["attempt"], 1);
    assert_eq!(job["fence"], 1);
    assert_eq!(job["priority"], 10);
    assert_eq!(job["worker"], "pull:py-1");
    assert_eq!(job["args"]["image"], "cat.png");
    assert_eq!(job["timeout_seconds"], 60.0);
    assert!(job["lease_expires_at"].is_string(), "{job}");

    let lease = server
        .post(
            &format!("/v1/pull/jobs/{id}/heartbeat"),
            json!({"fence": 1, "lease_seconds": 120}),
        )
        .await;
    assert_eq!(lease.status, 200, "{lease:?}");
    assert_eq!(lease.body["cancel_requested"], false);
    assert!(
        lease.body["lease_expires_at"].as_str().unwrap()
            > job["lease_expires_at"].as_str().unwrap()
    );

    let progress = server
        .post(
            &format!("/v1/pull/jobs/{id}/progress"),
            json!({"fence": 1, "fraction": 0.5, "message": "halfway"}),
        )
        .await;
    assert_eq!(progress.status, 204, "{progress:?}");

    let done = server
        .post(
            &format!("/v1/pull/jobs/{id}/complete"),
            json!({"fence": 1, "result": {"thumbnail": "cat-100.png"}}),
        )
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(done.body["state"], "completed");

    let job = server.job(id).await;
    assert_eq!(job["state"], "completed");
    assert_eq!(job["result"], json!({"thumbnail": "cat-100.png"}));
    assert_eq!(job["progress"]["fraction"], 0.5);
    assert_eq!(job["progress"]["message"], "halfway");
    assert_eq!(job["metadata"]["correlation_id"], "req-1");
    assert!(job["finished_at"].is_string());
    assert!(job["lease_expires_at"].is_null());

    // The pull worker shows in the workers list, with its completion counted.
    let worker = eventually("the pull worker's counters", || async {
        let workers = server.get("/v1/workers").await;
        workers.body["workers"]
            .as_array()?
            .iter()
            .find(|worker| worker["id"] == "pull:py-1" && worker["jobs_done"] == 1)
            .cloned()
    })
    .await;
    assert_eq!(worker["pull"], true);
    assert_eq!(worker["alive"], true);
    assert_eq!(worker["host"], "box-7");
    assert_eq!(worker["pid"], 4242);
    assert_eq!(worker["queues"], json!(["media"]));

    let metrics = server.metrics().await;
    for line in [
        "stoker_jobs_enqueued_total{queue=\"media\",kind=\"resize\"} 1",
        "stoker_jobs_completed_total{queue=\"media\",kind=\"resize\"} 1",
        "stoker_job_run_seconds_count{queue=\"media\",kind=\"resize\"} 1",
        "stoker_job_pickup_latency_seconds_count{queue=\"media\",kind=\"resize\"} 1",
        "stoker_queue_jobs{queue=\"media\",state=\"completed\"} 1",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in:\n{metrics}");
    }

    // Throughput: the sampler saw the completion.
    eventually("the completion in the throughput", || async {
        let stats = server.get("/v1/stats?minutes=5").await;
        let minutes = stats.body["throughput"]["minutes"].as_array()?.clone();
        let completed: u64 = minutes
            .iter()
            .map(|minute| minute["completed"].as_u64().unwrap_or(0))
            .sum();
        (completed >= 1).then_some(())
    })
    .await;
    server.stop().await;
}

async fn long_poll_is_woken_by_an_enqueue(store: Arc<dyn Store>) {
    let mut config = config();
    // Far beyond the test's bounds: only the store's event can wake the request in time.
    config.pull.poll_interval = Duration::from_secs(60);
    let server = start(store, config).await;

    let waiting = {
        let http = server.http.clone();
        let url = server.url.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let response = http
                .post(format!("{url}/v1/pull/reserve"))
                .json(&json!({"worker": "waiter", "queues": ["inbox"], "wait_seconds": 25}))
                .send()
                .await
                .expect("reserve");
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.expect("json");
            (body, started.elapsed())
        })
    };
    // Let the request park before the job arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let enqueued_at = Instant::now();
    let id = server
        .enqueue(json!({"kind": "mail", "queue": "inbox"}))
        .await;
    let (body, _elapsed) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the long-poll answered within 10 s of the enqueue")
        .expect("reserve task");
    let after_enqueue = enqueued_at.elapsed();
    assert_eq!(body["jobs"][0]["id"], id, "{body}");
    assert!(
        after_enqueue < Duration::from_secs(3),
        "woken {after_enqueue:?} after the enqueue; expected at once"
    );
    server.stop().await;
}

async fn long_poll_without_jobs_answers_empty_after_the_wait(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let started = Instant::now();
    let jobs = server
        .reserve(json!({"worker": "w", "queues": ["empty"], "wait_seconds": 0.4}))
        .await;
    assert!(jobs.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(400));

    // A long-poll in flight ends promptly when the server shuts down.
    let waiting = {
        let http = server.http.clone();
        let url = server.url.clone();
        tokio::spawn(async move {
            http.post(format!("{url}/v1/pull/reserve"))
                .json(&json!({"worker": "w", "queues": ["empty"], "wait_seconds": 25}))
                .send()
                .await
                .expect("reserve")
                .json::<Value>()
                .await
                .expect("json")
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = Instant::now();
    server.stop().await;
    let body = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the long-poll ended with the server")
        .expect("reserve task");
    assert_eq!(body["jobs"], json!([]));
    assert!(stopping.elapsed() < Duration::from_secs(5));
}

async fn lapsed_lease_is_rescued_and_reservable_again(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let id = server
        .enqueue(json!({"kind": "slow", "queue": "work", "max_attempts": 3}))
        .await;
    let jobs = server
        .reserve(json!({"worker": "flaky", "queues": ["work"], "lease_seconds": 0.3}))
        .await;
    assert_eq!(jobs[0]["attempt"], 1);

    // No heartbeat: the lease lapses, the rescuer returns the job (after its backoff) and
    // another worker reserves it.
    let jobs = server
        .reserve(json!({"worker": "steady", "queues": ["work"], "wait_seconds": 15}))
        .await;
    assert_eq!(jobs.len(), 1, "the rescued job was reservable again");
    assert_eq!(jobs[0]["id"], id);
    assert_eq!(jobs[0]["attempt"], 2);
    assert_eq!(jobs[0]["worker"], "pull:steady");
    assert_eq!(jobs[0]["errors"][0]["kind"], "worker_lost");
    assert_eq!(jobs[0]["errors"][0]["attempt"], 1);

    // The first worker comes back too late: every call is fenced off.
    for (route, body) in [
        ("heartbeat", json!({"fence": 1})),
        ("progress", json!({"fence": 1, "fraction": 0.9})),
        ("complete", json!({"fence": 1, "result": "late"})),
        ("fail", json!({"fence": 1, "error": "late"})),
        ("snooze", json!({"fence": 1, "snooze_seconds": 1})),
    ] {
        let answer = server
            .post(&format!("/v1/pull/jobs/{id}/{route}"), body)
            .await;
        answer.assert_error(409, "lease_lost");
        assert_eq!(answer.field(), "fence");
    }
    let done = server
        .post(
            &format!("/v1/pull/jobs/{id}/complete"),
            json!({"fence": 2, "result": "ok"}),
        )
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(server.job(id).await["result"], "ok");
    server.stop().await;
}

async fn stale_and_unknown_fences_are_refused(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let id = server.enqueue(json!({"kind": "once", "queue": "q"})).await;
    server
        .reserve(json!({"worker": "w", "queues": ["q"]}))
        .await;

    // A wrong fence.
    server
        .post(&format!("/v1/pull/jobs/{id}/complete"), json!({"fence": 7}))
        .await
        .assert_error(409, "lease_lost");
    let done = server
        .post(&format!("/v1/pull/jobs/{id}/complete"), json!({"fence": 1}))
        .await;
    assert_eq!(done.status, 200);
    // Completing twice: the second is stale.
    server
        .post(&format!("/v1/pull/jobs/{id}/complete"), json!({"fence": 1}))
        .await
        .assert_error(409, "lease_lost");
    server
        .post(
            &format!("/v1/pull/jobs/{id}/heartbeat"),
            json!({"fence": 1}),
        )
        .await
        .assert_error(409, "lease_lost");
    // A job that does not exist.
    for route in ["heartbeat", "complete"] {
        server
            .post(
                &format!("/v1/pull/jobs/987654/{route}"),
                json!({"fence": 1}),
            )
            .await
            .assert_error(404, "not_found");
    }
    server.stop().await;
}

async fn failures_retry_then_discard_and_retry_all_brings_them_back(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    // A retry with an explicit delay, then a failure on the last attempt.
    let id = server
        .enqueue(json!({"kind": "charge", "queue": "billing", "max_attempts": 2}))
        .await;
    server
        .reserve(json!({"worker": "w", "queues": ["billing"]}))
        .await;
    let failed = server
        .post(
            &format!("/v1/pull/jobs/{id}/fail"),
            json!({"fence": 1, "error": "card declined", "retry_in_seconds": 0}),
        )
        .await;
    assert_eq!(failed.status, 200, "{failed:?}");
    assert_eq!(failed.body["state"], "retryable");
    assert!(failed.body["run_at"].is_string());
    let jobs = server
        .reserve(json!({"worker": "w", "queues": ["billing"], "wait_seconds": 5}))
        .await;
    assert_eq!(jobs[0]["attempt"], 2);
    let failed = server
        .post(
            &format!("/v1/pull/jobs/{id}/fail"),
            json!({"fence": 2, "error": "card declined again"}),
        )
        .await;
    assert_eq!(failed.body["state"], "discarded", "{failed:?}");

    // Default backoff: the first failure of a 5-attempt job waits about 2 s.
    let backoff_id = server
        .enqueue(json!({"kind": "charge", "queue": "billing-slow"}))
        .await;
    server
        .reserve(json!({"worker": "w", "queues": ["billing-slow"]}))
        .await;
    let failed = server
        .post(
            &format!("/v1/pull/jobs/{backoff_id}/fail"),
            json!({"fence": 1, "error": "timeout"}),
        )
        .await;
    assert_eq!(failed.body["state"], "retryable");
    let job = server.job(backoff_id).await;
    let run_at: chrono::DateTime<chrono::Utc> = job["run_at"].as_str().unwrap().parse().unwrap();
    let wait = run_at - chrono::Utc::now();
    assert!(
        wait > chrono::Duration::milliseconds(1000) && wait < chrono::Duration::seconds(3),
        "default backoff after attempt 1 was {wait}"
    );

    // `discard: true` discards at once whatever attempts remain.
    let mut discarded = vec![id];
    for _ in 0..2 {
        let id = server
            .enqueue(json!({"kind": "charge", "queue": "billing", "max_attempts": 10}))
            .await;
        discarded.push(id);
    }
    let other = server
        .enqueue(json!({"kind": "ship", "queue": "shipping"}))
        .await;
    let jobs = server
        .reserve(json!({"worker": "w", "queues": ["billing", "shipping"], "limit": 10}))
        .await;
    assert_eq!(jobs.len(), 3, "{jobs:?}");
    for job in &jobs {
        let answer = server
            .post(
                &format!("/v1/pull/jobs/{}/fail", job["id"]),
                json!({"fence": job["fence"], "error": "bad input", "discard": true}),
            )
            .await;
        assert_eq!(answer.body["state"], "discarded", "{answer:?}");
    }
    let job = server.job(discarded[1]).await;
    assert_eq!(job["state"], "discarded");
    assert_eq!(job["errors"][0]["message"], "bad input");
    assert_eq!(job["errors"][0]["kind"], "error");

    // Retry every discarded job of the billing queue: three, not the shipping one; two at a
    // time, as a caller showing progress would.
    let retried = server
        .post("/v1/jobs/retry", json!({"queues": ["billing"], "limit": 2}))
        .await;
    assert_eq!(retried.status, 200, "{retried:?}");
    assert_eq!(retried.body["retried"], 2);
    assert_eq!(retried.body["remaining"], 1);
    let retried = server
        .post("/v1/jobs/retry", json!({"queues": ["billing"], "limit": 2}))
        .await;
    assert_eq!(retried.body["retried"], 1);
    assert_eq!(retried.body["remaining"], 0);
    let refused = server
        .post("/v1/jobs/retry", json!({"queues": ["billing"], "limit": 0}))
        .await;
    assert_eq!(refused.status, 422, "{refused:?}");
    assert_eq!(refused.body["error"]["field"], "limit");
    let listed = server.get("/v1/jobs?state=discarded").await;
    let ids: Vec<i64> = listed.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![other]);
    let job = server.job(discarded[0]).await;
    assert_eq!(job["state"], "available");
    assert_eq!(job["errors"].as_array().unwrap().len(), 2, "history kept");
    // By kind, too.
    let retried = server
        .post("/v1/jobs/retry", json!({"kinds": ["ship"]}))
        .await;
    assert_eq!(retried.body["retried"], 1);
    let retried = server.post("/v1/jobs/retry", json!({})).await;
    assert_eq!(retried.body["retried"], 0);

    let metrics = server.metrics().await;
    assert!(
        metrics.contains("stoker_jobs_discarded_total{queue=\"billing\",kind=\"charge\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("stoker_jobs_failed_total{queue=\"billing\",kind=\"charge\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("stoker_jobs_failed_total{queue=\"billing-slow\",kind=\"charge\"} 1"),
        "{metrics}"
    );
    server.stop().await;
}

async fn snooze_and_cancel_reach_the_worker(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let id = server.enqueue(json!({"kind": "poll", "queue": "q"})).await;
    server
        .reserve(json!({"worker": "w", "queues": ["q"]}))
        .await;
    let snoozed = server
        .post(
            &format!("/v1/pull/jobs/{id}/snooze"),
            json!({"fence": 1, "snooze_seconds": 0}),
        )
        .await;
    assert_eq!(snoozed.status, 200, "{snoozed:?}");
    assert_eq!(snoozed.body["state"], "available");
    let job = server.job(id).await;
    assert_eq!(job["attempt"], 0, "a snooze uses no attempt");
    let jobs = server
        .reserve(json!({"worker": "w", "queues": ["q"]}))
        .await;
    assert_eq!(jobs[0]["attempt"], 1, "the snooze gave the attempt back");
    assert_eq!(jobs[0]["fence"], 2, "the new reservation took a new fence");
    // The first reservation's fence is dead, though the attempt number came back.
    server
        .post(&format!("/v1/pull/jobs/{id}/complete"), json!({"fence": 1}))
        .await
        .assert_error(409, "lease_lost");

    // A cancel requested while the worker holds the job: its heartbeat says so, and its
    // report ends the job cancelled.
    let cancelled = server
        .post(&format!("/v1/jobs/{id}/cancel"), json!({}))
        .await;
    assert_eq!(cancelled.status, 200);
    assert_eq!(cancelled.body["state"], "running");
    assert!(cancelled.body["cancel_requested_at"].is_string());
    let lease = server
        .post(
            &format!("/v1/pull/jobs/{id}/heartbeat"),
            json!({"fence": 2}),
        )
        .await;
    assert_eq!(lease.body["cancel_requested"], true, "{lease:?}");
    let failed = server
        .post(
            &format!("/v1/pull/jobs/{id}/fail"),
            json!({"fence": 2, "error": "stopped on request"}),
        )
        .await;
    assert_eq!(failed.body["state"], "cancelled", "{failed:?}");
    assert_eq!(server.job(id).await["state"], "cancelled");
    server.stop().await;
}

async fn reserve_filters_kinds_and_checks_its_input(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let email = server
        .enqueue(json!({"kind": "email", "queue": "mixed"}))
        .await;
    let sms = server
        .enqueue(json!({"kind": "sms", "queue": "mixed"}))
        .await;
    let jobs = server
        .reserve(json!({"worker": "w", "queues": ["mixed"], "kinds": ["sms"], "limit": 5}))
        .await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["id"], sms);
    assert_eq!(server.job(email).await["state"], "available");

    for (body, field) in [
        (json!({"worker": "", "queues": ["q"]}), "worker"),
        (json!({"worker": "w", "queues": []}), "queues"),
        (json!({"worker": "w", "queues": ["bad queue"]}), "queues[0]"),
        (json!({"worker": "w", "queues": ["q"], "limit": 0}), "limit"),
        (
            json!({"worker": "w", "queues": ["q"], "limit": 101}),
            "limit",
        ),
        (
            json!({"worker": "w", "queues": ["q"], "lease_seconds": 0}),
            "lease_seconds",
        ),
        (
            json!({"worker": "w", "queues": ["q"], "wait_seconds": -1}),
            "wait_seconds",
        ),
        (json!({"worker": "w", "queue": ["q"]}), "queue"),
    ] {
        let answer = server.post("/v1/pull/reserve", body.clone()).await;
        answer.assert_error(422, "invalid_field");
        assert_eq!(answer.field(), field, "{body} -> {answer:?}");
    }
    // A lease longer than the server grants is cut to its `pull.max_lease` (an hour here).
    server.enqueue(json!({"kind": "k", "queue": "long"})).await;
    let jobs = server
        .reserve(json!({"worker": "w", "queues": ["long"], "lease_seconds": 7200}))
        .await;
    let end = chrono::DateTime::parse_from_rfc3339(jobs[0]["lease_expires_at"].as_str().unwrap())
        .unwrap();
    assert!(
        end <= chrono::Utc::now() + chrono::Duration::seconds(3600),
        "{end}"
    );
    let answer = server
        .post(
            &format!("/v1/pull/jobs/{sms}/progress"),
            json!({"fence": 1, "fraction": 1.5}),
        )
        .await;
    answer.assert_error(422, "invalid_field");
    assert_eq!(answer.field(), "fraction");
    let answer = server
        .post(
            &format!("/v1/pull/jobs/{sms}/fail"),
            json!({"fence": 1, "error": ""}),
        )
        .await;
    assert_eq!(answer.field(), "error");
    server.stop().await;
}

/// Worker A reserves a job and snoozes it; worker B reserves it again (with the same attempt
/// number): A's late reports are refused with `lease_lost`, and B's result is the one kept.
async fn a_late_report_after_a_snooze_and_a_new_reservation_is_refused(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let id = server.enqueue(json!({"kind": "sync", "queue": "q"})).await;
    let a = server
        .reserve(json!({"worker": "a", "queues": ["q"]}))
        .await;
    let snoozed = server
        .post(
            &format!("/v1/pull/jobs/{id}/snooze"),
            json!({"fence": a[0]["fence"], "snooze_seconds": 0}),
        )
        .await;
    assert_eq!(snoozed.status, 200, "{snoozed:?}");
    let b = server
        .reserve(json!({"worker": "b", "queues": ["q"]}))
        .await;
    assert_eq!(b[0]["attempt"], a[0]["attempt"]);
    assert_ne!(b[0]["fence"], a[0]["fence"]);

    for (route, body) in [
        (
            "complete",
            json!({"fence": a[0]["fence"], "result": "from a"}),
        ),
        (
            "snooze",
            json!({"fence": a[0]["fence"], "snooze_seconds": 0}),
        ),
        ("heartbeat", json!({"fence": a[0]["fence"]})),
        ("progress", json!({"fence": a[0]["fence"], "fraction": 0.5})),
        ("fail", json!({"fence": a[0]["fence"], "error": "late"})),
        ("cancel", json!({"fence": a[0]["fence"]})),
    ] {
        server
            .post(&format!("/v1/pull/jobs/{id}/{route}"), body)
            .await
            .assert_error(409, "lease_lost");
    }
    let job = server.job(id).await;
    assert_eq!(job["state"], "running");
    assert_eq!(job["worker"], "pull:b");
    let done = server
        .post(
            &format!("/v1/pull/jobs/{id}/complete"),
            json!({"fence": b[0]["fence"], "result": "from b"}),
        )
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(server.job(id).await["result"], "from b");
    server.stop().await;
}

/// With the rescuer not due for an hour, a worker whose lease ended is refused at once: its
/// complete, progress and heartbeat get `lease_lost` and the job keeps running until rescued.
async fn a_lapsed_lease_refuses_reports_before_the_rescuer_runs(store: Arc<dyn Store>) {
    let mut config = config();
    config.rescuer.interval = Duration::from_secs(3600);
    let server = start(store, config).await;
    let id = server.enqueue(json!({"kind": "slow", "queue": "q"})).await;
    let jobs = server
        .reserve(json!({"worker": "w", "queues": ["q"], "lease_seconds": 0.2}))
        .await;
    let fence = jobs[0]["fence"].clone();
    let lease_end =
        chrono::DateTime::parse_from_rfc3339(jobs[0]["lease_expires_at"].as_str().unwrap())
            .unwrap();
    // Wait (by the wall clock the server reads) until the lease has ended.
    while chrono::Utc::now() <= lease_end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    for (route, body) in [
        ("heartbeat", json!({"fence": fence, "lease_seconds": 60})),
        ("progress", json!({"fence": fence, "fraction": 0.9})),
        ("complete", json!({"fence": fence, "result": "late"})),
        ("fail", json!({"fence": fence, "error": "late"})),
    ] {
        server
            .post(&format!("/v1/pull/jobs/{id}/{route}"), body)
            .await
            .assert_error(409, "lease_lost");
    }
    let job = server.job(id).await;
    assert_eq!(job["state"], "running", "left to the rescuer: {job}");
    assert_eq!(job["result"], Value::Null);
    assert_eq!(job["progress"], Value::Null);
    server.stop().await;
}

/// Durations far out of range (1e15 seconds, negative, not a number, beyond what a double
/// holds) are refused with 422 naming the field before anything changes: the job stays
/// running under its fence, and its worker can still complete it.
async fn huge_and_malformed_durations_are_refused_and_change_nothing(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let id = server.enqueue(json!({"kind": "k", "queue": "q"})).await;
    let jobs = server
        .reserve(json!({"worker": "w", "queues": ["q"]}))
        .await;
    let fence = jobs[0]["fence"].clone();
    let before = server.job(id).await;
    for bad in [json!(1e15), json!(-1), json!("NaN"), json!(null)] {
        for (route, field, body) in [
            (
                "fail",
                "retry_in_seconds",
                json!({"fence": fence, "error": "x", "retry_in_seconds": bad}),
            ),
            (
                "snooze",
                "snooze_seconds",
                json!({"fence": fence, "snooze_seconds": bad}),
            ),
            (
                "heartbeat",
                "lease_seconds",
                json!({"fence": fence, "lease_seconds": bad}),
            ),
        ] {
            if bad.is_null() && route != "snooze" {
                continue; // an optional field may be null
            }
            let answer = server
                .post(&format!("/v1/pull/jobs/{id}/{route}"), body.clone())
                .await;
            answer.assert_error(422, "invalid_field");
            assert_eq!(answer.field(), field, "{body} -> {answer:?}");
        }
        if !bad.is_null() {
            for field in ["wait_seconds", "lease_seconds"] {
                let answer = server
                    .post(
                        "/v1/pull/reserve",
                        json!({"worker": "w", "queues": ["q"], field: bad}),
                    )
                    .await;
                answer.assert_error(422, "invalid_field");
                assert_eq!(answer.field(), field);
            }
        }
    }
    // Beyond what a double holds: not valid JSON for a number field.
    let raw = server
        .http
        .post(format!("{}/v1/pull/jobs/{id}/snooze", server.url))
        .header("content-type", "application/json")
        .body(format!(r#"{{"fence": {fence}, "snooze_seconds": 1e400}}"#))
        .send()
        .await
        .expect("send");
    assert!(
        raw.status().is_client_error(),
        "1e400 is refused: {}",
        raw.status()
    );
    assert_eq!(server.job(id).await, before, "nothing changed");
    // The smallest positive lease is a valid one, not a refusal.
    let tiny = server
        .post(
            "/v1/pull/reserve",
            json!({"worker": "w", "queues": ["empty"], "lease_seconds": 5e-324}),
        )
        .await;
    assert_eq!(tiny.status, 200, "{tiny:?}");
    // A whole number written as a float is the same fence.
    let done = server
        .post(
            &format!("/v1/pull/jobs/{id}/complete"),
            json!({"fence": fence.as_f64().unwrap()}),
        )
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    server.stop().await;
}

/// A reserve naming 20,000 queues (or 65 kinds) is refused with 422 before any queue is
/// looked at; the bounds are 32 queues and 64 kinds.
async fn a_reserve_naming_thousands_of_queues_is_refused_at_once(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let id = server.enqueue(json!({"kind": "k63", "queue": "q31"})).await;
    let queues: Vec<String> = (0..20_000).map(|n| format!("q{n}")).collect();
    let answer = server
        .post("/v1/pull/reserve", json!({"worker": "w", "queues": queues}))
        .await;
    answer.assert_error(422, "invalid_field");
    assert_eq!(answer.field(), "queues");
    let kinds: Vec<String> = (0..65).map(|n| format!("k{n}")).collect();
    let answer = server
        .post(
            "/v1/pull/reserve",
            json!({"worker": "w", "queues": ["q31"], "kinds": kinds}),
        )
        .await;
    answer.assert_error(422, "invalid_field");
    assert_eq!(answer.field(), "kinds");
    assert_eq!(
        server.job(id).await["state"],
        "available",
        "nothing reserved"
    );

    // At the bounds, the request is served.
    let queues: Vec<String> = (0..32).map(|n| format!("q{n}")).collect();
    let kinds: Vec<String> = (0..64).map(|n| format!("k{n}")).collect();
    let jobs = server
        .reserve(json!({"worker": "w", "queues": queues, "kinds": kinds}))
        .await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["id"], id);
    server.stop().await;
}

/// A pull worker acknowledges a cancel request with `cancel`: the job ends `cancelled` with
/// the worker's message in its history, and a second acknowledgement gets `lease_lost`.
async fn a_cancel_is_acknowledged_with_the_fence(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let id = server.enqueue(json!({"kind": "long", "queue": "q"})).await;
    let jobs = server
        .reserve(json!({"worker": "w", "queues": ["q"]}))
        .await;
    let fence = jobs[0]["fence"].clone();
    let requested = server
        .post(&format!("/v1/jobs/{id}/cancel"), json!({}))
        .await;
    assert_eq!(requested.body["state"], "running");
    let lease = server
        .post(
            &format!("/v1/pull/jobs/{id}/heartbeat"),
            json!({"fence": fence}),
        )
        .await;
    assert_eq!(lease.body["cancel_requested"], true, "{lease:?}");
    let ack = server
        .post(
            &format!("/v1/pull/jobs/{id}/cancel"),
            json!({"fence": fence, "error": "stopped at row 1200"}),
        )
        .await;
    assert_eq!(ack.status, 200, "{ack:?}");
    assert_eq!(ack.body["state"], "cancelled");
    let job = server.job(id).await;
    assert_eq!(job["state"], "cancelled");
    let last = job["errors"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "cancelled");
    assert_eq!(last["message"], "stopped at row 1200");
    server
        .post(
            &format!("/v1/pull/jobs/{id}/cancel"),
            json!({"fence": fence}),
        )
        .await
        .assert_error(409, "lease_lost");

    // A worker may also give up a job nobody asked it to cancel.
    let other = server.enqueue(json!({"kind": "long", "queue": "q"})).await;
    let jobs = server
        .reserve(json!({"worker": "w", "queues": ["q"]}))
        .await;
    let ack = server
        .post(
            &format!("/v1/pull/jobs/{other}/cancel"),
            json!({"fence": jobs[0]["fence"]}),
        )
        .await;
    assert_eq!(ack.body["state"], "cancelled", "{ack:?}");
    assert_eq!(server.job(other).await["errors"], json!([]));
    server
        .post("/v1/pull/jobs/987654/cancel", json!({"fence": 1}))
        .await
        .assert_error(404, "not_found");
    server.stop().await;
}

/// A job enqueued with its own backoff shows it, and a failed attempt waits by it (a fixed
/// 100 s here, where the default would be about 2 s); a bad backoff is refused naming the
/// field, in a single and a bulk enqueue.
async fn a_job_carries_its_own_backoff(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let backoff = json!({"base_seconds": 100, "factor": 1, "max_seconds": 100, "jitter": 0});
    let id = server
        .enqueue(json!({"kind": "k", "queue": "q", "backoff": backoff}))
        .await;
    assert_eq!(
        server.job(id).await["backoff"],
        json!({"base_seconds": 100.0, "factor": 1.0, "max_seconds": 100.0, "jitter": 0.0})
    );
    let jobs = server
        .reserve(json!({"worker": "w", "queues": ["q"]}))
        .await;
    let failed = server
        .post(
            &format!("/v1/pull/jobs/{id}/fail"),
            json!({"fence": jobs[0]["fence"], "error": "flaky"}),
        )
        .await;
    assert_eq!(failed.body["state"], "retryable", "{failed:?}");
    let run_at =
        chrono::DateTime::parse_from_rfc3339(failed.body["run_at"].as_str().unwrap()).unwrap();
    let failed_at = chrono::DateTime::parse_from_rfc3339(
        server.job(id).await["errors"][0]["at"].as_str().unwrap(),
    )
    .unwrap();
    // Stores keep microseconds: the wait is 100 s to within one.
    let wait = (run_at - failed_at).num_microseconds().unwrap();
    assert!(
        (99_999_999..=100_000_000).contains(&wait),
        "the job's own backoff: {wait} µs"
    );

    for (body, path, field) in [
        (
            json!({"kind": "k", "backoff": {"base_seconds": 1, "factor": 0.5}}),
            "/v1/jobs",
            "backoff.factor",
        ),
        (
            json!({"kind": "k", "backoff": {"base_seconds": 1e15}}),
            "/v1/jobs",
            "backoff.base_seconds",
        ),
        (
            json!({"jobs": [{"kind": "k"}, {"kind": "k", "backoff": {"base_seconds": 1, "jitter": 2}}]}),
            "/v1/jobs/bulk",
            "jobs[1].backoff.jitter",
        ),
    ] {
        let answer = server.post(path, body.clone()).await;
        answer.assert_error(422, "invalid_field");
        assert_eq!(answer.field(), field, "{body} -> {answer:?}");
    }
    server.stop().await;
}

/// Progress takes JSON details next to the fraction, shown in the job; details over 64 KiB are
/// refused with 422 and change nothing.
async fn progress_carries_details(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let id = server
        .enqueue(json!({"kind": "import", "queue": "q"}))
        .await;
    let jobs = server
        .reserve(json!({"worker": "w", "queues": ["q"]}))
        .await;
    let fence = jobs[0]["fence"].clone();
    let details = json!({"rows": 1200, "of": 5000});
    let answer = server
        .post(
            &format!("/v1/pull/jobs/{id}/progress"),
            json!({"fence": fence, "fraction": 0.24, "message": "importing", "details": details}),
        )
        .await;
    assert_eq!(answer.status, 204, "{answer:?}");
    let progress = server.job(id).await["progress"].clone();
    assert_eq!(progress["fraction"], 0.24);
    assert_eq!(progress["details"], details);

    let huge = json!({"blob": "x".repeat(70 * 1024)});
    let answer = server
        .post(
            &format!("/v1/pull/jobs/{id}/progress"),
            json!({"fence": fence, "fraction": 0.5, "details": huge}),
        )
        .await;
    answer.assert_error(422, "invalid_field");
    assert_eq!(answer.field(), "details");
    assert_eq!(server.job(id).await["progress"], progress);
    server.stop().await;
}

/// Every pull route's OpenAPI entry lists the statuses it can answer, and the reserve request
/// its bounds, so a client (or a fuzzer) can see them.
async fn the_openapi_document_lists_pull_statuses_and_bounds(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let doc = server.get("/v1/openapi.json").await.body;
    let paths = &doc["paths"];
    let reserve = &paths["/v1/pull/reserve"]["post"]["responses"];
    for status in ["200", "400", "401", "403", "413", "415", "422", "503"] {
        assert!(reserve.get(status).is_some(), "reserve lacks {status}");
    }
    for route in [
        "heartbeat",
        "progress",
        "complete",
        "fail",
        "snooze",
        "cancel",
    ] {
        let responses = &paths[format!("/v1/pull/jobs/{{id}}/{route}")]["post"]["responses"];
        for status in [
            "400", "401", "403", "404", "409", "413", "415", "422", "503",
        ] {
            assert!(
                responses.get(status).is_some(),
                "{route} lacks {status}: {responses}"
            );
        }
    }
    let schema = &doc["components"]["schemas"]["ReserveRequest"]["properties"];
    assert_eq!(schema["queues"]["maxItems"], 32, "{schema}");
    assert_eq!(schema["kinds"]["maxItems"], 64, "{schema}");
    assert_eq!(schema["limit"]["maximum"], 100, "{schema}");
    server.stop().await;
}
