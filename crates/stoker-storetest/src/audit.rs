//! The audit log (issue 17, item 3): rows read back exactly, newest first, filtered by tenant,
//! action (or action prefix), actor and time, paged by id; pruned by age, oldest first.

use std::sync::Arc;

use serde_json::json;
use stoker_core::{AuditEntry, AuditListParams, AuditRow, Store};

use crate::fixture::{at, expect_invalid};

fn entry(secs: i64, tenant: Option<&str>, action: &str, actor: &str) -> AuditEntry {
    AuditEntry {
        at: at(secs),
        actor: actor.to_owned(),
        token_id: None,
        via: "api".to_owned(),
        tenant: tenant.map(str::to_owned),
        action: action.to_owned(),
        target: Some(format!("job {secs}")),
        filter: None,
        affected: Some(1),
        source: None,
    }
}

async fn list<S: Store>(store: &Arc<S>, params: AuditListParams) -> Vec<AuditRow> {
    store.audit_list(params).await.expect("audit_list")
}

fn actions(rows: &[AuditRow]) -> Vec<(i64, &str)> {
    rows.iter()
        .map(|row| {
            (
                (row.entry.at - at(0)).num_seconds(),
                row.entry.action.as_str(),
            )
        })
        .collect()
}

fn every(limit: u32) -> AuditListParams {
    AuditListParams {
        limit,
        ..AuditListParams::default()
    }
}

/// Every field reads back as written (a filter as JSON, an address, a token id); ids ascend in
/// the order of writing; lists run newest first and filter by tenant, action, action prefix,
/// actor and time range, and page by id.
pub async fn append_and_list<S: Store>(store: Arc<S>) {
    let full = AuditEntry {
        at: at(1),
        actor: "billing".to_owned(),
        token_id: Some("ab12cd34".to_owned()),
        via: "dashboard".to_owned(),
        tenant: Some("acme".to_owned()),
        action: "bulk.start".to_owned(),
        target: None,
        filter: Some(json!({"states": ["discarded"], "queues": ["mail"]})),
        affected: Some(1200),
        source: Some("192.0.2.7:51234".to_owned()),
    };
    let first = store
        .audit_append(full.clone())
        .await
        .expect("audit_append");
    assert_eq!(first.entry, full);
    let mut last = first.id;
    for row in [
        entry(2, Some("acme"), "job.cancel", "billing"),
        entry(3, Some("globex"), "job.retry", "ops"),
        entry(4, None, "queue.pause", "root"),
        entry(5, Some("acme"), "job.delete", "ops"),
    ] {
        let appended = store.audit_append(row).await.expect("audit_append");
        assert!(appended.id > last, "ids ascend in the order of writing");
        last = appended.id;
    }

    let all = list(&store, every(100)).await;
    assert_eq!(
        actions(&all),
        vec![
            (5, "job.delete"),
            (4, "queue.pause"),
            (3, "job.retry"),
            (2, "job.cancel"),
            (1, "bulk.start"),
        ]
    );
    assert_eq!(all[4], first);
    let acme = list(
        &store,
        AuditListParams {
            tenant: Some("acme".into()),
            ..every(100)
        },
    )
    .await;
    assert_eq!(
        actions(&acme),
        vec![(5, "job.delete"), (2, "job.cancel"), (1, "bulk.start")]
    );
    let jobs = list(
        &store,
        AuditListParams {
            action: Some("job.".into()),
            ..every(100)
        },
    )
    .await;
    assert_eq!(jobs.len(), 3, "a prefix ending in a dot");
    let exact = list(
        &store,
        AuditListParams {
            action: Some("job.retry".into()),
            ..every(100)
        },
    )
    .await;
    assert_eq!(actions(&exact), vec![(3, "job.retry")]);
    let by_ops = list(
        &store,
        AuditListParams {
            actor: Some("ops".into()),
            since: Some(at(4)),
            ..every(100)
        },
    )
    .await;
    assert_eq!(actions(&by_ops), vec![(5, "job.delete")]);
    let window = list(
        &store,
        AuditListParams {
            since: Some(at(2)),
            until: Some(at(4)),
            ..every(100)
        },
    )
    .await;
    assert_eq!(actions(&window), vec![(3, "job.retry"), (2, "job.cancel")]);

    let page = list(&store, every(2)).await;
    assert_eq!(actions(&page), vec![(5, "job.delete"), (4, "queue.pause")]);
    let next = list(
        &store,
        AuditListParams {
            before_id: Some(page[1].id),
            ..every(2)
        },
    )
    .await;
    assert_eq!(actions(&next), vec![(3, "job.retry"), (2, "job.cancel")]);
}

/// Pruning deletes rows written before the cutoff, oldest first, at most `limit` per call;
/// newer rows stay.
pub async fn prune_by_age<S: Store>(store: Arc<S>) {
    for secs in [10, 20, 30, 40] {
        store
            .audit_append(entry(secs, None, "job.cancel", "root"))
            .await
            .expect("audit_append");
    }
    assert_eq!(store.audit_prune(at(35), 2).await.expect("prune"), 2);
    assert_eq!(
        actions(&list(&store, every(100)).await),
        vec![(40, "job.cancel"), (30, "job.cancel")],
        "the oldest went first"
    );
    assert_eq!(store.audit_prune(at(35), 2).await.expect("prune"), 1);
    assert_eq!(store.audit_prune(at(35), 2).await.expect("prune"), 0);
    assert_eq!(list(&store, every(100)).await.len(), 1);
}

/// A bad list request is refused naming the field.
pub async fn invalid_list_refused<S: Store>(store: Arc<S>) {
    expect_invalid(store.audit_list(every(0)).await, "limit");
    expect_invalid(
        store
            .audit_list(AuditListParams {
                before_id: Some(0),
                ..every(10)
            })
            .await,
        "before_id",
    );
    expect_invalid(
        store
            .audit_list(AuditListParams {
                tenant: Some(String::new()),
                ..every(10)
            })
            .await,
        "tenant",
    );
}
