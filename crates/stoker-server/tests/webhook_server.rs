//! The `webhook` handler as users meet it: enqueued with the CLI through `stoker serve`, whose
//! built-in worker delivers it to an HTTP endpoint on 127.0.0.1.

mod cli_common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use cli_common::{sqlite_url, Cli, Server};
use serde_json::{json, Value};

/// Waits until the job is finished (completed, discarded or cancelled), up to 20 s.
async fn finished(cli: &Cli, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let job = cli.json(&["jobs", "show", id]);
        if matches!(
            job["state"].as_str(),
            Some("completed" | "discarded" | "cancelled")
        ) {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} did not finish: {job:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_server_delivers_webhooks_enqueued_with_the_cli() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/hook",
            post({
                let calls = Arc::clone(&calls);
                move |body: String| async move {
                    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                        (
                            StatusCode::BAD_GATEWAY,
                            [("retry-after", "0")],
                            "try again".to_owned(),
                        )
                    } else {
                        (
                            StatusCode::OK,
                            [("retry-after", "0")],
                            format!("got {body}"),
                        )
                    }
                }
            }),
        )
        .route(
            "/gone",
            post(|| async { (StatusCode::GONE, "this hook was removed") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (_dir, url) = sqlite_url();
    let server = Server::start(&url, &["--poll-interval", "100ms"]);
    let cli = Cli::server(&server);

    let args = json!({"url": format!("{target}/hook"), "body": "order 42"}).to_string();
    let enqueued = cli.json(&["enqueue", "webhook", "--args", &args]);
    let id = enqueued["id"].to_string();
    let job = finished(&cli, &id).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(job["attempt"], 2);
    assert_eq!(job["result"]["status"], 200);
    assert_eq!(job["result"]["body"], "got order 42");
    assert!(
        job["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("HTTP 502 Bad Gateway: try again"),
        "{job:#}"
    );
    let human = cli.run(&["jobs", "show", &id]).ok();
    assert!(
        human
            .stdout
            .contains("(error): HTTP 502 Bad Gateway: try again"),
        "{human:#?}"
    );

    let args = json!({"url": format!("{target}/gone")}).to_string();
    let id = cli.json(&["enqueue", "webhook", "--args", &args])["id"].to_string();
    let job = finished(&cli, &id).await;
    assert_eq!(job["state"], "discarded", "{job:#}");
    assert_eq!(job["attempt"], 1);
    assert_eq!(
        job["errors"][0]["message"],
        "HTTP 410 Gone: this hook was removed"
    );

    // Refused by the server before anything is written.
    cli.run(&["enqueue", "webhook", "--args", r#"{"url": "not a url"}"#])
        .fails(2, "args.url");
}
