//! Safe defaults (issue 17, item 6): what one request may weigh, on every store. A body over
//! `max_body_bytes` is 413; headers over hyper's limit are refused before any handler runs;
//! JSON nested deeper than the parser's limit (128 levels) is a 4xx, never a crash or a 500;
//! and the server answers the next request as before.

mod api_support;

use std::sync::Arc;

use serde_json::{json, Value};
use stoker::Store;

use api_support::{config, start};

store_tests!(bodies_headers_and_json_depth_are_bounded);

/// `{"kind": "deep", "args": [[[...]]]}` with `depth` nested arrays.
fn nested(depth: usize) -> String {
    format!(
        "{{\"kind\": \"deep\", \"args\": {{\"a\": {}{}}}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

async fn bodies_headers_and_json_depth_are_bounded(store: Arc<dyn Store>) {
    let mut config = config();
    config.max_body_bytes = 64 * 1024;
    let server = start(store, config).await;
    let url = format!("{}/v1/jobs", server.url);
    let post_raw = |body: String| {
        server
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
    };

    // The body: one byte over the limit is refused before it is parsed.
    let answer = server
        .post(
            "/v1/jobs",
            json!({"kind": "big", "args": {"blob": "x".repeat(70 * 1024)}}),
        )
        .await;
    answer.assert_error(413, "body_too_large");

    // JSON depth: within the parser's limit the job is taken; far beyond it, a clear 4xx.
    let shallow = server.send(post_raw(nested(20))).await;
    assert_eq!(shallow.status, 201, "{shallow:?}");
    for depth in [200, 20_000] {
        let deep = server.send(post_raw(nested(depth))).await;
        assert!(
            deep.status == 400 || deep.status == 422,
            "{depth} levels: {deep:?}"
        );
        assert!(deep.body["error"]["message"].is_string(), "{deep:?}");
    }

    // Headers: a 1 MiB header is refused by the HTTP layer (431, or the connection closed).
    let huge = "h".repeat(1024 * 1024);
    match server
        .http
        .get(format!("{}/v1/stats", server.url))
        .header("x-padding", huge)
        .send()
        .await
    {
        Ok(response) => assert_eq!(response.status().as_u16(), 431, "{response:?}"),
        Err(err) => assert!(!err.is_timeout(), "{err}"),
    }

    // And the server carries on.
    let stats = server.get("/v1/stats").await;
    assert_eq!(stats.status, 200, "{stats:?}");
    let listed = server.get("/v1/jobs?kind=deep").await;
    assert_eq!(
        listed.body["jobs"].as_array().map(Vec::len),
        Some(1),
        "only the shallow job was written: {listed:?}"
    );
    assert!(matches!(
        listed.body["jobs"][0]["args"]["a"],
        Value::Array(_)
    ));
    server.stop().await;
}
