//! Job search (issue 14): every criterion matches what [`JobCriteria::matches`] says over a
//! varied set of jobs, keyset pages in both directions cover each match once, the scan budget
//! bounds every page, counts are exact then capped, and bulk operations act on the same
//! criteria.

use std::sync::Arc;

use serde_json::json;
use stoker_core::{
    BulkAction, BulkOpCreateParams, BulkOpStepParams, JobCancelParams, JobCriteria, JobId,
    JobInsert, JobRow, JobSearchParams, JobState, Metadata, Outcome, SearchDirection, StateView,
    Store, JOB_COUNT_CAP,
};

use crate::fixture::{
    all_jobs, at, attempt_error, claim_exactly, expect_invalid, finish, get, insert, insert_one,
    job_in, t0,
};

/// The instant the seeded jobs are staged at: jobs due later are `scheduled`.
const STAGED_AT: i64 = 100;

/// Whether a job is in the schedule as the seed left it (staged at [`STAGED_AT`]).
fn scheduled(job: &JobRow) -> bool {
    matches!(job.state, JobState::Available | JobState::Retryable) && job.run_at > at(STAGED_AT)
}

/// Seeds jobs of every state, two queues and kinds, two tenants, keys, correlation ids,
/// parents, workers, texts and times; returns them as stored.
async fn seed<S: Store>(store: &Arc<S>) -> Vec<JobRow> {
    let mut jobs = Vec::new();
    for n in 0..24i64 {
        let queue = if n % 2 == 0 { "mail" } else { "report" };
        let kind = if n % 3 == 0 { "email" } else { "pdf" };
        let mut job: JobInsert = job_in(queue, kind);
        job.args = json!({"n": n, "to": format!("user{n}@example.com")});
        job.tenant = (n % 4 == 0).then(|| "acme".to_owned());
        job.unique_key = (n % 5 == 0).then(|| format!("key-{n}"));
        job.metadata = Metadata {
            correlation_id: (n % 6 < 2).then(|| format!("corr-{}", n % 2)),
            tags: if n == 7 { vec!["vip".into()] } else { vec![] },
            ..Metadata::default()
        };
        // Some wait for the future; the rest are due.
        job.run_at = Some(if n % 7 == 3 { at(10_000) } else { at(n) });
        jobs.push(job);
    }
    let ids = insert(store, jobs, t0()).await;
    // Created later, children of the first two jobs.
    let mut children = Vec::new();
    for (n, parent) in [ids[0], ids[0], ids[1]].into_iter().enumerate() {
        let mut job = job_in("mail", "child");
        job.metadata.parent_id = Some(parent);
        job.args = json!({"child": n});
        children.push(job);
    }
    insert(store, children, at(50)).await;
    crate::fixture::stage(store, at(STAGED_AT)).await;
    // States: jobs 1, 2, 4, 8, 5 run (and all but 1 finish); 7 is cancelled while waiting.
    // Claims take the earliest due job of a queue and kind, so each is claimed in that order.
    let mut finished_at = 200;
    for (index, outcome) in [
        (1usize, None),
        (2, Some("complete")),
        (4, Some("retry")),
        (8, Some("discard")),
        (5, Some("complete")),
    ] {
        let id = ids[index];
        let row = get(store, id).await;
        let claimed = claim_exactly(store, &row.queue, &row.kind, id, at(STAGED_AT)).await;
        finished_at += 100;
        let outcome = match outcome {
            None => continue,
            Some("complete") => Outcome::Completed { result: None },
            Some("retry") => Outcome::Retry {
                error: attempt_error(1, at(finished_at), "smtp 421"),
                run_at: at(50_000),
            },
            Some(_) => Outcome::Discard {
                error: attempt_error(1, at(finished_at), "bad address"),
            },
        };
        finish(store, id, claimed.fence, outcome, at(finished_at)).await;
    }
    store
        .job_cancel(JobCancelParams {
            id: ids[7],
            now: at(900),
        })
        .await
        .expect("job_cancel");
    all_jobs(store).await
}

