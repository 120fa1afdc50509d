//! The plans of job search (issue 14) on PostgreSQL: over 200,000 jobs of realistic shape
//! (mostly completed, a few of each other state, ten queues, twenty kinds, tenants,
//! correlation ids, parents, keys), every criterion the dashboard offers, alone and with
//! states, and both directions from a cursor, is a `Limit` over an index walk: no sequential
//! scan, no bitmap scan, no sort. So each page costs at most its scan budget whatever the
//! table's size. Counts read at most their budget of driver rows in any order and never sort
//! or join.
//!
//! Set `STOKER_TEST_DATABASE_URL` to run it; without it the test returns early, saying so.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{Duration, Utc};
use sqlx::{Connection, Executor, PgConnection};
use stoker_core::{
    fingerprint, ErrorKind, JobCriteria, JobId, JobSearchParams, SearchDirection, StateView, Store,
};
use stoker_postgres::PgStore;

const JOBS: i64 = 200_000;

fn database_url() -> Option<String> {
    let url = std::env::var("STOKER_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty());
    if url.is_none() {
        eprintln!("skipped search plans: STOKER_TEST_DATABASE_URL is unset");
    }
    url
}

/// Every combination the dashboard's search bar offers, as criteria.
fn cases() -> Vec<(String, JobCriteria)> {
    let now = Utc::now();
    let base = JobCriteria::default();
    let mut cases = vec![("everything".to_owned(), base.clone())];
    for view in StateView::ALL {
        cases.push((
            format!("state {view}"),
            JobCriteria {
                states: vec![view],
                ..base.clone()
            },
        ));
    }
    let filters: Vec<(&str, JobCriteria)> = vec![
        (
            "queue",
            JobCriteria {
                queues: vec!["q3".into()],
                ..base.clone()
            },
        ),
        (
            "kind",
            JobCriteria {
                kinds: vec!["k7".into(), "k8".into()],
                ..base.clone()
            },
        ),
        (
            "tenant",
            JobCriteria {
                tenant: Some("t2".into()),
                ..base.clone()
            },
        ),
        (
            "worker",
            JobCriteria {
                worker_id: Some("w1".into()),
                ..base.clone()
            },
        ),
        (
            "created range",
            JobCriteria {
                created_after: Some(now - Duration::hours(30)),
                created_before: Some(now - Duration::hours(2)),
                ..base.clone()
            },
        ),
        (
            "finished range",
            JobCriteria {
                finished_after: Some(now - Duration::hours(1)),
                ..base.clone()
            },
        ),
        (
            "text",
            JobCriteria {
                text: Some("user4242@".into()),
                ..base.clone()
            },
        ),
    ];
    for (name, criteria) in &filters {
        cases.push(((*name).to_owned(), criteria.clone()));
        cases.push((
            format!("failed + {name}"),
            JobCriteria {
                states: StateView::FAILED.to_vec(),
                ..criteria.clone()
            },
        ));
        cases.push((
            format!("completed + {name}"),
            JobCriteria {
                states: vec![StateView::Completed],
                ..criteria.clone()
            },
        ));
    }
    let drivers: Vec<(&str, JobCriteria)> = vec![
        (
            "ids",
            JobCriteria {
                ids: vec![JobId(5), JobId(77), JobId(150_000)],
                ..base.clone()
            },
        ),
        (
            "key",
            JobCriteria {
                unique_key: Some("key-1000".into()),
                ..base.clone()
            },
        ),
        (
            "correlation id",
            JobCriteria {
                correlation_id: Some("c42".into()),
                ..base.clone()
            },
        ),
        (
            "parent",
            JobCriteria {
                parent_id: Some(JobId(20)),
                ..base.clone()
            },
        ),
        (
            "failure group",
            JobCriteria {
                failure_group: Some(fingerprint("k1", ErrorKind::Error, "boom")),
                ..base.clone()
            },
        ),
        (
            "correlation id + failed + queue",
            JobCriteria {
                correlation_id: Some("c42".into()),
                states: StateView::FAILED.to_vec(),
                queues: vec!["q0".into()],
                ..base.clone()
            },
        ),
    ];
    for (name, criteria) in drivers {
        cases.push((name.to_owned(), criteria));
    }
    cases
}

/// Whether a plan walks indexes only: no sequential or bitmap scan, and no sort node (a
/// `Merge Append` prints a `Sort Key`, which is fine).
fn index_walk(plan: &str) -> bool {
    !plan.contains("Seq Scan")
        && !plan.contains("Bitmap")
        && !plan.lines().any(|line| {
            let node = line.trim_start().trim_start_matches("->").trim_start();
            node.starts_with("Sort  (") || node.starts_with("Incremental Sort  (")
        })
}

/// Whether a count's plan is bounded: it reads at most its budget of driver rows (in any
/// order: a bitmap scan of a key's index, or a sequential scan stopped by the `Limit` above it
/// when most jobs match), never sorts, and joins nothing (no hash or merge join reading the
/// table).
fn bounded_count(plan: &str) -> bool {
    let lines: Vec<&str> = plan.lines().collect();
    let node = |line: &str| {
        line.trim_start()
            .trim_start_matches("->")
            .trim_start()
            .to_owned()
    };
    !plan.contains("Hash Join")
        && !plan.contains("Merge Join")
        && !lines.iter().any(|line| node(line).starts_with("Sort  ("))
        && lines.iter().enumerate().all(|(n, line)| {
            !node(line).starts_with("Seq Scan")
                || n > 0 && node(lines[n - 1]).starts_with("Limit  (")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_search_walks_an_index() {
    let Some(url) = database_url() else {
        return;
    };
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let schema = format!("stoker_search_plans_{secs}_{}", std::process::id());
    let store = PgStore::builder(&url)
        .schema(&schema)
        .max_connections(4)
        .build()
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    let mut conn = PgConnection::connect(&url).await.expect("connect");
    let group = fingerprint("k1", ErrorKind::Error, "boom");
    conn.execute(
        format!(
            "INSERT INTO \"{schema}\".stoker_jobs (kind, queue, args, state, priority, attempt, \
                 max_attempts, run_at, unique_key, tenant, metadata, created_at, finished_at, \
                 worker_id, scheduled, failure_group) \
             SELECT 'k' || (g % 20), 'q' || (g % 10), \
                 jsonb_build_object('n', g, 'to', 'user' || g || '@example.com'), \
                 CASE WHEN g % 100 < 90 THEN 'completed' WHEN g % 100 < 95 THEN 'discarded' \
                      WHEN g % 100 < 97 THEN 'retryable' WHEN g % 100 < 99 THEN 'available' \
                      ELSE 'running' END, \
                 0, 1, 5, now(), CASE WHEN g % 5 = 0 THEN 'key-' || g END, \
                 CASE WHEN g % 3 = 0 THEN 't' || (g % 5) END, \
                 CASE WHEN g % 10 = 0 THEN jsonb_build_object('correlation_id', 'c' || (g / 10)) \
                      WHEN g % 20 = 1 THEN jsonb_build_object('parent_id', g - 1) \
                      ELSE '{{}}'::jsonb END, \
                 now() - make_interval(secs => {JOBS} - g), \
                 CASE WHEN g % 100 < 95 THEN now() END, 'w' || (g % 4), \
                 (g % 100 IN (97, 98) AND g % 2 = 0), \
                 CASE WHEN g % 100 BETWEEN 90 AND 96 AND g % 20 = 1 THEN '{group}' END \
             FROM generate_series(1, {JOBS}) g"
        )
        .as_str(),
    )
    .await
    .expect("seed");
    // As autovacuum leaves a table of mostly finished jobs: statistics, and the visibility map
    // set, so index-only walks need no heap visits.
    conn.execute(format!("VACUUM ANALYZE \"{schema}\".stoker_jobs").as_str())
        .await
        .expect("vacuum");

    let mut failures = Vec::new();
    for (name, criteria) in cases() {
        let mut params = JobSearchParams::new(criteria, 50);
        for (label, cursor, direction) in [
            ("first page", None, SearchDirection::Older),
            (
                "older from a cursor",
                Some(JobId(120_000)),
                SearchDirection::Older,
            ),
            (
                "newer from a cursor",
                Some(JobId(120_000)),
                SearchDirection::Newer,
            ),
        ] {
            params.cursor = cursor;
            params.direction = direction;
            let (page, count) = store.explain_job_search(&params).await.expect("explain");
            if !index_walk(&page) {
                failures.push(format!("{name}, {label}, page:\n{page}"));
            }
            if cursor.is_none() && !bounded_count(&count) {
                failures.push(format!("{name}, count:\n{count}"));
            }
            if cursor.is_none() && name == "failed + queue" {
                println!("plan of {name}:\n{page}\n");
            }
        }
        // And the search runs, within its budget.
        params.cursor = None;
        params.direction = SearchDirection::Older;
        let page = store.job_search(params.clone()).await.expect("search");
        assert!(page.scanned <= u64::from(params.scan_max), "{name}");
    }
    drop(store);
    conn.execute(format!("DROP SCHEMA \"{schema}\" CASCADE").as_str())
        .await
        .expect("drop the schema");
    assert!(
        failures.is_empty(),
        "plans without an index walk:\n{}",
        failures.join("\n\n")
    );
}
