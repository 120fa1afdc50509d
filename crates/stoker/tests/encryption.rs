//! Encryption at rest and redaction (issue 17 items 4 and 5), through the client, the worker
//! and the pull protocol, on every store. The raw rows are read with SQL of the store's own
//! database to prove that no plaintext of an encrypted kind reaches it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stoker::core::JobSearchParams;
use stoker::{
    AttemptResult, Client, Encryption, EnqueueOptions, JobContext, JobError, JobFilter, JobId,
    JobState, KeyRing, KindRedaction, Redaction, Reservation, Store, Worker, REDACTED,
};

use common::wait_events;

const WAIT: Duration = Duration::from_secs(20);
/// What every encrypted job carries: no raw row may contain it.
const SECRET: &str = "4242424242424242";

/// A store and a way to read (and tamper with) its raw rows.
struct Db {
    store: Arc<dyn Store>,
    raw: Raw,
}

enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool, String),
}

impl Raw {
    /// Every job's args, result and errors as the database holds them.
    async fn rows(&self) -> Vec<String> {
        match self {
            Raw::Sqlite(pool) => sqlx::query_scalar(
                "SELECT args || ' ' || coalesce(result, '') || ' ' || errors FROM stoker_jobs",
            )
            .fetch_all(pool)
            .await
            .unwrap(),
            Raw::Postgres(pool, schema) => sqlx::query_scalar(&format!(
                "SELECT args::text || ' ' || coalesce(result::text, '') || ' ' || errors::text \
                 FROM \"{schema}\".stoker_jobs"
            ))
            .fetch_all(pool)
            .await
            .unwrap(),
        }
    }

    /// Moves a job's sealed args into another job, as an attacker with database access might.
    async fn copy_args(&self, from: JobId, to: JobId) {
        match self {
            Raw::Sqlite(pool) => sqlx::query(
                "UPDATE stoker_jobs SET args = (SELECT args FROM stoker_jobs WHERE id = ?1) \
                 WHERE id = ?2",
            )
            .bind(from.0)
            .bind(to.0)
            .execute(pool)
            .await
            .map(drop)
            .unwrap(),
            Raw::Postgres(pool, schema) => sqlx::query(&format!(
                "UPDATE \"{schema}\".stoker_jobs SET args = (SELECT args FROM \
                 \"{schema}\".stoker_jobs WHERE id = $1) WHERE id = $2"
            ))
            .bind(from.0)
            .bind(to.0)
            .execute(pool)
            .await
            .map(drop)
            .unwrap(),
        };
    }

    /// Every schedule's definition (its args among them) as the database holds it.
    async fn cron_rows(&self) -> Vec<String> {
        match self {
            Raw::Sqlite(pool) => sqlx::query_scalar("SELECT definition FROM stoker_cron")
                .fetch_all(pool)
                .await
                .unwrap(),
            Raw::Postgres(pool, schema) => sqlx::query_scalar(&format!(
                "SELECT definition::text FROM \"{schema}\".stoker_cron"
            ))
            .fetch_all(pool)
            .await
            .unwrap(),
        }
    }

    async fn assert_no_plaintext(&self) {
        let rows = self.rows().await;
        assert!(!rows.is_empty());
        for row in rows {
            assert!(!row.contains(SECRET), "plaintext in a raw row: {row}");
            assert!(!row.contains("visa"), "plaintext in a raw row: {row}");
        }
    }
}

async fn sqlite() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stoker.db");
    std::mem::forget(dir);
    let store = stoker::sqlite::SqliteStore::open(&path).await.unwrap();
    store.migrate().await.unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    Db {
        store: Arc::new(store),
        raw: Raw::Sqlite(pool),
    }
}

async fn postgres() -> Db {
    let store = common::postgres().await;
    let raw = Raw::Postgres(store.pool().clone(), store.schema().to_owned());
    Db { store, raw }
}

