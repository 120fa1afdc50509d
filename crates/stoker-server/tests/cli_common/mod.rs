//! Helpers for the tests that run the built `stoker` binary: a command runner, temporary
//! SQLite and PostgreSQL databases, a `stoker serve` child process on a free port, and store
//! seeding for states the CLI cannot reach on its own (running, discarded).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};
use stoker::core::{JobClaimParams, JobFinish, JobFinishParams, Outcome};
use stoker::{AttemptError, Client, EnqueueOptions, ErrorKind, JobId, NewJob};

/// The binary under test.
pub const STOKER: &str = env!("CARGO_BIN_EXE_stoker");

/// Environment variables the CLI and the server read; cleared so the caller's environment
/// cannot leak into a test.
const STOKER_ENV: [&str; 6] = [
    "STOKER_DATABASE_URL",
    "STOKER_SERVER",
    "STOKER_API_TOKEN",
    "STOKER_CONFIG",
    "STOKER_BIND",
    "STOKER_QUEUES",
];

/// One finished run of the binary.
#[derive(Debug)]
pub struct Run {
    /// The exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Asserts the run succeeded, and returns it.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "expected success: {self:#?}");
        self
    }

    /// Asserts the run failed with `code` and a stderr containing `message`, with nothing on
    /// stdout.
    #[track_caller]
    pub fn fails(self, code: i32, message: &str) -> Run {
        assert_eq!(self.code, code, "expected exit code {code}: {self:#?}");
        assert!(
            self.stderr.contains(message),
            "expected {message:?} on stderr: {self:#?}"
        );
        assert!(self.stdout.is_empty(), "expected no stdout: {self:#?}");
        self
    }

    /// Standard output parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("stdout is not JSON ({err}): {self:#?}"))
    }
}

/// Runs `stoker ARGS` in `dir` with a clean environment plus `env`.
pub fn run_in(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut command = Command::new(STOKER);
    command.current_dir(dir).args(args).env("RUST_LOG", "error");
    for name in STOKER_ENV {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("run stoker");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Where the CLI under test points: its flags, added after the subcommand.
pub struct Cli {
    /// A scratch directory the binary runs in.
    pub dir: tempfile::TempDir,
    /// `--database-url URL` or `--server URL --token TOKEN`.
    pub target: Vec<String>,
    /// The database URL, for seeding the store from the test.
    pub database_url: String,
    /// Whether commands go through a server.
    pub remote: bool,
}

impl Cli {
    /// A CLI talking straight to `database_url`.
    pub fn database(database_url: &str) -> Cli {
        Cli {
            dir: tempfile::tempdir().expect("temp dir"),
            target: vec!["--database-url".into(), database_url.into()],
            database_url: database_url.into(),
            remote: false,
        }
    }

    /// A CLI talking to `server`.
    pub fn server(server: &Server) -> Cli {
        Cli {
            dir: tempfile::tempdir().expect("temp dir"),
            target: vec![
                "--server".into(),
                server.url.clone(),
                "--token".into(),
                server.token.clone(),
            ],
            database_url: server.database_url.clone(),
            remote: true,
        }
    }

    /// Runs `stoker ARGS TARGET-FLAGS`.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(self.target.iter().map(String::as_str));
        run_in(self.dir.path(), &[], &all)
    }

    /// Runs `stoker ARGS TARGET-FLAGS --json` and parses its output.
    #[track_caller]
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--json");
        self.run(&all).ok().json()
    }
}

/// A SQLite database URL in a fresh temporary directory (the file does not exist yet).
pub fn sqlite_url() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("stoker.sqlite3").display());
    (dir, url)
}

/// The PostgreSQL server tests use.
pub fn postgres_url() -> String {
    std::env::var("STOKER_TEST_DATABASE_URL")
        .expect("STOKER_TEST_DATABASE_URL must be set for the PostgreSQL tests")
}

/// A database of its own on the test PostgreSQL server, dropped with the value.
pub struct PgDatabase {
    /// The new database's URL.
    pub url: String,
    name: String,
}

