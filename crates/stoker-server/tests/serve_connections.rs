//! The server stays reachable whatever its clients do: thousands of idle connections, headers
//! or bodies sent slowly or never finished, connections held open, more connections than it
//! serves. Loopback only; every count and wait is bounded, and the waits are generous (the
//! machine is shared and noisy): they bound a hang, they do not measure speed.

use std::time::Duration;

use stoker_server::config::Config;
use stoker_server::serve::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest any single step may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(20);

async fn start(configure: impl FnOnce(&mut Config)) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}", dir.path().join("jobs.sqlite3").display()),
        ..Config::default()
    };
    configure(&mut config);
    let server = Server::start(config).await.expect("start");
    (server, dir)
}

/// `GET /health` on a fresh connection, within [`HANG`].
async fn health(server: &Server) -> reqwest::StatusCode {
    let client = reqwest::Client::builder()
        .timeout(HANG)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    client
        .get(format!("{}/health", server.url()))
        .send()
        .await
        .expect("/health answers")
        .status()
}

/// Reads until the server closes the connection (or resets it), within [`HANG`]; returns what
/// it sent.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(HANG, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await
    .expect("the server closes the connection");
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_beside_two_thousand_idle_and_half_sent_connections() {
    // Start from the common default soft limit, under which 1,100 half-sent requests once
    // made the server unreachable; the server raises it to the hard limit at start.
    #[cfg(target_os = "linux")]
    {
        let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        assert!(
            hard >= 5_000,
            "the hard open-file limit ({hard}) is too low for 2,000 loopback connections"
        );
        rlimit::setrlimit(rlimit::Resource::NOFILE, hard.min(1024), hard).unwrap();
    }
    let (server, _dir) = start(|config| {
        config.http.header_read_timeout = Duration::from_secs(120);
        config.http.idle_timeout = Duration::from_secs(120);
    })
    .await;
    let mut held = Vec::with_capacity(2_000);
    for batch in 0..20 {
        let connects = (0..100).map(|_| TcpStream::connect(server.local_addr()));
        let batch_streams = tokio::time::timeout(HANG, futures::future::join_all(connects))
            .await
            .expect("connections are accepted");
        for (n, stream) in batch_streams.into_iter().enumerate() {
            let mut stream = stream.expect("connect");
            // One in ten starts a request and never finishes its headers.
            if n % 10 == 0 {
                stream
                    .write_all(b"GET /health HTTP/1.1\r\nHost: stoker\r\nX-Slow: ")
                    .await
                    .unwrap();
            }
            held.push(stream);
        }
        assert_eq!(held.len(), (batch + 1) * 100);
    }
    assert_eq!(health(&server).await, reqwest::StatusCode::OK);
    drop(held);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_headers_are_closed_after_the_header_timeout() {
    let (server, _dir) = start(|config| {
        config.http.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    let mut slow = TcpStream::connect(server.local_addr()).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: st")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(server.local_addr()).await.unwrap();
    // Both are closed without an answer to a request they never finished.
    let answer = read_until_closed(&mut slow).await;
    assert!(!answer.contains("200 OK"), "{answer}");
    read_until_closed(&mut silent).await;
    assert_eq!(health(&server).await, reqwest::StatusCode::OK);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let (server, _dir) = start(|config| {
        config.http.header_read_timeout = Duration::from_secs(120);
        config.http.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: stoker\r\n\r\n")
        .await
        .unwrap();
    // The answer comes, then, with no next request, the connection is closed.
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_refused() {
    let (server, _dir) = start(|config| {
        config.http.body_read_timeout = Duration::from_secs(1);
    })
    .await;
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    stream
        .write_all(
            b"POST /v1/jobs HTTP/1.1\r\nHost: stoker\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"kind\": \"x\"",
        )
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream).await;
    // A 4xx naming the timeout (the API maps the body error), then the connection closes.
    assert!(
        answer.starts_with("HTTP/1.1 4") && answer.contains("timeout"),
        "a stalled body is refused: {answer}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_the_limit_gets_a_503_and_is_closed() {
    let (server, _dir) = start(|config| {
        config.http.max_connections = 4;
        config.http.header_read_timeout = Duration::from_secs(120);
        config.http.idle_timeout = Duration::from_secs(120);
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(server.local_addr()).await.unwrap());
    }
    // Accepted in order, so the fifth is over the limit once the four are served.
    let mut refused = TcpStream::connect(server.local_addr()).await.unwrap();
    refused
        .write_all(b"GET /health HTTP/1.1\r\nHost: stoker\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut refused).await;
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    let body: serde_json::Value = serde_json::from_str(body).expect("a JSON error");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");

    // A held connection closed makes room again.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let client = reqwest::Client::builder()
            .timeout(HANG)
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        // Until the server has seen the close, it may still refuse.
        let answer = client.get(format!("{}/health", server.url())).send().await;
        if answer.is_ok_and(|answer| answer.status() == reqwest::StatusCode::OK) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no room after a close"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(held);
    server.shutdown().await.unwrap();
}
