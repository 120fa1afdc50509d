//! A worker killed with SIGKILL mid-job loses nothing: another worker finishes its jobs, and
//! every job's side effect is counted exactly once.
//!
//! The test re-runs its own binary as the child worker (the ignored test `crash_child_worker`,
//! which does nothing unless the parent's environment variables are set), waits until the
//! child is in the middle of jobs, kills it with SIGKILL, then starts a worker of its own.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use stoker::maintenance::RescuerConfig;
use stoker::{
    Client, EnqueueOptions, ErrorKind, Handler, JobContext, JobError, JobFilter, JobState, NewJob,
    Store, Worker,
};

const CHILD_URL: &str = "STOKER_CRASH_CHILD_URL";
const CHILD_SCHEMA: &str = "STOKER_CRASH_CHILD_SCHEMA";
const JOBS: usize = 40;

/// Where the side effects go: the same database as the jobs, so the test can count them.
#[derive(Clone)]
enum Effects {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool, String),
}

impl Effects {
    async fn open(url: &str, schema: Option<&str>) -> Effects {
        if url.starts_with("sqlite") {
            let options: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
            let pool =
                sqlx::SqlitePool::connect_with(options.busy_timeout(Duration::from_secs(30)))
                    .await
                    .unwrap();
            Effects::Sqlite(pool)
        } else {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(4)
                .connect(url)
                .await
                .unwrap();
            Effects::Postgres(pool, schema.expect("a schema").to_owned())
        }
    }

    async fn create(&self) {
        match self {
            Effects::Sqlite(pool) => {
                sqlx::query("CREATE TABLE effects (job_id INTEGER PRIMARY KEY)")
                    .execute(pool)
                    .await
                    .unwrap();
                sqlx::query("CREATE TABLE runs (job_id INTEGER NOT NULL, pid INTEGER NOT NULL)")
                    .execute(pool)
                    .await
                    .unwrap();
            }
            Effects::Postgres(pool, schema) => {
                sqlx::query(&format!(
                    "CREATE TABLE \"{schema}\".effects (job_id BIGINT PRIMARY KEY)"
                ))
                .execute(pool)
                .await
                .unwrap();
                sqlx::query(&format!(
                    "CREATE TABLE \"{schema}\".runs (job_id BIGINT NOT NULL, pid BIGINT NOT NULL)"
                ))
                .execute(pool)
                .await
                .unwrap();
            }
        }
    }

