//! `stoker events` (issue 13, live events), the built binary on a database and through a
//! `stoker serve` child process: the current snapshot, a job followed to its end (the command
//! then exits by itself), `--follow` with a timeout, and a job that does not exist.

mod cli_common;

use cli_common::{sqlite_url, Cli, Run, Server};
use serde_json::Value;

/// The `--json` lines of a run: one `{"event", "data"}` object each.
fn events(run: &Run) -> Vec<Value> {
    run.stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line:?} in {run:#?}"))
        })
        .collect()
}

/// The events of a run that followed one job: every job event is that job's, the last job
/// event shows `state`, and `end` comes last.
#[track_caller]
fn ended_in(run: &Run, id: &str, state: &str) {
    let lines = events(run);
    assert_eq!(
        lines.last().map(|line| &line["event"]),
        Some(&"end".into()),
        "{run:#?}"
    );
    let id: i64 = id.parse().expect("a job id");
    let jobs: Vec<&Value> = lines.iter().filter(|line| line["event"] == "job").collect();
    assert!(!jobs.is_empty(), "{run:#?}");
    assert!(jobs.iter().all(|line| line["data"]["id"] == id), "{run:#?}");
    assert_eq!(jobs.last().unwrap()["data"]["state"], state, "{run:#?}");
}

fn enqueue(cli: &Cli) -> String {
    let job = cli.json(&["enqueue", "resize", "--queue", "media"]);
    job["id"].as_i64().expect("an id").to_string()
}

#[test]
fn events_on_a_database() {
    let (_dir, url) = sqlite_url();
    let cli = Cli::database(&url);
    cli.run(&["migrate"]).ok();
    let id = enqueue(&cli);

    // Without --follow: the current snapshot, then exit.
    let once = events(&cli.run(&["events", "--json"]).ok());
    assert_eq!(once.len(), 1, "{once:?}");
    assert_eq!(once[0]["event"], "snapshot");
    assert_eq!(once[0]["data"]["states"]["available"], 1);
    let text = cli.run(&["events"]).ok();
    assert!(text.stdout.contains("snapshot available=1"), "{text:#?}");

    // A finished job: its state, then the end, and the command exits.
    cli.run(&["jobs", "cancel", &id]).ok();
    ended_in(
        &cli.run(&["events", "--job", &id, "--json"]).ok(),
        &id,
        "cancelled",
    );
    let text = cli.run(&["events", "--job", &id]).ok();
    assert!(
        text.stdout.contains(&format!("job {id} cancelled")),
        "{text:#?}"
    );
    assert!(
        text.stdout.contains("end: every followed job is finished"),
        "{text:#?}"
    );

    cli.run(&["events", "--job", "987654321"])
        .fails(3, "job 987654321");
    cli.run(&["events", "--queue", "no spaces"])
        .fails(2, "queue");
}

#[test]
fn events_through_a_server() {
    let (_dir, url) = sqlite_url();
    let server = Server::start(&url, &[]);
    let cli = Cli::server(&server);
    let id = enqueue(&cli);

    // Follow the job while it is cancelled through the server: the follower exits by itself.
    let follower = std::thread::scope(|scope| {
        let follower =
            scope.spawn(|| cli.run(&["events", "--job", &id, "--json", "--timeout", "60s"]));
        cli.run(&["jobs", "cancel", &id]).ok();
        follower.join().expect("the follower ran")
    });
    ended_in(&follower.ok(), &id, "cancelled");

    // --follow with a timeout: snapshots until the time is up, then exit 0.
    let follow = cli
        .run(&["events", "--follow", "--timeout", "2s", "--json"])
        .ok();
    let lines = events(&follow);
    assert!(
        lines.iter().any(|line| line["event"] == "snapshot"
            && line["data"]["states"]["cancelled"] == 1
            && line["data"]["workers_alive"] == 1),
        "{follow:#?}"
    );
    cli.run(&["events", "--job", "987654321"])
        .fails(3, "job 987654321");
}
