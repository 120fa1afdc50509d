//! `stoker serve` on PostgreSQL: in the schema it is told, and through a database outage
//! (simulated by a proxy in front of the shared server, which is never stopped). Skipped,
//! and listed as ignored with the reason, when `STOKER_TEST_DATABASE_URL` is unset.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stoker_server::config::Config;
use stoker_server::serve::Server;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

fn postgres_url() -> String {
    std::env::var("STOKER_TEST_DATABASE_URL").expect("STOKER_TEST_DATABASE_URL is set")
}

/// A schema name no other test uses.
fn fresh_schema() -> String {
    format!("stoker_serve_{:016x}", rand::random::<u64>())
}

async fn drop_schema(schema: &str) {
    let pool = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

fn config(database_url: String, schema: &str) -> Config {
    Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        database_url,
        database_schema: schema.to_owned(),
        ..Config::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
async fn serve_keeps_its_tables_in_the_schema_it_is_given() {
    let schema = fresh_schema();
    let server = Server::start(config(postgres_url(), &schema))
        .await
        .expect("start");
    let response = reqwest::Client::new()
        .post(format!("{}/v1/jobs", server.url()))
        .json(&serde_json::json!({"kind": "schema_test", "queue": "elsewhere"}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{response:?}");
    let pool = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
    let kinds: Vec<String> =
        sqlx::query_scalar(&format!("SELECT kind FROM \"{schema}\".stoker_jobs"))
            .fetch_all(&pool)
            .await
            .expect("the jobs table is in the schema");
    assert_eq!(kinds, ["schema_test"]);
    pool.close().await;
    server.shutdown().await.unwrap();
    drop_schema(&schema).await;
}

/// A TCP proxy to PostgreSQL that can cut the database off: it drops every forwarded
/// connection, and accepts new ones without ever answering, as an unreachable host would.
struct Proxy {
    addr: std::net::SocketAddr,
    cut: Arc<AtomicBool>,
    sessions: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            cut: Arc::new(AtomicBool::new(false)),
            sessions: Arc::new(Mutex::new(CancellationToken::new())),
            stop: CancellationToken::new(),
        };
        let (cut, sessions, stop) = (
            Arc::clone(&proxy.cut),
            Arc::clone(&proxy.sessions),
            proxy.stop.clone(),
        );
        tokio::spawn(async move {
            let mut black_hole = Vec::new();
            loop {
                let (mut client, _) = tokio::select! {
                    accepted = listener.accept() => accepted.unwrap(),
                    () = stop.cancelled() => return,
                };
                if cut.load(Ordering::SeqCst) {
                    black_hole.push(client);
                    continue;
                }
                let session = sessions.lock().unwrap().clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        () = session.cancelled() => {}
                    }
                });
            }
        });
        proxy
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        let mut sessions = self.sessions.lock().unwrap();
        sessions.cancel();
        *sessions = CancellationToken::new();
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.sessions.lock().unwrap().cancel();
    }
}

/// While the database is unreachable, `/health` answers 503 within about a second and the API
/// fails fast with a 503 `unavailable` (the pool's acquire timeout), rather than every request
/// hanging for 30 s; once the database is back, both recover on their own. The bounds are
/// loose on purpose (a noisy shared machine): 5 s for the 1 s health check, 10 s for the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
async fn an_unreachable_database_is_answered_503_promptly() {
    let upstream = reqwest::Url::parse(&postgres_url()).unwrap();
    let upstream_addr = format!(
        "{}:{}",
        upstream.host_str().unwrap(),
        upstream.port().unwrap_or(5432)
    );
    let proxy = Proxy::start(upstream_addr).await;
    let mut through_proxy = upstream.clone();
    through_proxy.set_host(Some("127.0.0.1")).unwrap();
    through_proxy.set_port(Some(proxy.addr.port())).unwrap();
    let schema = fresh_schema();
    let mut config = config(through_proxy.to_string(), &schema);
    config.database_acquire_timeout = Duration::from_secs(1);
    let server = Server::start(config).await.expect("start");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(25))
        .build()
        .unwrap();
    let health = client
        .get(format!("{}/health", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);

    proxy.cut();
    // The first calls may fail at once on connections the cut broke; the later ones need a
    // new connection, which never comes, so they show the acquire timeout.
    for _ in 0..3 {
        let started = Instant::now();
        let health = client
            .get(format!("{}/health", server.url()))
            .send()
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(health.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = health.json().await.unwrap();
        assert_eq!(body["store_reachable"], false, "{body}");
        assert!(took < Duration::from_secs(5), "/health took {took:?}");

        let started = Instant::now();
        let jobs = client
            .get(format!("{}/v1/jobs", server.url()))
            .send()
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(jobs.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = jobs.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unavailable", "{body}");
        assert!(took < Duration::from_secs(10), "the API took {took:?}");
    }

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health = client
            .get(format!("{}/health", server.url()))
            .send()
            .await
            .unwrap();
        if health.status() == reqwest::StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "the server did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let jobs = client
        .get(format!("{}/v1/jobs", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(jobs.status(), reqwest::StatusCode::OK);
    server.shutdown().await.unwrap();
    drop(proxy);
    drop_schema(&schema).await;
}

/// `database_async_ack_commit` reaches the store: a server started with it on PostgreSQL
/// acknowledges a pulled job, which is then completed as without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
async fn async_ack_commit_serves_acknowledgements() {
    let schema = fresh_schema();
    let mut config = config(postgres_url(), &schema);
    config.database_async_ack_commit = true;
    let server = Server::start(config).await.expect("start");
    let http = reqwest::Client::new();
    let created: serde_json::Value = http
        .post(format!("{}/v1/jobs", server.url()))
        .json(&serde_json::json!({"kind": "ack_test", "queue": "acks"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].clone();
    let reserved: serde_json::Value = http
        .post(format!("{}/v1/pull/reserve", server.url()))
        .json(&serde_json::json!({"worker": "w1", "queues": ["acks"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reserved = reserved["jobs"].as_array().expect("a list of jobs");
    assert_eq!(reserved.len(), 1, "{reserved:?}");
    assert_eq!(reserved[0]["id"], id);
    let done = http
        .post(format!("{}/v1/pull/jobs/{id}/complete", server.url()))
        .json(&serde_json::json!({"fence": reserved[0]["fence"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), reqwest::StatusCode::OK);
    let job: serde_json::Value = http
        .get(format!("{}/v1/jobs/{id}", server.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["state"], "completed", "{job}");
    server.shutdown().await.expect("clean shutdown");
    drop_schema(&schema).await;
}