fn ring(ids: &[u32]) -> KeyRing {
    ids.iter().fold(KeyRing::new(), |ring, id| {
        ring.with_key(*id, [u8::try_from(*id).unwrap(); 32])
    })
}

fn encryption(ids: &[u32]) -> Encryption {
    Encryption::kinds(ring(ids), ["charge"])
}

fn card() -> Value {
    json!({"card": {"number": SECRET, "brand": "visa"}, "amount": 700})
}

fn worker(store: &Arc<dyn Store>) -> stoker::WorkerBuilder {
    Worker::builder(Arc::clone(store))
        .queue("default", 2)
        .poll_interval(Duration::from_millis(50))
        .heartbeat_interval(Duration::from_millis(100))
        // Echoes its args: the result is as secret as they are.
        .handler_fn("charge", |args: Value, _ctx: JobContext| async move {
            Ok::<_, JobError>(json!({"charged": args}))
        })
}

mod scenarios {
    use super::*;

    /// Args of an encrypted kind are sealed in the row; the handler gets plaintext; its
    /// result is sealed too; the client shows both opened. Other kinds stay plain.
    pub async fn workers_get_plaintext_and_the_database_never_does(db: Db) {
        let client = Client::new(Arc::clone(&db.store)).with_encryption(encryption(&[1]));
        let job = client
            .enqueue_raw("charge", card(), EnqueueOptions::new().tenant("acme"))
            .await
            .unwrap();
        let plain = client
            .enqueue_raw(
                "email",
                json!({"to": "ada@example.com"}),
                EnqueueOptions::new(),
            )
            .await
            .unwrap();
        db.raw.assert_no_plaintext().await;
        assert!(db
            .raw
            .rows()
            .await
            .iter()
            .any(|row| row.contains("ada@example.com")));

        let worker = worker(&db.store)
            .handler_fn("email", |_args: Value, _ctx: JobContext| async move {
                Ok::<_, JobError>(Value::Null)
            })
            .encryption(encryption(&[1]))
            .build()
            .unwrap();
        let mut events = worker.events();
        let handle = worker.start().await.unwrap();
        wait_events(&mut events, 2, WAIT, |event| {
            matches!(event.result, AttemptResult::Completed)
        })
        .await;
        handle.shutdown().await;

        db.raw.assert_no_plaintext().await;
        let row = client.get(job.id).await.unwrap().unwrap();
        assert_eq!(row.args, card());
        assert_eq!(row.result, Some(json!({"charged": card()})));
        assert_eq!(
            client.get(plain.id).await.unwrap().unwrap().state,
            JobState::Completed
        );
        // A client without the keys sees envelopes, never plaintext.
        let keyless = Client::new(Arc::clone(&db.store));
        let sealed = keyless.get(job.id).await.unwrap().unwrap();
        assert_eq!(stoker::sealed_with(&sealed.args), Some(1));
        assert!(!sealed.args.to_string().contains(SECRET));
        let listed = client.list(&JobFilter::new().kind("charge")).await.unwrap();
        assert_eq!(listed.jobs[0].args, card());
    }