    /// Logs that an attempt started (every attempt, so double runs are visible).
    async fn run_started(&self, job_id: i64) -> Result<(), sqlx::Error> {
        let pid = i64::from(std::process::id());
        match self {
            Effects::Sqlite(pool) => {
                sqlx::query("INSERT INTO runs (job_id, pid) VALUES (?, ?)")
                    .bind(job_id)
                    .bind(pid)
                    .execute(pool)
                    .await?;
            }
            Effects::Postgres(pool, schema) => {
                sqlx::query(&format!(
                    "INSERT INTO \"{schema}\".runs (job_id, pid) VALUES ($1, $2)"
                ))
                .bind(job_id)
                .bind(pid)
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// The side effect, made idempotent by the job id as handlers should be: a job that runs
    /// again after its worker died must not charge the card twice.
    async fn apply(&self, job_id: i64) -> Result<(), sqlx::Error> {
        match self {
            Effects::Sqlite(pool) => {
                sqlx::query("INSERT INTO effects (job_id) VALUES (?) ON CONFLICT DO NOTHING")
                    .bind(job_id)
                    .execute(pool)
                    .await?;
            }
            Effects::Postgres(pool, schema) => {
                sqlx::query(&format!(
                    "INSERT INTO \"{schema}\".effects (job_id) VALUES ($1) ON CONFLICT DO NOTHING"
                ))
                .bind(job_id)
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    async fn count(&self, table: &str) -> i64 {
        match self {
            Effects::Sqlite(pool) => sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(pool)
                .await
                .unwrap(),
            Effects::Postgres(pool, schema) => {
                sqlx::query_scalar(&format!("SELECT COUNT(*) FROM \"{schema}\".{table}"))
                    .fetch_one(pool)
                    .await
                    .unwrap()
            }
        }
    }
}

/// Records the run, works for a while, then applies the side effect.
struct Effect(Effects);

#[async_trait]
impl Handler for Effect {
    async fn perform(&self, _args: Value, ctx: JobContext) -> Result<Option<Value>, JobError> {
        self.0.run_started(ctx.id().0).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.0.apply(ctx.id().0).await?;
        Ok(None)
    }

    fn backoff(&self, _attempt: i32) -> Duration {
        Duration::from_millis(50)
    }
}

async fn open_store(url: &str, schema: Option<&str>) -> Arc<dyn Store> {
    match schema {
        Some(schema) => Arc::new(
            stoker::postgres::PgStore::builder(url)
                .schema(schema)
                .max_connections(6)
                .build()
                .await
                .unwrap(),
        ),
        None => stoker::connect(url).await.unwrap(),
    }
}

/// The child: a worker that runs `effect` jobs until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the crash tests run this as their child process"]
async fn crash_child_worker() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let schema = std::env::var(CHILD_SCHEMA).ok();
    let store = open_store(&url, schema.as_deref()).await;
    let effects = Effects::open(&url, schema.as_deref()).await;
    let _handle = Worker::builder(store)
        .queue("default", 4)
        .handler("effect", Effect(effects))
        .maintenance(false)
        .poll_interval(Duration::from_millis(50))
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    std::future::pending::<()>().await;
}

fn spawn_child(url: &str, schema: Option<&str>) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "crash_child_worker",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_URL, url)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(schema) = schema {
        command.env(CHILD_SCHEMA, schema);
    }
    command.spawn().expect("spawn the child worker")
}

async fn kill_mid_job_and_recover(store: Arc<dyn Store>, url: &str, schema: Option<&str>) {
    let effects = Effects::open(url, schema).await;
    effects.create().await;
    let client = Client::new(Arc::clone(&store));
    let jobs = client
        .enqueue_many(
            (0..JOBS).map(|n| NewJob::raw("effect", json!({"n": n}), EnqueueOptions::new())),
        )
        .await
        .unwrap();

    let mut child = spawn_child(url, schema);
    // Wait until the child is mid-way: some attempts started, some jobs running right now.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let running = client
            .list(&JobFilter::new().state(JobState::Running))
            .await
            .unwrap()
            .jobs
            .len();
        if effects.count("runs").await >= 6 && running > 0 {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child worker exited early: {status}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the child worker never got going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("SIGKILL the child"); // std's kill is SIGKILL on Unix
    child.wait().unwrap();
    let runs_at_kill = effects.count("runs").await;
    assert!(
        runs_at_kill < JOBS as i64,
        "the child finished everything before the kill"
    );

    // A new worker rescues the dead one's jobs and finishes everything.
    let handle = Worker::builder(Arc::clone(&store))
        .queue("default", 8)
        .handler("effect", Effect(effects.clone()))
        .poll_interval(Duration::from_millis(50))
        .rescuer(RescuerConfig {
            interval: Duration::from_millis(200),
            stale_after: Duration::from_secs(1),
            ..RescuerConfig::default()
        })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stats = client.stats().await.unwrap();
        if stats.totals.completed == JOBS as i64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "jobs were lost: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handle.shutdown().await;

    assert_eq!(
        effects.count("effects").await,
        JOBS as i64,
        "every side effect exactly once"
    );
    let mut lost = 0;
    for job in &jobs {
        let row = client.get(job.id).await.unwrap().unwrap();
        assert_eq!(row.state, JobState::Completed);
        lost += row
            .errors
            .iter()
            .filter(|e| e.kind == ErrorKind::WorkerLost)
            .count() as i64;
    }
    assert!(
        lost >= 1,
        "the killed worker held at least one job, which was rescued"
    );
    let runs = effects.count("runs").await;
    assert!(
        runs >= JOBS as i64 && runs <= JOBS as i64 + lost,
        "every extra run is a rescued attempt: {runs} runs, {lost} rescues"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_worker_killed_mid_job_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("crash.db").display());
    let store = open_store(&url, None).await;
    store.migrate().await.unwrap();
    kill_mid_job_and_recover(store, &url, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
async fn postgres_worker_killed_mid_job_loses_nothing() {
    let url = common::postgres_url();
    let schema = common::new_schema("stoker_crash").await;
    let store = open_store(&url, Some(&schema)).await;
    store.migrate().await.unwrap();
    kill_mid_job_and_recover(store, &url, Some(&schema)).await;
}
