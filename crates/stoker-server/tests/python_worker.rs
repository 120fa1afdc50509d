//! The example Python worker (`examples/python-worker/worker.py`, standard library only) end to
//! end: `stoker serve` on a temporary SQLite file, jobs enqueued through the CLI, the worker
//! reserving them over the pull protocol, reporting progress and results, then exiting after
//! the number of jobs it was told.

mod cli_common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli_common::{sqlite_url, Cli, Server};
use serde_json::{json, Value};

fn worker_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/python-worker/worker.py")
}

/// Runs the worker until it exits on its own (at most 60 s); returns its exit code and log.
fn run_worker(server: &Server, args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("worker.log");
    let mut child = Command::new("python3")
        .arg(worker_script())
        .args(["--server", &server.url, "--token", &server.token])
        .args(args)
        .env_remove("STOKER_SERVER")
        .env_remove("STOKER_API_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("python3 runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("the Python worker did not exit within 60 s; its log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    (status.code().unwrap_or(-1), log)
}

fn enqueue(cli: &Cli, kind: &str, args: Value) -> String {
    let args = args.to_string();
    let answer = cli.json(&["enqueue", kind, "--queue", "python", "--args", &args]);
    answer["id"].as_i64().unwrap().to_string()
}

#[tokio::test]
async fn the_python_worker_runs_jobs_through_the_pull_protocol() {
    let (_dir, url) = sqlite_url();
    let server = Server::start(&url, &[]);
    let cli = Cli::server(&server);

    let greet = enqueue(&cli, "greet", json!({"name": "Ada"}));
    let count = enqueue(
        &cli,
        "word_count",
        json!({"text": "The cat and the hat.\nThe end"}),
    );
    let invalid = enqueue(&cli, "greet", json!({}));

    let (code, log) = run_worker(
        &server,
        &["--name", "py-test", "--exit-after", "3", "--wait", "2"],
    );
    assert_eq!(
        code, 0,
        "the worker exits cleanly after 3 jobs; its log:\n{log}"
    );

    let job = cli.json(&["jobs", "show", &greet]);
    assert_eq!(job["state"], "completed", "{job:#}\n{log}");
    assert_eq!(
        job["result"],
        json!({"greeting": "Hello, Ada!", "by": "python", "attempt": 1})
    );
    assert_eq!(job["worker"], "pull:py-test");
    assert_eq!(job["progress"]["fraction"], 0.5);
    assert_eq!(job["progress"]["message"], "greeting Ada");

    let job = cli.json(&["jobs", "show", &count]);
    assert_eq!(job["state"], "completed", "{job:#}\n{log}");
    assert_eq!(job["result"]["words"], 7);
    assert_eq!(job["result"]["top"][0], json!(["the", 3]));
    assert_eq!(job["progress"]["fraction"], 1.0);
    assert_eq!(job["progress"]["message"], "counted 2 of 2 lines");
    assert_eq!(
        job["progress"]["details"],
        json!({"lines": 2, "of": 2, "words": 7}),
        "the worker's progress details"
    );
    assert_eq!(
        job["fence"], 1,
        "reported with the fence it was reserved with"
    );

    let job = cli.json(&["jobs", "show", &invalid]);
    assert_eq!(job["state"], "discarded", "{job:#}\n{log}");
    assert_eq!(job["attempt"], 1, "discarded without a retry");
    assert_eq!(
        job["errors"][0]["message"],
        "args.name must be a non-empty string"
    );

    // The pull worker shows among the workers, with its counters.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let workers = cli.json(&["workers"]);
        let pull = workers
            .as_array()
            .unwrap()
            .iter()
            .find(|worker| worker["id"] == "pull:py-test")
            .cloned();
        if let Some(worker) = &pull {
            assert_eq!(worker["pull"], true);
            if worker["jobs_done"] == 2 && worker["jobs_failed"] == 1 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the pull worker's counters reach 2 done, 1 failed: {workers:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_python_worker_waits_for_jobs_and_leaves_other_queues_alone() {
    let (_dir, url) = sqlite_url();
    let server = Server::start(&url, &[]);
    let cli = Cli::server(&server);
    // A job in another queue, and one of a kind the worker has no handler for.
    let elsewhere = cli.json(&[
        "enqueue",
        "greet",
        "--queue",
        "elsewhere",
        "--args",
        r#"{"name": "Bob"}"#,
    ])["id"]
        .to_string();
    let unknown = enqueue(&cli, "resize", json!({}));

    // Start the worker first: its reserve long-polls until the job arrives.
    let worker = {
        let server_url = server.url.clone();
        let token = server.token.clone();
        std::thread::spawn(move || {
            let output = Command::new("python3")
                .arg(worker_script())
                .args(["--server", &server_url, "--token", &token])
                .args(["--exit-after", "1", "--wait", "10", "--quiet"])
                .output()
                .expect("python3 runs");
            (
                output.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let greet = enqueue(&cli, "greet", json!({"name": "Grace"}));
    let (code, log) = worker.join().unwrap();
    assert_eq!(code, 0, "{log}");
    let job = cli.json(&["jobs", "show", &greet]);
    assert_eq!(job["state"], "completed", "{job:#}\n{log}");
    assert_eq!(job["result"]["greeting"], "Hello, Grace!");
    for id in [elsewhere, unknown] {
        let job = cli.json(&["jobs", "show", &id]);
        assert_eq!(job["state"], "available", "untouched: {job:#}");
    }
}
