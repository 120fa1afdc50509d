//! The leader lease: election, renewal, expiry, resignation and exclusivity.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use stoker_core::{LeaderElectParams, LeaderRow, Store};
use tokio::sync::Barrier;

use crate::fixture::{at, t0};

const TTL: Duration = Duration::from_secs(30);

async fn elect<S: Store>(store: &Arc<S>, leader_id: &str, now: DateTime<Utc>) -> bool {
    store
        .leader_attempt_elect(LeaderElectParams {
            leader_id: leader_id.to_owned(),
            now,
            ttl: TTL,
        })
        .await
        .expect("leader_attempt_elect")
}

async fn leader<S: Store>(store: &Arc<S>, now: DateTime<Utc>) -> Option<LeaderRow> {
    store.leader_get(now).await.expect("leader_get")
}

fn row(leader_id: &str, elected_at: DateTime<Utc>, expires_at: DateTime<Utc>) -> Option<LeaderRow> {
    Some(LeaderRow {
        leader_id: leader_id.to_owned(),
        elected_at,
        expires_at,
    })
}

/// With no leader, the first candidate wins a term of `ttl`.
pub async fn elect_when_empty<S: Store>(store: Arc<S>) {
    assert_eq!(leader(&store, t0()).await, None);
    assert!(elect(&store, "a", t0()).await);
    assert_eq!(leader(&store, at(1)).await, row("a", t0(), at(30)));
}

/// While the term is live, another candidate loses and the leader stays.
pub async fn second_fails_while_live<S: Store>(store: Arc<S>) {
    assert!(elect(&store, "a", t0()).await);
    assert!(!elect(&store, "b", at(10)).await);
    assert!(!elect(&store, "b", at(29)).await);
    assert_eq!(leader(&store, at(29)).await, row("a", t0(), at(30)));
}

/// The holder renews its term: `expires_at` moves to `now + ttl`, `elected_at` stays.
pub async fn holder_renews<S: Store>(store: Arc<S>) {
    assert!(elect(&store, "a", t0()).await);
    assert!(elect(&store, "a", at(20)).await, "the holder renews");
    assert_eq!(leader(&store, at(21)).await, row("a", t0(), at(50)));
    assert!(
        !elect(&store, "b", at(40)).await,
        "the renewed term is live past the first expiry"
    );
    assert_eq!(
        leader(&store, at(40)).await.map(|l| l.leader_id),
        Some("a".into())
    );
}

/// Once the term has expired, another candidate takes over; the old leader then loses.
pub async fn takeover_after_expiry<S: Store>(store: Arc<S>) {
    assert!(elect(&store, "a", t0()).await);
    assert!(elect(&store, "b", at(31)).await);
    assert_eq!(leader(&store, at(31)).await, row("b", at(31), at(61)));
    assert!(!elect(&store, "a", at(32)).await);
    assert_eq!(
        leader(&store, at(32)).await.map(|l| l.leader_id),
        Some("b".into())
    );
}

/// Resigning lets another take over at once; a non-leader's resignation changes nothing.
pub async fn resign_hands_over<S: Store>(store: Arc<S>) {
    assert!(elect(&store, "a", t0()).await);
    store.leader_resign("b").await.expect("leader_resign");
    assert_eq!(leader(&store, at(1)).await, row("a", t0(), at(30)));
    store.leader_resign("a").await.expect("leader_resign");
    assert_eq!(leader(&store, at(1)).await, None);
    assert!(elect(&store, "b", at(2)).await);
    assert_eq!(leader(&store, at(2)).await, row("b", at(2), at(32)));
    store
        .leader_resign("a")
        .await
        .expect("resigning when not leading is fine");
    assert!(elect(&store, "b", at(3)).await);
}

/// `leader_get` returns `None` once the term has expired at the given `now`.
pub async fn get_none_after_expiry<S: Store>(store: Arc<S>) {
    assert!(elect(&store, "a", t0()).await);
    assert!(leader(&store, at(29)).await.is_some());
    assert_eq!(leader(&store, at(31)).await, None);
    assert_eq!(leader(&store, at(3600)).await, None);
}

/// 8 candidates racing at the same instant: exactly one wins, and `leader_get` names it. Run
/// three times, each after the previous term expired.
pub async fn exclusive_under_race<S: Store>(store: Arc<S>) {
    const CANDIDATES: usize = 8;
    for round in 0..3 {
        let now = at(round * 100);
        let barrier = Arc::new(Barrier::new(CANDIDATES));
        let tasks: Vec<_> = (0..CANDIDATES)
            .map(|n| {
                let store = Arc::clone(&store);
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    let id = format!("candidate-{round}-{n}");
                    barrier.wait().await;
                    let won = elect(&store, &id, now).await;
                    (id, won)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            let (id, won) = task.await.expect("candidate panicked");
            if won {
                winners.push(id);
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one leader, got {winners:?}"
        );
        let current = leader(&store, now).await.expect("a leader");
        assert_eq!(current.leader_id, winners[0]);
    }
}
