//! Tenants (issue 17, item 1): a claim bound to a tenant takes only that tenant's jobs.

use std::sync::Arc;
use std::time::Duration;

use stoker_core::{
    JobId, JobInsert, JobState, LimitKey, LimitSetParams, LimitSpec, Priority, QueueParams, Store,
    QUEUE_DEFAULT,
};

use crate::fixture::{at, claim_params, get, insert, job, stats_by_tenant, t0};

fn owned(kind: &str, tenant: Option<&str>, priority: Priority) -> JobInsert {
    let mut job = job(kind);
    job.tenant = tenant.map(str::to_owned);
    job.priority = priority;
    job
}

async fn claim_for<S: Store>(
    store: &Arc<S>,
    tenant: &str,
    kinds: &[&str],
    limit: u32,
) -> Vec<JobId> {
    let mut params = claim_params(QUEUE_DEFAULT, limit, "tenant-worker", t0());
    params.kinds = kinds.iter().map(|kind| (*kind).to_owned()).collect();
    params.lease = Some(Duration::from_secs(30));
    store
        .job_claim_tenant(params, tenant)
        .await
        .expect("job_claim_tenant")
        .iter()
        .map(|row| row.id)
        .collect()
}

/// A tenant's claim takes its own due jobs in claim order (priority, then run time, then id),
/// never another tenant's or a job without a tenant, honours the kind filter and the limit,
/// sets the lease, and moves the tenant's counts to running.
pub async fn claim_takes_only_own_jobs<S: Store>(store: Arc<S>) {
    let ids = insert(
        &store,
        vec![
            owned("a", Some("acme"), Priority::NORMAL),   // 0
            owned("a", Some("globex"), Priority::HIGH),   // 1
            owned("b", Some("acme"), Priority::HIGH),     // 2
            owned("a", None, Priority::CRITICAL),         // 3
            owned("a", Some("acme"), Priority::NORMAL),   // 4
            owned("a", Some("acme-2"), Priority::NORMAL), // 5: a prefix is not the tenant
        ],
        t0(),
    )
    .await;

    assert_eq!(
        claim_for(&store, "acme", &["a"], 1).await,
        vec![ids[0]],
        "the kind filter and the limit hold; globex's and the tenantless job stay"
    );
    assert_eq!(
        claim_for(&store, "acme", &[], 10).await,
        vec![ids[2], ids[4]],
        "priority first, then id"
    );
    assert!(claim_for(&store, "acme", &[], 10).await.is_empty());

    let claimed = get(&store, ids[2]).await;
    assert_eq!(claimed.state, JobState::Running);
    assert_eq!(claimed.worker_id.as_deref(), Some("tenant-worker"));
    assert_eq!(claimed.lease_expires_at, Some(at(30)));
    for other in [ids[1], ids[3], ids[5]] {
        assert_eq!(get(&store, other).await.state, JobState::Available);
    }
    let counts = stats_by_tenant(&store).await;
    let running = counts
        .iter()
        .filter(|((_, _, _, state), _)| *state == "running")
        .map(|((_, _, tenant, _), (count, _))| (tenant.clone(), *count))
        .fold(0, |sum, (tenant, count)| {
            assert_eq!(tenant.as_deref(), Some("acme"), "only acme's jobs run");
            sum + count
        });
    assert_eq!(running, 3);
    assert_eq!(claim_for(&store, "globex", &[], 10).await, vec![ids[1]]);
}

/// A tenant's claim takes nothing from a paused queue, and nothing that is not yet due.
pub async fn claim_respects_pause_and_schedule<S: Store>(store: Arc<S>) {
    let mut later = owned("a", Some("acme"), Priority::NORMAL);
    later.run_at = Some(at(60));
    let ids = insert(
        &store,
        vec![later, owned("a", Some("acme"), Priority::NORMAL)],
        t0(),
    )
    .await;
    store
        .queue_pause(QueueParams {
            queue: QUEUE_DEFAULT.to_owned(),
            now: t0(),
        })
        .await
        .expect("queue_pause");
    assert!(claim_for(&store, "acme", &[], 10).await.is_empty());
    store
        .queue_resume(QueueParams {
            queue: QUEUE_DEFAULT.to_owned(),
            now: t0(),
        })
        .await
        .expect("queue_resume");
    assert_eq!(
        claim_for(&store, "acme", &[], 10).await,
        vec![ids[1]],
        "the scheduled job waits"
    );
}

/// A tenant's claim in a queue a limit governs (issues 16 and 17) takes only its own jobs and
/// holds the limit: with a concurrency of 2 per tenant, acme's worker gets two of acme's jobs,
/// never globex's, and nothing more until one of them ends.
pub async fn limited_claim_takes_only_own_jobs<S: Store>(store: Arc<S>) {
    store
        .limit_set(LimitSetParams {
            spec: LimitSpec {
                name: "per-tenant".to_owned(),
                queue: Some(QUEUE_DEFAULT.to_owned()),
                kind: None,
                key: LimitKey::Tenant,
                rate: None,
                concurrency: Some(2),
                fair: None,
                quota: None,
            },
            now: t0(),
        })
        .await
        .expect("limit_set");
    let ids = insert(
        &store,
        vec![
            owned("a", Some("globex"), Priority::CRITICAL),
            owned("a", Some("acme"), Priority::NORMAL),
            owned("a", Some("acme"), Priority::NORMAL),
            owned("a", Some("acme"), Priority::NORMAL),
        ],
        t0(),
    )
    .await;

    assert_eq!(
        claim_for(&store, "acme", &[], 10).await,
        vec![ids[1], ids[2]],
        "acme's own jobs, two at most"
    );
    assert!(
        claim_for(&store, "acme", &[], 10).await.is_empty(),
        "the limit holds for the tenant's next claim"
    );
    assert_eq!(get(&store, ids[0]).await.state, JobState::Available);
    assert_eq!(get(&store, ids[3]).await.state, JobState::Available);
    let usage = store.limit_usage(t0()).await.expect("limit_usage");
    let acme = usage
        .iter()
        .find(|row| row.name == "per-tenant" && row.key == "acme")
        .expect("acme's limiter");
    assert_eq!(acme.running, 2, "{usage:?}");
}