/// Every id matching `criteria`, newest first, walking pages of `limit`.
async fn walk<S: Store>(store: &Arc<S>, criteria: &JobCriteria, limit: u32) -> Vec<JobId> {
    let mut params = JobSearchParams::new(criteria.clone(), limit);
    let mut found = Vec::new();
    for _ in 0..1000 {
        let page = store.job_search(params.clone()).await.expect("job_search");
        assert!(page.jobs.len() <= limit as usize);
        assert!(page.scanned <= u64::from(params.scan_max));
        assert!(
            page.jobs.windows(2).all(|w| w[0].id > w[1].id),
            "newest first"
        );
        found.extend(page.jobs.iter().map(|job| job.id));
        match page.older {
            Some(cursor) => params.cursor = Some(cursor),
            None => return found,
        }
    }
    panic!("the search never ended");
}

fn expected(jobs: &[JobRow], criteria: &JobCriteria) -> Vec<JobId> {
    let mut ids: Vec<JobId> = jobs
        .iter()
        .filter(|job| criteria.matches(job, scheduled(job)))
        .map(|job| job.id)
        .collect();
    ids.sort_by(|a, b| b.cmp(a));
    ids
}

/// Each criterion alone and in combinations finds exactly the jobs that match it, with
/// `available` meaning due, `scheduled` not yet due, and the text searched in args and
/// metadata.
pub async fn every_criterion_matches<S: Store>(store: Arc<S>) {
    let jobs = seed(&store).await;
    let first = jobs.iter().map(|job| job.id).min().expect("jobs");
    let views = |v: &[StateView]| v.to_vec();
    let cases: Vec<JobCriteria> = vec![
        JobCriteria::default(),
        JobCriteria {
            states: views(&[StateView::Available]),
            ..JobCriteria::default()
        },
        JobCriteria {
            states: views(&[StateView::Scheduled]),
            ..JobCriteria::default()
        },
        JobCriteria {
            states: views(&[StateView::Available, StateView::Scheduled]),
            ..JobCriteria::default()
        },
        JobCriteria {
            states: StateView::FAILED.to_vec(),
            ..JobCriteria::default()
        },
        JobCriteria {
            states: views(&[
                StateView::Running,
                StateView::Completed,
                StateView::Cancelled,
            ]),
            ..JobCriteria::default()
        },
        JobCriteria {
            queues: vec!["mail".into()],
            kinds: vec!["email".into()],
            ..JobCriteria::default()
        },
        JobCriteria {
            tenant: Some("acme".into()),
            states: views(&[StateView::Available]),
            ..JobCriteria::default()
        },
        JobCriteria {
            ids: vec![first, JobId(first.0 + 3), JobId(first.0 + 100_000)],
            ..JobCriteria::default()
        },
        JobCriteria {
            unique_key: Some("key-10".into()),
            ..JobCriteria::default()
        },
        JobCriteria {
            correlation_id: Some("corr-1".into()),
            ..JobCriteria::default()
        },
        JobCriteria {
            correlation_id: Some("corr-0".into()),
            states: views(&[StateView::Available]),
            ..JobCriteria::default()
        },
        JobCriteria {
            parent_id: Some(first),
            ..JobCriteria::default()
        },
        JobCriteria {
            worker_id: Some("w1".into()),
            ..JobCriteria::default()
        },
        JobCriteria {
            created_after: Some(at(50)),
            ..JobCriteria::default()
        },
        JobCriteria {
            created_before: Some(at(50)),
            queues: vec!["report".into()],
            ..JobCriteria::default()
        },
        JobCriteria {
            finished_after: Some(at(400)),
            ..JobCriteria::default()
        },
        JobCriteria {
            finished_before: Some(at(650)),
            ..JobCriteria::default()
        },
        JobCriteria {
            text: Some("user12@example.com".into()),
            ..JobCriteria::default()
        },
        JobCriteria {
            text: Some("vip".into()),
            ..JobCriteria::default()
        },
        JobCriteria {
            text: Some("nowhere".into()),
            ..JobCriteria::default()
        },
        JobCriteria {
            created_after: Some(at(10)),
            created_before: Some(at(5)),
            ..JobCriteria::default()
        },
    ];
    for criteria in &cases {
        let want = expected(&jobs, criteria);
        assert_eq!(walk(&store, criteria, 1000).await, want, "{criteria:?}");
        assert_eq!(walk(&store, criteria, 3).await, want, "{criteria:?} by 3");
        let count = store.job_count(criteria.clone()).await.expect("job_count");
        assert!(count.exact, "{criteria:?}");
        assert_eq!(count.count, want.len() as u64, "{criteria:?}");
    }
    // The cases are not vacuous: the views split the available jobs.
    let due = expected(&jobs, &cases[1]).len();
    let waiting = expected(&jobs, &cases[2]).len();
    assert!(due > 0 && waiting > 0, "due {due}, scheduled {waiting}");
    assert_eq!(expected(&jobs, &cases[12]).len(), 2, "two children");
    assert_eq!(expected(&jobs, &cases[18]).len(), 1, "one text match");
}

