//! What `stoker serve` logs for its operators: refused tokens with the client's address,
//! rate-limited; a warning for a token given on the command line; no colour codes in a log
//! that is not a terminal; one JSON object per line with `--log-format json`.

mod cli_common;

use std::time::{Duration, Instant};

use cli_common::{sqlite_url, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tokens_are_logged_with_the_peer_once_a_second() {
    let (_dir, url) = sqlite_url();
    let server = Server::start(&url, &[]);
    let client = reqwest::Client::new();
    let started = Instant::now();
    for n in 0..60 {
        let request = client.get(format!("{}/v1/jobs", server.url));
        let request = match n % 3 {
            0 => request.bearer_auth("not-the-token-0123456789"),
            1 => request.header("Authorization", "Basic c3Rva2VyOnN0b2tlcg=="),
            _ => request,
        };
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
    }
    // One more after the rate limit's second has passed: it carries the count held back.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client
        .get(format!("{}/v1/jobs", server.url))
        .bearer_auth("still-not-the-token-0123456789")
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed().as_secs();
    let log = server.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("refused an API token"))
        .collect();
    assert!(!lines.is_empty(), "refusals are logged: {log}");
    assert!(
        lines.len() as u64 <= elapsed + 2,
        "at most one line a second: {} lines in {elapsed} s:\n{}",
        lines.len(),
        lines.join("\n")
    );
    for line in &lines {
        assert!(line.contains("WARN"), "{line}");
        assert!(line.contains("peer=127.0.0.1:"), "{line}");
    }
    assert!(
        lines.iter().any(|line| !line.contains("suppressed=0")),
        "the refusals held back are counted: {}",
        lines.join("\n")
    );
    assert!(
        log.contains("an API token was given with --api-token"),
        "a token on the command line is warned about: {log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes in a log that is not a terminal: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_log_format_writes_one_object_a_line() {
    let (_dir, url) = sqlite_url();
    let server = Server::start(&url, &["--log-format", "json"]);
    reqwest::Client::new()
        .get(format!("{}/v1/jobs", server.url))
        .bearer_auth("not-the-token-0123456789")
        .send()
        .await
        .unwrap();
    let log = server.log();
    let mut refused = false;
    for line in log.lines().filter(|line| !line.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}"));
        if value["fields"]["message"] == "refused an API token" {
            assert_eq!(value["level"], "WARN", "{line}");
            assert!(
                value["fields"]["peer"]
                    .as_str()
                    .is_some_and(|peer| peer.starts_with("127.0.0.1:")),
                "{line}"
            );
            refused = true;
        }
    }
    assert!(refused, "the refusal is logged: {log}");
}