impl PgDatabase {
    /// Creates `stoker_cli_<unix seconds>_<random>`, after dropping leftovers of earlier runs
    /// older than ten minutes.
    pub async fn create() -> PgDatabase {
        let admin = postgres_url();
        let pool = sqlx::PgPool::connect(&admin)
            .await
            .expect("connect postgres");
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT datname::text FROM pg_database WHERE datname LIKE 'stoker\\_cli\\_%'",
        )
        .fetch_all(&pool)
        .await
        .expect("list databases");
        let cutoff = chrono::Utc::now().timestamp() - 600;
        for name in names {
            let made_at = name.split('_').nth(2).and_then(|s| s.parse::<i64>().ok());
            if made_at.is_some_and(|secs| secs < cutoff) {
                let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                let _ = sqlx::query(&drop).execute(&pool).await;
            }
        }
        let name = format!(
            "stoker_cli_{}_{:08x}",
            chrono::Utc::now().timestamp(),
            rand::random::<u32>()
        );
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&pool)
            .await
            .expect("create database");
        pool.close().await;
        let mut url = reqwest::Url::parse(&admin).expect("a URL");
        url.set_path(&format!("/{name}"));
        PgDatabase {
            url: url.to_string(),
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Drop runs inside or outside a runtime; use a thread with its own.
        let name = self.name.clone();
        let admin = postgres_url();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&admin).await {
                    let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let _ = sqlx::query(&drop).execute(&pool).await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}

/// A `stoker serve` child process on a free port, with an admin token; stopped (SIGTERM, then
/// SIGKILL) when dropped.
pub struct Server {
    /// The API's base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// The admin token.
    pub token: String,
    /// The database it serves.
    pub database_url: String,
    /// Its log (stderr).
    pub log: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `stoker serve` on `database_url`, bound to 127.0.0.1 port 0, with `extra` flags,
    /// and waits for its banner.
    pub fn start(database_url: &str, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let token = format!("test-token-{:016x}", rand::random::<u64>());
        let log = dir.path().join("serve.log");
        let mut command = Command::new(STOKER);
        command
            .current_dir(dir.path())
            .args(["serve", "--database-url", database_url])
            .args(["--bind", "127.0.0.1:0", "--api-token", &token])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"));
        for name in STOKER_ENV {
            command.env_remove(name);
        }
        let mut child = command.spawn().expect("spawn stoker serve");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = sender.send(line);
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let url = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match receiver.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.trim().strip_prefix("API:") {
                        let api = rest.split_whitespace().next().expect("the API URL");
                        break api.trim_end_matches("/v1").to_owned();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let log = std::fs::read_to_string(&log).unwrap_or_default();
                    panic!("stoker serve did not start within 30 s; its log:\n{log}");
                }
            }
        };
        Server {
            url,
            token,
            database_url: database_url.to_owned(),
            log,
            child,
            _dir: dir,
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Opens the store behind `url` for seeding.
pub async fn client(url: &str) -> Client {
    Client::new(stoker::connect(url).await.expect("open the store"))
}

/// Enqueues `count` jobs of `kind` in `queue`, claims them and discards them (dead letters),
/// as a worker would after their last failed attempt. Returns their ids.
pub async fn seed_discarded(url: &str, queue: &str, kind: &str, count: usize) -> Vec<JobId> {
    let client = client(url).await;
    let jobs = (0..count).map(|n| {
        NewJob::raw(
            kind,
            json!({ "n": n }),
            EnqueueOptions::new().queue(queue).max_attempts(1),
        )
    });
    client.enqueue_many(jobs).await.expect("enqueue");
    let claimed = client
        .store()
        .job_claim(JobClaimParams {
            queue: queue.to_owned(),
            kinds: vec![kind.to_owned()],
            limit: u32::try_from(count).expect("a small count"),
            worker_id: "seed".to_owned(),
            now: client.clock().now(),
            lease: None,
        })
        .await
        .expect("claim");
    assert_eq!(claimed.len(), count, "claimed every seeded job");
    let now = client.clock().now();
    let finishes = claimed
        .iter()
        .map(|job| JobFinish {
            id: job.id,
            fence: job.fence,
            outcome: Outcome::Discard {
                error: AttemptError {
                    attempt: job.attempt,
                    at: now,
                    kind: ErrorKind::Error,
                    message: "upstream refused".to_owned(),
                    backtrace: None,
                },
            },
        })
        .collect();
    client
        .store()
        .job_finish_many(JobFinishParams::new(finishes, now))
        .await
        .expect("discard");
    claimed.iter().map(|job| job.id).collect()
}

/// Enqueues one job of `kind` in `queue` and claims it, so it is `running`. Returns its id.
pub async fn seed_running(url: &str, queue: &str, kind: &str) -> JobId {
    let client = client(url).await;
    let job = client
        .enqueue_raw(kind, json!({}), EnqueueOptions::new().queue(queue))
        .await
        .expect("enqueue");
    let claimed = client
        .store()
        .job_claim(JobClaimParams {
            queue: queue.to_owned(),
            kinds: vec![kind.to_owned()],
            limit: 1,
            worker_id: "seed".to_owned(),
            now: client.clock().now(),
            lease: Some(Duration::from_secs(3600)),
        })
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, job.id);
    job.id
}