    /// A workflow's jobs are sealed as any insert's (issue 18 with 17): the rows hold no
    /// plaintext, the dependent's handler reads its dependency's result opened, and the
    /// workflow's result and the dependency results read through the client are opened too.
    pub async fn workflows_are_sealed_and_opened(db: Db) {
        let client = Client::new(Arc::clone(&db.store)).with_encryption(encryption(&[1]));
        let step = |kind: &str| stoker::NewJob::raw(kind, card(), EnqueueOptions::new());
        let inserted = client
            .enqueue_workflow(stoker::Workflow::chain(
                "pay",
                [("first", step("charge")), ("second", step("charge"))],
            ))
            .await
            .unwrap();
        db.raw.assert_no_plaintext().await;

        let (seen, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
        let worker = Worker::builder(Arc::clone(&db.store))
            .queue("default", 2)
            .poll_interval(Duration::from_millis(50))
            .heartbeat_interval(Duration::from_millis(100))
            .handler_fn("charge", move |args: Value, ctx: JobContext| {
                let seen = seen.clone();
                async move {
                    let deps = ctx.dependency_results().await?;
                    seen.send(deps.into_iter().map(|d| d.result).collect::<Vec<_>>())
                        .unwrap();
                    Ok::<_, JobError>(json!({"charged": args}))
                }
            })
            .encryption(encryption(&[1]))
            .build()
            .unwrap();
        let mut events = worker.events();
        let handle = worker.start().await.unwrap();
        wait_events(&mut events, 2, WAIT, |event| {
            matches!(event.result, AttemptResult::Completed)
        })
        .await;
        handle.shutdown().await;

        assert_eq!(seen_rx.recv().await.unwrap(), Vec::<Option<Value>>::new());
        assert_eq!(
            seen_rx.recv().await.unwrap(),
            vec![Some(json!({"charged": card()}))],
            "the second step read the first's result opened"
        );
        db.raw.assert_no_plaintext().await;
        let workflow = client.workflow(inserted.workflow).await.unwrap().unwrap();
        assert_eq!(
            workflow.result,
            Some(json!({"second": {"charged": card()}})),
            "{workflow:?}"
        );
        let second = inserted
            .jobs
            .iter()
            .find(|job| job.0 == "second")
            .unwrap()
            .1;
        let deps = client.dependency_results(second).await.unwrap();
        assert_eq!(deps[0].result, Some(json!({"charged": card()})));
    }

    /// A schedule of an encrypted kind keeps its args sealed, and the jobs it fires carry the
    /// envelope (bound to the same kind and tenant), so neither table holds plaintext; the
    /// client shows the schedule and its job opened.
    pub async fn schedules_keep_args_sealed(db: Db) {
        let client = Client::new(Arc::clone(&db.store)).with_encryption(encryption(&[1]));
        let mut schedule =
            stoker::cron::CronSchedule::new("nightly", "0 3 * * *", "charge", card());
        schedule.tenant = Some("acme".to_owned());
        client.cron_create(schedule).await.unwrap();
        for row in db.raw.cron_rows().await {
            assert!(!row.contains(SECRET), "plaintext in a schedule: {row}");
        }
        assert_eq!(
            client.cron_get("nightly").await.unwrap().schedule.args,
            card()
        );
        assert_eq!(client.cron_list().await.unwrap()[0].schedule.args, card());

        let job = client.cron_run_now("nightly").await.unwrap();
        db.raw.assert_no_plaintext().await;
        assert_eq!(client.get(job.id).await.unwrap().unwrap().args, card());
        // Pausing writes the schedule back: still sealed.
        client.cron_pause("nightly").await.unwrap();
        for row in db.raw.cron_rows().await {
            assert!(!row.contains(SECRET), "plaintext in a schedule: {row}");
        }
    }

    /// A pull worker reserves plaintext and its result is sealed before it is stored.
    pub async fn pull_workers_get_plaintext(db: Db) {
        let client = Client::new(Arc::clone(&db.store)).with_encryption(encryption(&[1]));
        let job = client
            .enqueue_raw("charge", card(), EnqueueOptions::new())
            .await
            .unwrap();
        let reserved = client.reserve(&reservation()).await.unwrap();
        assert_eq!(reserved.len(), 1);
        assert_eq!(reserved[0].args, card());
        client
            .complete_reserved(job.id, reserved[0].fence, Some(json!({"echo": card()})))
            .await
            .unwrap();
        db.raw.assert_no_plaintext().await;
        assert_eq!(
            client.get(job.id).await.unwrap().unwrap().result,
            Some(json!({"echo": card()}))
        );
    }

    /// Without the job's key (or with a ciphertext moved from another job) the job is not
    /// run, not failed and not discarded: it waits, snoozed with its attempts intact.
    pub async fn a_missing_or_wrong_key_makes_the_job_wait(db: Db) {
        let client = Client::new(Arc::clone(&db.store)).with_encryption(encryption(&[2]));
        let job = client
            .enqueue_raw("charge", card(), EnqueueOptions::new())
            .await
            .unwrap();

        // A pull worker with only key 1 gets nothing, and the job waits.
        let old = Client::new(Arc::clone(&db.store)).with_encryption(encryption(&[1]));
        assert!(old.reserve(&reservation()).await.unwrap().is_empty());
        let row = client.get(job.id).await.unwrap().unwrap();
        assert_eq!((row.state, row.attempt), (JobState::Available, 0));
        assert!(row.errors.is_empty());
        assert!(row.run_at > chrono::Utc::now() + chrono::Duration::seconds(30));

        // A Rust worker without keys snoozes it too.
        let other = client
            .enqueue_raw("charge", card(), EnqueueOptions::new().tenant("globex"))
            .await
            .unwrap();
        let worker = worker(&db.store).build().unwrap();
        let mut events = worker.events();
        let handle = worker.start().await.unwrap();
        let seen = wait_events(&mut events, 1, WAIT, |_| true).await;
        handle.shutdown().await;
        assert_eq!(
            (seen[0].id, &seen[0].result),
            (other.id, &AttemptResult::Snoozed)
        );
        let row = client.get(other.id).await.unwrap().unwrap();
        assert_eq!((row.state, row.attempt), (JobState::Available, 0));

        // Ciphertext moved to another tenant's job does not open (the tenant is bound in).
        let target = client
            .enqueue_raw(
                "charge",
                json!({"amount": 1}),
                EnqueueOptions::new().tenant("acme"),
            )
            .await
            .unwrap();
        db.raw.copy_args(other.id, target.id).await;
        let moved = client.get(target.id).await.unwrap().unwrap();
        assert_eq!(stoker::sealed_with(&moved.args), Some(2));
        assert!(client.reserve(&reservation()).await.unwrap().is_empty());
        let row = client.get(target.id).await.unwrap().unwrap();
        assert_eq!((row.state, row.attempt), (JobState::Available, 0));
    }

    /// Rotation reseals every value under the active key, in batches, and the status
    /// counts what each key seals; the old key can then go.
    pub async fn rotation_reseals_under_the_active_key(db: Db) {
        let old = Client::new(Arc::clone(&db.store)).with_encryption(encryption(&[1]));
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(
                old.enqueue_raw("charge", card(), EnqueueOptions::new())
                    .await
                    .unwrap()
                    .id,
            );
        }
        old.enqueue_raw("email", json!({}), EnqueueOptions::new())
            .await
            .unwrap();
        let both = Client::new(Arc::clone(&db.store)).with_encryption(encryption(&[1, 2]));
        let status = both.keys_status().await.unwrap();
        assert_eq!((status.active, status.values_by_key.get(&1)), (2, Some(&5)));

        let mut steps = 0;
        let report = both.keys_rotate(2, |_| steps += 1).await.unwrap();
        assert_eq!(
            (report.scanned, report.resealed, report.unreadable),
            (5, 5, 0)
        );
        assert_eq!(steps, 3);
        let status = both.keys_status().await.unwrap();
        assert_eq!(
            status.values_by_key.into_iter().collect::<Vec<_>>(),
            vec![(2, 5)]
        );
        db.raw.assert_no_plaintext().await;

        // Key 1 is no longer needed.
        let new = Client::new(Arc::clone(&db.store)).with_encryption(encryption(&[2]));
        assert_eq!(new.get(ids[0]).await.unwrap().unwrap().args, card());
        let again = new.keys_rotate(100, |_| {}).await.unwrap();
        assert_eq!(again.scanned, 0);
        assert!(old
            .for_tenant("acme")
            .keys_rotate(10, |_| {})
            .await
            .is_err());
    }