// --- stream tenant ---

/// A tenant's queue depths (issue 17) count its own waiting jobs only: due and scheduled, and
/// the `run_at` of its oldest due one, never another tenant's or a tenantless job.
pub async fn depths_count_only_own_jobs<S: Store>(store: Arc<S>) {
    let mut acme_scheduled = owned("a", Some("acme"), Priority::NORMAL);
    acme_scheduled.run_at = Some(at(10_000));
    let mut globex_old = owned("a", Some("globex"), Priority::NORMAL);
    globex_old.run_at = Some(at(-500));
    insert(
        &store,
        vec![globex_old, owned("a", None, Priority::NORMAL)],
        at(-500),
    )
    .await;
    insert(
        &store,
        vec![owned("a", Some("acme"), Priority::NORMAL)],
        at(-100),
    )
    .await;
    insert(
        &store,
        vec![owned("b", Some("acme"), Priority::NORMAL), acme_scheduled],
        at(-50),
    )
    .await;
    insert(
        &store,
        vec![owned("a", Some("acme-2"), Priority::NORMAL)],
        at(-900),
    )
    .await;
    // Scheduled jobs come due only through the stage; none of these is due yet.
    crate::fixture::stage(&store, t0()).await;

    let depths = store
        .queue_depths_tenant("acme")
        .await
        .expect("queue_depths_tenant");
    assert_eq!(depths.len(), 1, "{depths:?}");
    assert_eq!(depths[0].queue, QUEUE_DEFAULT);
    assert_eq!(
        (depths[0].due, depths[0].scheduled),
        (2, 1),
        "acme's two due jobs and its scheduled one"
    );
    assert_eq!(
        depths[0].oldest_due_at,
        Some(at(-100)),
        "acme's oldest due job, not globex's or the tenantless one"
    );
    assert!(store
        .queue_depths_tenant("initech")
        .await
        .expect("queue_depths_tenant")
        .is_empty());
}

/// A tenant's prune (issue 17) deletes only its own finished jobs by age, moves only its
/// counts, and refuses the rules that count every tenant's jobs.
pub async fn prune_deletes_only_own_jobs<S: Store>(store: Arc<S>) {
    let mut ids = Vec::new();
    for tenant in [
        Some("acme"),
        Some("globex"),
        None,
        Some("acme-2"),
        Some("acme"),
    ] {
        let id = insert(
            &store,
            vec![owned("a", tenant, Priority::NORMAL)],
            at(-1000),
        )
        .await[0];
        crate::fixture::complete(&store, QUEUE_DEFAULT, "a", id, at(-900)).await;
        ids.push(id);
    }
    let waiting = insert(
        &store,
        vec![owned("a", Some("acme"), Priority::NORMAL)],
        at(-1000),
    )
    .await[0];
    let params = |limit| stoker_core::JobPruneParams {
        completed_before: Some(at(-800)),
        cancelled_before: None,
        discarded_before: None,
        keep_last: None,
        limit,
        queue_rules: Vec::new(),
    };

    assert_eq!(
        store
            .job_prune_tenant(params(1), "acme")
            .await
            .expect("job_prune_tenant"),
        1,
        "the limit holds"
    );
    assert_eq!(
        store
            .job_prune_tenant(params(100), "acme")
            .await
            .expect("job_prune_tenant"),
        1,
        "then the rest of acme's finished jobs"
    );
    for id in [ids[0], ids[4]] {
        assert!(store.job_get(id).await.expect("job_get").is_none());
    }
    for id in [ids[1], ids[2], ids[3], waiting] {
        assert!(
            store.job_get(id).await.expect("job_get").is_some(),
            "job {id} of another tenant (or unfinished) stays"
        );
    }
    let stats = stats_by_tenant(&store).await;
    let completed = |tenant: Option<&str>| {
        stats
            .get(&(
                QUEUE_DEFAULT.to_owned(),
                "a".to_owned(),
                tenant.map(str::to_owned),
                "completed",
            ))
            .map_or(0, |(count, _)| *count)
    };
    assert_eq!(completed(Some("acme")), 0, "acme's counts moved");
    assert_eq!(completed(Some("globex")), 1);
    assert_eq!(completed(None), 1);
    assert_eq!(completed(Some("acme-2")), 1);

    let mut keep = params(10);
    keep.keep_last = Some(1);
    crate::fixture::expect_invalid(store.job_prune_tenant(keep, "globex").await, "keep_last");
    assert!(
        store.job_get(ids[1]).await.expect("job_get").is_some(),
        "a refused prune deletes nothing"
    );
}