/// The failure group criterion finds the jobs whose latest failure is in the group.
pub async fn failure_group_criterion<S: Store>(store: Arc<S>) {
    let jobs = seed(&store).await;
    let retryable = jobs
        .iter()
        .find(|job| job.state == JobState::Retryable)
        .expect("a retryable job");
    // A tenant's failures are grouped apart from other tenants' (issue 17).
    let group = stoker_core::fingerprint_of_tenant(
        &retryable.kind,
        stoker_core::ErrorKind::Error,
        &stoker_core::normalize_message("smtp 1"),
        retryable.tenant.as_deref(),
    );
    let criteria = JobCriteria {
        failure_group: Some(group),
        ..JobCriteria::default()
    };
    assert_eq!(walk(&store, &criteria, 10).await, vec![retryable.id]);
}

/// Pages run both ways from a cursor: older pages then newer pages back cover each match once,
/// in order, and a page's cursors point past its first and last jobs.
pub async fn keyset_pages_both_directions<S: Store>(store: Arc<S>) {
    let jobs = seed(&store).await;
    let criteria = JobCriteria {
        queues: vec!["mail".into()],
        ..JobCriteria::default()
    };
    let want = expected(&jobs, &criteria);
    assert!(want.len() > 8);
    let first = store
        .job_search(JobSearchParams::new(criteria.clone(), 4))
        .await
        .expect("job_search");
    assert_eq!(
        first.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        want[..4]
    );
    assert_eq!(first.older, Some(want[3]));
    assert!(!first.partial);
    // Two pages older, then one page newer from the second page's first job.
    let mut params = JobSearchParams::new(criteria.clone(), 4);
    params.cursor = first.older;
    let second = store.job_search(params.clone()).await.expect("job_search");
    assert_eq!(
        second.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        want[4..8]
    );
    assert_eq!(second.newer, Some(want[4]));
    params.cursor = second.newer;
    params.direction = SearchDirection::Newer;
    let back = store.job_search(params).await.expect("job_search");
    assert_eq!(
        back.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        want[..4],
        "newer pages list newest first too"
    );
    // From the newest job there is nothing newer.
    let mut params = JobSearchParams::new(criteria, 4);
    params.cursor = Some(want[0]);
    params.direction = SearchDirection::Newer;
    let top = store.job_search(params).await.expect("job_search");
    assert!(top.jobs.is_empty());
    assert_eq!(top.newer, None);
}

