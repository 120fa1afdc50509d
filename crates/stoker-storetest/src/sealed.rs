//! Sealed payloads (issue 17 item 4): the walk and the swap of a key rotation. The store sees
//! only JSON objects with `$enc`, `kid` and `n`; what is inside `ct` is the client's.

use std::sync::Arc;

use serde_json::{json, Value};
use stoker_core::{JobId, JobInsert, JobSealedListParams, Outcome, SealedRewrite, Store};

use crate::fixture::{at, claim_exactly, finish, get, insert};

fn sealed(kid: u32, nonce: &str) -> Value {
    json!({"$enc": "v1", "kid": kid, "n": nonce, "ct": "AAAA"})
}

fn list(after: i64, except_kid: Option<u32>, limit: u32) -> JobSealedListParams {
    JobSealedListParams {
        after: JobId(after),
        except_kid,
        limit,
    }
}

/// The walk finds jobs whose args or result are sealed under another key than the one kept,
/// by id ascending after the cursor; plain payloads (objects, arrays, strings that merely
/// mention `$enc`) are never listed.
pub async fn list_finds_sealed_values<S: Store>(store: Arc<S>) {
    let mut plain_with_kid = JobInsert::new("k", json!({"kid": 1, "n": "x"}));
    plain_with_kid.tenant = Some("acme".into());
    let ids = insert(
        &store,
        vec![
            JobInsert::new("k", sealed(1, "n1")),
            JobInsert::new("k", json!({"to": "$enc"})),
            plain_with_kid,
            JobInsert::new("k", sealed(2, "n2")),
            JobInsert::new("k", json!(["$enc"])),
            JobInsert::new("r", json!({"plain": true})),
        ],
        at(0),
    )
    .await;
    // The last job's result is sealed under key 1, its args are plain.
    let row = claim_exactly(&store, "default", "r", ids[5], at(1)).await;
    finish(
        &store,
        ids[5],
        row.fence,
        Outcome::Completed {
            result: Some(sealed(1, "n3")),
        },
        at(2),
    )
    .await;

    let every: Vec<JobId> = store
        .job_sealed_list(list(0, None, 100))
        .await
        .expect("list")
        .into_iter()
        .map(|job| job.id)
        .collect();
    assert_eq!(every, vec![ids[0], ids[3], ids[5]]);

    let old = store
        .job_sealed_list(list(0, Some(2), 100))
        .await
        .expect("list");
    assert_eq!(
        old.iter().map(|job| job.id).collect::<Vec<_>>(),
        vec![ids[0], ids[5]]
    );
    assert_eq!(old[0].args, sealed(1, "n1"));
    assert_eq!(old[0].kind, "k");
    assert_eq!(old[1].result, Some(sealed(1, "n3")));

    let page = store
        .job_sealed_list(list(ids[0].0, None, 1))
        .await
        .expect("list");
    assert_eq!(
        page.iter().map(|job| job.id).collect::<Vec<_>>(),
        vec![ids[3]]
    );
    assert!(store
        .job_sealed_list(list(ids[5].0, None, 10))
        .await
        .expect("list")
        .is_empty());
}

/// A rewrite applies only while the stored value still has the nonce it was read with, and
/// changes nothing else of the job.
pub async fn rewrite_compares_the_nonce<S: Store>(store: Arc<S>) {
    let ids = insert(
        &store,
        vec![
            JobInsert::new("k", sealed(1, "a")),
            JobInsert::new("k", sealed(1, "b")),
        ],
        at(0),
    )
    .await;
    let before = get(&store, ids[0]).await;
    let replaced = store
        .job_sealed_rewrite(vec![
            SealedRewrite {
                id: ids[0],
                result: false,
                old_nonce: "a".into(),
                value: sealed(2, "a2"),
            },
            SealedRewrite {
                id: ids[1],
                result: false,
                old_nonce: "stale".into(),
                value: sealed(2, "b2"),
            },
            SealedRewrite {
                id: ids[1],
                result: true,
                old_nonce: "b".into(),
                value: sealed(2, "b3"),
            },
        ])
        .await
        .expect("rewrite");
    assert_eq!(replaced, 1);
    let after = get(&store, ids[0]).await;
    assert_eq!(after.args, sealed(2, "a2"));
    assert_eq!(
        (after.state, after.attempt, after.run_at, after.result),
        (before.state, before.attempt, before.run_at, None)
    );
    let untouched = get(&store, ids[1]).await;
    assert_eq!((untouched.args, untouched.result), (sealed(1, "b"), None));
    assert_eq!(
        store.job_sealed_rewrite(Vec::new()).await.expect("rewrite"),
        0
    );
}
