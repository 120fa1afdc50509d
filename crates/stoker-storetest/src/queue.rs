//! Queues: pause, resume and list.

use std::sync::Arc;

use stoker_core::{QueueParams, QueueRow, Store};

use crate::fixture::{at, claim_ids, expect_invalid, insert, job_in, t0};

fn params(queue: &str, secs: i64) -> QueueParams {
    QueueParams {
        queue: queue.to_owned(),
        now: at(secs),
    }
}

/// A paused queue yields nothing to claims but still takes inserts; other queues run on; once
/// resumed, everything in it is claimable.
pub async fn pause_stops_claims<S: Store>(store: Arc<S>) {
    let mut ids = insert(
        &store,
        vec![job_in("mail", "send"), job_in("mail", "send")],
        t0(),
    )
    .await;
    let other = insert(&store, vec![job_in("sms", "send")], t0()).await;
    store
        .queue_pause(params("mail", 1))
        .await
        .expect("queue_pause");

    assert!(
        claim_ids(&store, "mail", 10, at(2)).await.is_empty(),
        "a paused queue yields nothing"
    );
    ids.extend(insert(&store, vec![job_in("mail", "send")], at(3)).await);
    assert!(claim_ids(&store, "mail", 10, at(4)).await.is_empty());
    assert_eq!(
        claim_ids(&store, "sms", 10, at(4)).await,
        other,
        "other queues run on"
    );

    store
        .queue_resume(params("mail", 5))
        .await
        .expect("queue_resume");
    assert_eq!(claim_ids(&store, "mail", 10, at(6)).await, ids);
}

/// Pausing a paused queue (or resuming a running one) is a no-op.
pub async fn pause_is_idempotent<S: Store>(store: Arc<S>) {
    store
        .queue_pause(params("q", 1))
        .await
        .expect("queue_pause");
    store
        .queue_pause(params("q", 2))
        .await
        .expect("pausing twice is fine");
    let rows = store.queue_list().await.expect("queue_list");
    assert_eq!(
        rows,
        vec![QueueRow {
            name: "q".into(),
            paused: true,
            updated_at: at(1)
        }],
        "a second pause changes nothing"
    );

    store
        .queue_resume(params("q", 3))
        .await
        .expect("queue_resume");
    store
        .queue_resume(params("q", 4))
        .await
        .expect("resuming twice is fine");
    let rows = store.queue_list().await.expect("queue_list");
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].paused);
    let id = insert(&store, vec![job_in("q", "k")], at(5)).await;
    assert_eq!(claim_ids(&store, "q", 10, at(5)).await, id);
}

/// `queue_list` lists queues with settings, by name, with their paused flags and when they
/// last changed; a queue never paused or resumed is not listed.
pub async fn list_shows_paused_flags<S: Store>(store: Arc<S>) {
    assert!(store.queue_list().await.expect("queue_list").is_empty());
    insert(&store, vec![job_in("untouched", "k")], t0()).await;
    store
        .queue_pause(params("zeta", 1))
        .await
        .expect("queue_pause");
    store
        .queue_pause(params("alpha", 2))
        .await
        .expect("queue_pause");
    store
        .queue_resume(params("alpha", 3))
        .await
        .expect("queue_resume");
    store
        .queue_pause(params("mid", 4))
        .await
        .expect("queue_pause");

    let rows = store.queue_list().await.expect("queue_list");
    assert_eq!(
        rows,
        vec![
            QueueRow {
                name: "alpha".into(),
                paused: false,
                updated_at: at(3)
            },
            QueueRow {
                name: "mid".into(),
                paused: true,
                updated_at: at(4)
            },
            QueueRow {
                name: "zeta".into(),
                paused: true,
                updated_at: at(1)
            },
        ]
    );
}

/// An invalid queue name is `Invalid` naming `queue`, and nothing is written.
pub async fn invalid_name_rejected<S: Store>(store: Arc<S>) {
    for name in ["has space", "", "semi;colon", &"q".repeat(129)] {
        expect_invalid(store.queue_pause(params(name, 1)).await, "queue");
        expect_invalid(store.queue_resume(params(name, 1)).await, "queue");
    }
    assert!(
        store.queue_list().await.expect("queue_list").is_empty(),
        "nothing written"
    );
}
