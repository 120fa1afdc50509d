//! `stoker workflows show` (issue 18) with the built binary, on a database and through a
//! server: the same graph, the same JSON, the same exit codes.

mod cli_common;

use cli_common::{client, sqlite_url, Cli, Server};
use serde_json::json;
use stoker::{DepPolicy, Dependency, EnqueueOptions, NewJob, Workflow};

fn job(kind: &str) -> NewJob {
    NewJob::raw(kind, json!({}), EnqueueOptions::new())
}

/// Enqueues a diamond (fetch-a, fetch-b, then merge waiting for both, `b` under `hold`) in the
/// database behind `url`, and returns the workflow's id.
async fn seed(url: &str) -> i64 {
    let client = client(url).await;
    client
        .enqueue_workflow(
            Workflow::new("report")
                .job("fetch-a", job("fetch"))
                .job("fetch-b", job("fetch"))
                .job_after(
                    "merge",
                    job("merge"),
                    [
                        Dependency::node("fetch-a"),
                        Dependency::node("fetch-b").policy(DepPolicy::Hold),
                    ],
                ),
        )
        .await
        .expect("enqueue the workflow")
        .workflow
        .0
}

fn exercise(cli: &Cli, id: i64) {
    let id = id.to_string();
    let shown = cli.run(&["workflows", "show", &id]).ok();
    let lines: Vec<&str> = shown.stdout.lines().collect();
    assert!(
        lines[0].starts_with(&format!("workflow {id} \"report\": running, 3 jobs")),
        "{shown:#?}"
    );
    // Layer 0 holds both fetches, layer 1 the merge with its edges.
    assert!(
        lines[1].trim_start().starts_with("0 fetch-a #"),
        "{shown:#?}"
    );
    assert!(lines[2].contains("fetch-b #"), "{shown:#?}");
    assert!(lines[3].trim_start().starts_with("1 merge #"), "{shown:#?}");
    assert!(
        lines[3].ends_with("[blocked]  <- fetch-a, fetch-b (hold)"),
        "{shown:#?}"
    );

    let json = cli.json(&["workflows", "show", &id]);
    assert_eq!(json["state"], "running");
    assert_eq!(json["counts"]["blocked"], 1);
    assert_eq!(json["jobs"][2]["depends_on"][1]["policy"], "hold");

    cli.run(&["workflows", "show", "987654"])
        .fails(3, "not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_draws_the_graph_on_a_database_and_through_a_server() {
    let (_dir, url) = sqlite_url();
    let cli = Cli::database(&url);
    cli.run(&["migrate"]).ok();
    let id = seed(&url).await;
    exercise(&cli, id);

    let (_dir2, url2) = sqlite_url();
    let server = Server::start(&url2, &[]);
    let id = seed(&url2).await;
    exercise(&Cli::server(&server), id);
}