/// A page reads at most its scan budget of index rows: a sparse criterion comes back short,
/// marked partial, with a cursor that goes on, and walking on finds every match.
pub async fn scan_budget_bounds_each_page<S: Store>(store: Arc<S>) {
    let jobs = seed(&store).await;
    let criteria = JobCriteria {
        text: Some("user1".into()),
        ..JobCriteria::default()
    };
    let want = expected(&jobs, &criteria);
    assert!(want.len() >= 3, "user1, user10..user19");
    let mut params = JobSearchParams::new(criteria, 100);
    params.scan_max = 4;
    let mut found = Vec::new();
    let mut partial_pages = 0;
    loop {
        let page = store.job_search(params.clone()).await.expect("job_search");
        assert!(page.scanned <= 4, "read {} rows", page.scanned);
        if page.partial {
            partial_pages += 1;
            assert!(page.older.is_some(), "a partial page goes on");
        }
        found.extend(page.jobs.iter().map(|job| job.id));
        match page.older {
            Some(cursor) => params.cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(found, want);
    assert!(partial_pages >= jobs.len() / 4 - 1);
}

/// Counts are exact up to the cap, then a lower bound.
pub async fn count_is_capped<S: Store>(store: Arc<S>) {
    let many = (JOB_COUNT_CAP + 5) as usize;
    let jobs = (0..many).map(|_| job_in("bulk", "tiny")).collect();
    insert(&store, jobs, t0()).await;
    insert_one(&store, job_in("other", "tiny"), t0()).await;
    let all = store
        .job_count(JobCriteria::default())
        .await
        .expect("count");
    assert_eq!((all.count, all.exact), (JOB_COUNT_CAP, false));
    assert_eq!(all.to_string(), format!("{JOB_COUNT_CAP}+"));
    let queue = store
        .job_count(JobCriteria {
            queues: vec!["bulk".into()],
            ..JobCriteria::default()
        })
        .await
        .expect("count");
    assert_eq!((queue.count, queue.exact), (JOB_COUNT_CAP, false));
    let other = store
        .job_count(JobCriteria {
            queues: vec!["other".into()],
            ..JobCriteria::default()
        })
        .await
        .expect("count");
    assert_eq!((other.count, other.exact), (1, true));
}

/// Bad parameters are refused naming the field, with no prefix for a search.
pub async fn invalid_params_refused<S: Store>(store: Arc<S>) {
    let mut params = JobSearchParams::new(JobCriteria::default(), 0);
    expect_invalid(store.job_search(params.clone()).await, "limit");
    params.limit = 10;
    params.scan_max = 0;
    expect_invalid(store.job_search(params.clone()).await, "scan_max");
    params.scan_max = 10;
    params.criteria.queues = vec!["bad queue".into()];
    expect_invalid(store.job_search(params).await, "queues[0]");
    let criteria = JobCriteria {
        text: Some(String::new()),
        ..JobCriteria::default()
    };
    expect_invalid(store.job_count(criteria).await, "text");
}

/// A bulk operation acts on exactly the jobs a search with its criteria finds: cancelling
/// `scheduled` jobs of a correlation id leaves due jobs alone.
pub async fn bulk_operation_uses_search_criteria<S: Store>(store: Arc<S>) {
    let mut jobs = Vec::new();
    for n in 0..6 {
        let mut job = job_in("mail", "email");
        job.metadata.correlation_id = Some(if n < 4 { "order-1" } else { "order-2" }.into());
        job.run_at = Some(if n % 2 == 0 { at(10_000) } else { t0() });
        jobs.push(job);
    }
    let ids = insert(&store, jobs, t0()).await;
    let criteria = JobCriteria {
        states: vec![StateView::Scheduled],
        correlation_id: Some("order-1".into()),
        ..JobCriteria::default()
    };
    let found = walk(&store, &criteria, 10).await;
    assert_eq!(found, vec![ids[2], ids[0]]);
    store
        .bulk_op_create(BulkOpCreateParams {
            action: BulkAction::Cancel,
            filter: criteria,
            priority: None,
            run_at: None,
            created_by: None,
            now: at(1),
        })
        .await
        .expect("bulk_op_create");
    while store
        .bulk_op_step(BulkOpStepParams {
            limit: 2,
            now: at(2),
        })
        .await
        .expect("bulk_op_step")
        .is_some()
    {}
    for (n, id) in ids.iter().enumerate() {
        let state = get(&store, *id).await.state;
        let want = if n < 4 && n % 2 == 0 {
            JobState::Cancelled
        } else {
            JobState::Available
        };
        assert_eq!(state, want, "job {n}");
    }
}
