//! The audit log through the client (issue 17, item 3), on every store: management actions are
//! recorded with their actor, face, tenant, target and count; a tenant reads only its own rows;
//! the pruner deletes rows past `audit_retention`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stoker::maintenance::{Pruner, PrunerConfig};
use stoker::{
    Actor, AuditListParams, Client, EnqueueOptions, Error, RetryFilter, Store, StubClock,
};

fn every(limit: u32) -> AuditListParams {
    AuditListParams {
        limit,
        ..AuditListParams::default()
    }
}

mod scenarios {
    use super::*;

    pub async fn management_actions_are_recorded_in_their_scope(store: Arc<dyn Store>) {
        let admin = Client::new(Arc::clone(&store));
        let mut ops = Actor::new("oncall", "api");
        ops.token_id = Some("ab12cd34".to_owned());
        ops.source = Some("192.0.2.1:4000".to_owned());
        let acme = admin.for_tenant("acme").with_actor(ops);
        let job = acme
            .enqueue_raw("k", json!({}), EnqueueOptions::new())
            .await
            .unwrap();
        let theirs = admin
            .enqueue_raw("k", json!({}), EnqueueOptions::new().tenant("globex"))
            .await
            .unwrap();
        // An enqueue is not audited; a cancel, a retry and a bulk retry are.
        acme.cancel(job.id).await.unwrap();
        acme.retry(job.id).await.unwrap();
        acme.cancel(job.id).await.unwrap();
        let report = acme
            .retry_many(
                &RetryFilter {
                    states: vec![stoker::JobState::Cancelled],
                    ..RetryFilter::default()
                },
                |_| {},
            )
            .await
            .unwrap();
        assert_eq!(report.retried, 1);
        // A refused action writes nothing.
        assert!(matches!(
            acme.cancel(theirs.id).await,
            Err(Error::NotFound(_))
        ));
        admin.pause("mail").await.unwrap();

        let rows = admin.audit_list(every(100)).await.unwrap();
        let actions: Vec<&str> = rows.iter().map(|row| row.entry.action.as_str()).collect();
        assert_eq!(
            actions,
            vec![
                "queue.pause",
                "job.retry_many",
                "job.cancel",
                "job.retry",
                "job.cancel"
            ]
        );
        let cancel = &rows[4].entry;
        assert_eq!(cancel.actor, "oncall");
        assert_eq!(cancel.via, "api");
        assert_eq!(cancel.token_id.as_deref(), Some("ab12cd34"));
        assert_eq!(cancel.source.as_deref(), Some("192.0.2.1:4000"));
        assert_eq!(cancel.tenant.as_deref(), Some("acme"));
        assert_eq!(cancel.target.as_deref(), Some(&*format!("job {}", job.id)));
        assert_eq!(cancel.affected, Some(1));
        let bulk = &rows[1].entry;
        assert_eq!(bulk.affected, Some(1));
        assert_eq!(bulk.filter.as_ref().unwrap()["tenant"], "acme");
        let pause = &rows[0].entry;
        assert_eq!(
            (pause.actor.as_str(), pause.via.as_str()),
            ("library", "library")
        );
        assert_eq!(pause.tenant, None);

        // A tenant reads its own rows only, and may not name another tenant.
        let own = acme.audit_list(every(100)).await.unwrap();
        assert_eq!(own.len(), 4);
        assert!(own
            .iter()
            .all(|row| row.entry.tenant.as_deref() == Some("acme")));
        assert!(matches!(
            acme.audit_list(AuditListParams {
                tenant: Some("globex".into()),
                ..every(10)
            })
            .await,
            Err(Error::TenantForbidden { .. })
        ));
        assert!(matches!(
            admin.audit_list(every(0)).await,
            Err(Error::Invalid(_))
        ));
    }

    pub async fn old_rows_are_pruned_by_age(store: Arc<dyn Store>) {
        let t0 = chrono::DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let clock = Arc::new(StubClock::new(t0));
        let client = Client::new(Arc::clone(&store)).with_clock(clock.clone());
        client.pause("old").await.unwrap();
        clock.advance(chrono::Duration::days(10));
        client.pause("new").await.unwrap();

        let pruner = Pruner::new(
            Arc::clone(&store),
            clock.clone(),
            PrunerConfig {
                audit_retention: Some(Duration::from_secs(5 * 86_400)),
                ..PrunerConfig::default()
            },
        );
        let report = pruner.run_once().await.unwrap();
        assert_eq!(report.audit, 1);
        let left = client.audit_list(every(10)).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].entry.target.as_deref(), Some("queue new"));

        // By hand: at least a day, and the prune is itself recorded.
        assert!(matches!(
            client.audit_prune(Duration::from_secs(3600)).await,
            Err(Error::Invalid(_))
        ));
        clock.advance(chrono::Duration::days(3));
        assert_eq!(
            client
                .audit_prune(Duration::from_secs(86_400))
                .await
                .unwrap(),
            1
        );
        let left = client.audit_list(every(10)).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].entry.action, "audit.prune");
        assert_eq!(left[0].entry.affected, Some(1));
    }
}

macro_rules! audit_tests {
    ($factory:path $(, #[$attr:meta])*) => {
        audit_tests!(@each $factory, [$(#[$attr])*],
            management_actions_are_recorded_in_their_scope,
            old_rows_are_pruned_by_age,
        );
    };
    (@each $factory:path, $attrs:tt, $($name:ident),* $(,)?) => {
        $( audit_tests!(@one $factory, $attrs, $name); )*
    };
    (@one $factory:path, [$(#[$attr:meta])*], $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$attr])*
        async fn $name() {
            let store: Arc<dyn Store> = $factory().await;
            crate::scenarios::$name(store).await;
        }
    };
}

mod sqlite {
    use super::*;
    audit_tests!(crate::common::sqlite);
}

mod postgres {
    use super::*;
    audit_tests!(
        crate::common::postgres,
        #[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
    );
}
