//! [`Store::migrate`]: idempotent, safe to run concurrently, and it keeps the data.

use std::sync::Arc;

use stoker_core::Store;

use crate::fixture::{all_jobs, insert, job, t0};

/// The factory migrated the store; migrating again (also four at once) is a no-op that keeps
/// every job, and the schema is current.
pub async fn twice_is_noop<S: Store>(store: Arc<S>) {
    assert!(store
        .migrations_current()
        .await
        .expect("migrations_current"));
    let id = insert(&store, vec![job("kept")], t0()).await[0];
    let before = all_jobs(&store).await;

    store.migrate().await.expect("a second migrate is a no-op");
    let racing: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.migrate().await })
        })
        .collect();
    for task in racing {
        task.await
            .expect("migrate panicked")
            .expect("concurrent migrates succeed");
    }

    assert!(store
        .migrations_current()
        .await
        .expect("migrations_current"));
    assert_eq!(all_jobs(&store).await, before);
    assert_eq!(before[0].id, id);
}
