//! W6 (and W5's idle server): `stoker serve` in a child process, driven over HTTP the way a
//! service in another language would.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use stoker::Client;
use tokio::process::{Child, Command};

use super::report::{Figure, Report};
use super::store::{Fresh, Target};
use super::workloads::{enqueue_bulk, QUEUE};
use super::{status_kb, BenchArgs, BenchError};
use crate::api::model::{
    CompleteRequest, EnqueueBulkRequest, EnqueueRequest, ReserveRequest, ReserveResponse,
};

/// Pull workers draining in W6, each reserving this many jobs at a time.
const PULL_WORKERS: usize = 8;
const PULL_BATCH: u32 = 50;
const READY_LIMIT: Duration = Duration::from_secs(30);

/// A `stoker serve` child process on a run's store.
struct Server {
    child: Child,
    base: String,
    /// For PostgreSQL runs: the database made for this server, dropped afterwards.
    database: Option<(String, String)>,
}

impl Server {
    /// Starts `stoker serve` on the run's data and waits until `/health` answers.
    async fn start(fresh: &Fresh) -> Result<Server, BenchError> {
        // `serve` keeps its tables in the database's default schema, so a PostgreSQL run gets
        // a database of its own rather than the run's schema.
        let (url, database) = match &fresh.kind {
            super::store::FreshKind::Postgres(store) => {
                let name = format!(
                    "stoker_bench_{}",
                    fresh
                        .schema
                        .as_deref()
                        .unwrap_or("serve")
                        .trim_start_matches("stoker_bench_")
                );
                sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                    .execute(store.pool())
                    .await?;
                let url = replace_database(&fresh.url, &name);
                (url, Some((name, fresh.url.clone())))
            }
            super::store::FreshKind::Sqlite(..) => (fresh.url.clone(), None),
        };
        let port = free_port()?;
        let child = Command::new(std::env::current_exe()?)
            .arg("serve")
            .arg("--database-url")
            .arg(&url)
            .arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .arg(format!(
                "--database-async-ack-commit={}",
                fresh.async_ack_commit
            ))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            database,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            let ready = http.get(format!("{}/health", server.base)).send().await;
            if matches!(ready, Ok(response) if response.status().is_success()) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(BenchError::Timeout {
                    what: "stoker serve to become healthy".into(),
                    limit: READY_LIMIT,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Stops the server (SIGKILL: the figures are taken) and drops its database.
    async fn stop(mut self) -> Result<(), BenchError> {
        self.child.start_kill()?;
        self.child.wait().await?;
        if let Some((name, admin_url)) = self.database {
            let pool = sqlx::PgPool::connect(&admin_url).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&pool)
                .await?;
            pool.close().await;
        }
        Ok(())
    }
}

/// `url` with its database name replaced.
fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_end..]
        .find('/')
        .map_or(base.len(), |i| authority_end + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

fn free_port() -> Result<u16, BenchError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn noop_request(n: usize) -> EnqueueRequest {
    serde_json::from_value(json!({ "kind": "noop", "args": { "n": n }, "queue": QUEUE }))
        .expect("a valid enqueue request")
}

async fn expect_success(response: reqwest::Response) -> Result<reqwest::Response, BenchError> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    Err(BenchError::Io(std::io::Error::other(format!(
        "stoker serve answered {status}: {body}"
    ))))
}

fn http_error(err: reqwest::Error) -> BenchError {
    BenchError::Io(std::io::Error::other(err))
}

/// W6: enqueue one at a time and in bulk over HTTP, and drain with pull workers.
pub(crate) async fn w6(
    target: &Target,
    args: &BenchArgs,
    report: &mut Report,
) -> Result<(), BenchError> {
    let jobs = args.jobs;
    let mut one = Vec::new();
    let mut bulk = Vec::new();
    let mut drained = Vec::new();
    for _ in 0..args.runs {
        let fresh = target.fresh().await?;
        let server = Server::start(&fresh).await?;
        let http = reqwest::Client::new();
        let base = server.base.clone();

        let started = Instant::now();
        for n in 0..jobs {
            let response = http
                .post(format!("{base}/v1/jobs"))
                .json(&noop_request(n))
                .send()
                .await
                .map_err(http_error)?;
            expect_success(response).await?;
        }
        one.push(jobs as f64 / started.elapsed().as_secs_f64());

        let started = Instant::now();
        let mut start = 0;
        while start < jobs {
            let end = (start + 10_000).min(jobs);
            let body = EnqueueBulkRequest {
                jobs: (start..end).map(noop_request).collect(),
            };
            let response = http
                .post(format!("{base}/v1/jobs/bulk"))
                .json(&body)
                .send()
                .await
                .map_err(http_error)?;
            expect_success(response).await?;
            start = end;
        }
        bulk.push(jobs as f64 / started.elapsed().as_secs_f64());

        // 2 × jobs are now waiting: drain them through the pull protocol.
        let waiting = 2 * jobs;
        let started = Instant::now();
        let mut pullers = Vec::new();
        for worker in 0..PULL_WORKERS {
            let (http, base) = (http.clone(), base.clone());
            pullers.push(tokio::spawn(
                async move { pull(&http, &base, worker).await },
            ));
        }
        let mut done = 0;
        for puller in pullers {
            done += puller.await.map_err(std::io::Error::other)??;
        }
        if done < waiting {
            return Err(BenchError::Io(std::io::Error::other(format!(
                "pull workers completed {done} of {waiting} jobs"
            ))));
        }
        drained.push(waiting as f64 / started.elapsed().as_secs_f64());
        server.stop().await?;
        fresh.remove().await?;
    }
    report.add(Figure::new(
        "W6",
        format!("HTTP enqueue {jobs} one at a time"),
        "jobs/s",
        one,
    ));
    report.add(Figure::new(
        "W6",
        format!("HTTP enqueue {jobs} in bulk (10,000 per request)"),
        "jobs/s",
        bulk,
    ));
    report.add(Figure::new(
        "W6",
        format!(
            "HTTP pull drain {}, {PULL_WORKERS} workers reserving {PULL_BATCH}",
            2 * jobs
        ),
        "jobs/s",
        drained,
    ));
    Ok(())
}

/// One pull worker: reserves batches and completes each job until a reserve comes back empty.
async fn pull(http: &reqwest::Client, base: &str, worker: usize) -> Result<usize, BenchError> {
    let mut done = 0;
    loop {
        let request = ReserveRequest {
            worker: format!("bench-{worker}"),
            queues: vec![QUEUE.to_owned()],
            kinds: Vec::new(),
            limit: Some(PULL_BATCH),
            lease_seconds: Some(60.0),
            wait_seconds: Some(0.0),
            host: None,
            pid: None,
        };
        let response = http
            .post(format!("{base}/v1/pull/reserve"))
            .json(&request)
            .send()
            .await
            .map_err(http_error)?;
        let reserved: ReserveResponse = expect_success(response)
            .await?
            .json()
            .await
            .map_err(http_error)?;
        if reserved.jobs.is_empty() {
            return Ok(done);
        }
        for job in reserved.jobs {
            let body = CompleteRequest {
                fence: job.fence,
                result: None,
            };
            let response = http
                .post(format!("{base}/v1/pull/jobs/{}/complete", job.id))
                .json(&body)
                .send()
                .await
                .map_err(http_error)?;
            expect_success(response).await?;
            done += 1;
        }
    }
}

/// W5's second figure: the resident memory of `stoker serve` once it is up and idle.
pub(crate) async fn serve_idle_rss_mb(fresh: &Fresh) -> Result<f64, BenchError> {
    // Something to serve, so the store's caches are warm: a few jobs done by another client.
    enqueue_bulk(&Client::new(Arc::clone(&fresh.store)), 10).await?;
    let server = Server::start(fresh).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = server.pid().ok_or_else(|| {
        BenchError::Io(std::io::Error::other(
            "stoker serve exited before it was measured",
        ))
    })?;
    let rss_kb = status_kb(&format!("/proc/{pid}/status"), "VmRSS:")?;
    server.stop().await?;
    Ok(rss_kb as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(
            super::replace_database("postgres://u@h:5432/postgres?sslmode=disable", "b1"),
            "postgres://u@h:5432/b1?sslmode=disable"
        );
        assert_eq!(
            super::replace_database("postgres://u@h", "b1"),
            "postgres://u@h/b1"
        );
    }
}