/// The commands every backend must answer alike: enqueue (and duplicates), list with filters
/// and pages, show, cancel, retry, delete, queues, stats, handlers, and bad input refused with
/// exit code 2 and nothing changed. Jobs go to queue `cli`, which no built-in worker serves.
pub async fn exercise(cli: &Cli) {
    // Enqueue, with every option.
    let first = cli.json(&[
        "enqueue",
        "email",
        "--args",
        r#"{"to": "ada@example.com"}"#,
        "--queue",
        "cli",
        "--priority",
        "high",
        "--max-attempts",
        "7",
        "--idempotency-key",
        "welcome:ada",
        "--tenant",
        "acme",
        "--correlation-id",
        "req-1",
        "--tag",
        "signup",
        "--tag",
        "mail",
        "--timeout",
        "90s",
        "--delay",
        "1h",
    ]);
    assert_eq!(first["duplicate"], false);
    let id = first["id"].as_i64().expect("an id");
    let again = cli.json(&[
        "enqueue",
        "email",
        "--args",
        "{}",
        "--queue",
        "cli",
        "--idempotency-key",
        "welcome:ada",
        "--tenant",
        "acme",
    ]);
    assert_eq!(again["id"], id);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["state"], "available");
    assert_eq!(again["queue"], "cli");
    assert_eq!(again["run_at"], first["run_at"], "the same job, as it is");
    let human = cli
        .run(&[
            "enqueue",
            "email",
            "--queue",
            "cli",
            "--idempotency-key",
            "welcome:ada",
            "--tenant",
            "acme",
        ])
        .ok();
    assert!(
        human.stdout.contains(&format!(
            "job {id} already exists with that idempotency key"
        )),
        "{human:#?}"
    );
    let second = cli.json(&[
        "enqueue",
        "report",
        "--queue",
        "cli",
        "--run-at",
        "2030-01-01T09:00:00Z",
    ]);
    let second_id = second["id"].as_i64().unwrap();
    let human = cli.run(&["enqueue", "report", "--queue", "cli"]).ok();
    let third_id: i64 = human
        .stdout
        .trim()
        .strip_prefix("enqueued job ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("an id in {human:#?}"));

    // Show: every field, in JSON and for people.
    let job = cli.json(&["jobs", "show", &id.to_string()]);
    assert_eq!(job["id"], id);
    assert_eq!(job["kind"], "email");
    assert_eq!(job["queue"], "cli");
    assert_eq!(job["state"], "available");
    assert_eq!(job["priority"], 10);
    assert_eq!(job["max_attempts"], 7);
    assert_eq!(job["tenant"], "acme");
    assert_eq!(job["idempotency_key"], "welcome:ada");
    assert_eq!(job["args"], json!({"to": "ada@example.com"}));
    assert_eq!(job["metadata"]["correlation_id"], "req-1");
    assert_eq!(job["metadata"]["tags"], json!(["signup", "mail"]));
    assert_eq!(job["timeout_seconds"], 90.0);
    assert_eq!(job["errors"], json!([]));
    let human = cli.run(&["jobs", "show", &id.to_string()]).ok();
    for expected in [
        "kind:",
        "email",
        "state:",
        "available (scheduled for",
        "attempts:",
        "0 of 7",
        "correlation:",
        "req-1",
        "tags:",
        "signup, mail",
        "timeout:",
        "1m30s",
        "errors:",
        "none",
    ] {
        assert!(
            human.stdout.contains(expected),
            "{expected:?} in {human:#?}"
        );
    }
    let at = cli.json(&["jobs", "show", &second_id.to_string()]);
    assert_eq!(at["run_at"], "2030-01-01T09:00:00Z");

    // List: filters, a page and the cursor.
    let list = cli.json(&["jobs", "list", "--queue", "cli"]);
    let ids: Vec<i64> = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![third_id, second_id, id], "newest first");
    let list = cli.json(&[
        "jobs", "list", "--queue", "cli", "--kind", "report", "--limit", "1",
    ]);
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(list["jobs"][0]["id"], third_id);
    assert_eq!(list["next_cursor"], third_id);
    let cursor = third_id.to_string();
    let list = cli.json(&[
        "jobs", "list", "--queue", "cli", "--kind", "report", "--before", &cursor,
    ]);
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(list["jobs"][0]["id"], second_id);
    let list = cli.json(&["jobs", "list", "--tenant", "acme"]);
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
    let list = cli.json(&["jobs", "list", "--state", "cancelled", "--queue", "cli"]);
    assert_eq!(list["jobs"], json!([]));
    let human = cli
        .run(&["jobs", "list", "--queue", "cli", "--limit", "2"])
        .ok();
    let lines: Vec<&str> = human.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two rows: {human:#?}");
    assert!(lines[0].contains("ID") && lines[0].contains("STATE"));
    assert!(lines[1].contains("report") && lines[1].contains("available"));
    assert!(
        human.stderr.contains("--before"),
        "the cursor hint: {human:#?}"
    );

    // Cancel, retry, delete.
    let text = third_id.to_string();
    let cancelled = cli.json(&["jobs", "cancel", &text]);
    assert_eq!(cancelled["state"], "cancelled");
    let human = cli.run(&["jobs", "cancel", &text]).ok();
    assert!(human.stdout.contains("already cancelled"), "{human:#?}");
    let retried = cli.json(&["jobs", "retry", &text]);
    assert_eq!(retried["state"], "available");
    let human = cli.run(&["jobs", "cancel", &text]).ok();
    assert_eq!(human.stdout.trim(), format!("cancelled job {third_id}"));
    let human = cli.run(&["jobs", "retry", &text]).ok();
    assert!(human.stdout.contains("is available again"), "{human:#?}");
    let deleted = cli.json(&["jobs", "delete", &text]);
    assert_eq!(deleted["id"], third_id);
    cli.run(&["jobs", "show", &text])
        .fails(3, &format!("error: job {third_id} not found"));
    cli.run(&["jobs", "delete", &text])
        .fails(3, &format!("job {third_id} not found"));
    cli.run(&["jobs", "cancel", "987654"])
        .fails(3, "job 987654 not found");
    cli.run(&["jobs", "retry", "987654"])
        .fails(3, "job 987654 not found");

    // Queues.
    let paused = cli.json(&["queues", "pause", "cli"]);
    assert_eq!(paused, json!({"queue": "cli", "paused": true}));
    let queues = cli.json(&["queues", "list"]);
    let queue = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|queue| queue["name"] == "cli")
        .unwrap_or_else(|| panic!("queue cli in {queues:#}"));
    assert_eq!(queue["paused"], true);
    // Both waiting jobs are scheduled (a delay, a run-at): none is due yet.
    assert_eq!(queue["counts"]["available"], 0);
    assert_eq!(queue["counts"]["scheduled"], 2);
    let human = cli.run(&["queues", "resume", "cli"]).ok();
    assert_eq!(human.stdout.trim(), "resumed queue cli");
    let human = cli.run(&["queues", "list"]).ok();
    let row = human
        .stdout
        .lines()
        .find(|line| line.starts_with("cli "))
        .unwrap_or_else(|| panic!("a row for cli in {human:#?}"));
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["cli", "no", "0", "2", "0", "0", "0", "0", "0"]
    );
    cli.run(&["queues", "pause", "no spaces"]).fails(2, "queue");

    // Stats and handlers.
    let stats = cli.json(&["stats"]);
    assert_eq!(stats["queues"]["cli"]["scheduled"], 2);
    assert_eq!(stats["queues"]["cli"]["available"], 0);
    assert_eq!(stats["kinds"]["email"]["scheduled"], 1);
    assert!(stats["totals"]["scheduled"].as_i64().unwrap() >= 2);
    assert_eq!(stats["tenants"]["acme"]["scheduled"], 1);
    let human = cli.run(&["stats"]).ok();
    assert!(human.stdout.contains("queue cli"), "{human:#?}");
    assert!(human.stdout.contains("kind report"), "{human:#?}");
    let handlers = cli.json(&["handlers"]);
    assert_eq!(handlers[0]["kind"], "webhook");
    assert!(handlers[0]["description"]
        .as_str()
        .unwrap()
        .contains("HTTP request"));
    let human = cli.run(&["handlers"]).ok();
    assert!(human.stdout.starts_with("KIND"), "{human:#?}");
    assert!(human.stdout.contains("webhook"), "{human:#?}");

    // Bad input: exit code 2, the flag named, nothing written.
    let before = cli.json(&["stats"])["totals"].clone();
    cli.run(&["enqueue", "email", "--args", "{not json"])
        .fails(2, "--args");
    cli.run(&["enqueue", "email", "--run-at", "next tuesday"])
        .fails(2, "--run-at");
    cli.run(&["enqueue", "email", "--delay", "5 parsecs"])
        .fails(2, "--delay");
    cli.run(&["enqueue", "email", "--priority", "urgent"])
        .fails(2, "--priority");
    cli.run(&["enqueue", "email", "--timeout", "0s"])
        .fails(2, "--timeout");
    cli.run(&[
        "enqueue",
        "email",
        "--run-at",
        "2030-01-01",
        "--delay",
        "1h",
    ])
    .fails(2, "--delay");
    cli.run(&["jobs", "list", "--state", "done"])
        .fails(2, "unknown job state \"done\"");
    cli.run(&["jobs", "list", "--limit", "0"])
        .fails(2, "--limit");
    cli.run(&["jobs", "show", "abc"]).fails(2, "not a job id");
    cli.run(&["enqueue", "email", "--max-attempts", "0"])
        .fails(2, "max_attempts");
    cli.run(&["enqueue", "email", "--queue", "bad queue"])
        .fails(2, "queue");
    cli.run(&[
        "enqueue",
        "webhook",
        "--args",
        r#"{"url": "ftp://example.com"}"#,
    ])
    .fails(2, "args.url");
    cli.run(&[
        "enqueue",
        "webhook",
        "--queue",
        "cli",
        "--args",
        r#"{"url": "https://example.com", "headers": {"X-N": 1}}"#,
    ])
    .fails(2, "args.headers.X-N");
    cli.run(&["jobs", "retry", "1", "--queue", "cli"])
        .fails(2, "--all-discarded");
    assert_eq!(cli.json(&["stats"])["totals"], before, "nothing changed");
}