    /// A redacting client shows listed paths (and their values in error messages) as
    /// redacted in get, list and search, hides args of a "hide args" kind, and its text
    /// search finds no job by a hidden value.
    pub async fn redaction_hides_listed_paths_everywhere(db: Db) {
        let admin = Client::new(Arc::clone(&db.store)).with_encryption(encryption(&[1]));
        let job = admin
            .enqueue_raw("charge", card(), EnqueueOptions::new())
            .await
            .unwrap();
        let login = admin
            .enqueue_raw(
                "login",
                json!({"user": "ada", "password": "hunter22"}),
                EnqueueOptions::new(),
            )
            .await
            .unwrap();
        let reserved = admin.reserve(&reservation()).await.unwrap();
        for row in &reserved {
            let message = format!("card {SECRET} declined");
            admin
                .fail_reserved(
                    row.id,
                    row.fence,
                    stoker::Failure {
                        message,
                        retry_in: None,
                        discard: false,
                    },
                )
                .await
                .unwrap();
        }
        let reader = admin.clone().with_redaction(
            Redaction::new()
                .kind(
                    "charge",
                    KindRedaction {
                        args: vec!["card.number".into()],
                        ..KindRedaction::default()
                    },
                )
                .kind(
                    "login",
                    KindRedaction {
                        hide_args: true,
                        ..KindRedaction::default()
                    },
                ),
        );
        let row = reader.get(job.id).await.unwrap().unwrap();
        assert_eq!(row.args["card"]["number"], json!(REDACTED));
        assert_eq!(row.args["card"]["brand"], json!("visa"));
        assert_eq!(row.errors[0].message, "card [redacted] declined");
        assert_eq!(
            reader.get(login.id).await.unwrap().unwrap().args,
            json!(stoker::HIDDEN)
        );
        let listed = reader.list(&JobFilter::new()).await.unwrap();
        assert!(listed
            .jobs
            .iter()
            .all(|job| !job.args.to_string().contains(SECRET)));
        let criteria = stoker::JobCriteria {
            text: Some("hunter22".into()),
            ..stoker::JobCriteria::default()
        };
        let found = reader
            .search(JobSearchParams::new(criteria.clone(), 10))
            .await
            .unwrap();
        assert!(found.jobs.is_empty());
        // The admin view (no redaction) is unchanged.
        assert_eq!(admin.get(job.id).await.unwrap().unwrap().args, card());
        let found = admin
            .search(JobSearchParams::new(criteria, 10))
            .await
            .unwrap();
        assert_eq!(found.jobs.len(), 1);
    }

    fn reservation() -> Reservation {
        Reservation {
            worker: "pull:test".into(),
            queues: vec!["default".into()],
            kinds: Vec::new(),
            limit: 10,
            lease: Duration::from_secs(60),
        }
    }
}

macro_rules! encryption_tests {
    ($factory:path $(, #[$attr:meta])*) => {
        encryption_tests!(@each $factory, [$(#[$attr])*],
            workers_get_plaintext_and_the_database_never_does,
            pull_workers_get_plaintext,
            a_missing_or_wrong_key_makes_the_job_wait,
            rotation_reseals_under_the_active_key,
            redaction_hides_listed_paths_everywhere,
            workflows_are_sealed_and_opened,
            schedules_keep_args_sealed,
        );
    };
    (@each $factory:path, $attrs:tt, $($name:ident),* $(,)?) => {
        $( encryption_tests!(@one $factory, $attrs, $name); )*
    };
    (@one $factory:path, [$(#[$attr:meta])*], $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$attr])*
        async fn $name() {
            crate::scenarios::$name($factory().await).await;
        }
    };
}

mod sqlite {
    encryption_tests!(crate::sqlite);
}

mod postgres {
    encryption_tests!(
        crate::postgres,
        #[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
    );
}
