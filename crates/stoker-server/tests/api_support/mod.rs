//! Test servers on real sockets, over a fresh isolated store: a SQLite file in a temporary
//! directory, or a PostgreSQL schema of its own.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use stoker::postgres::PgStore;
use stoker::sqlite::SqliteStore;
use stoker::Store;
use stoker_server::config::{Config, PullSettings};
use stoker_server::serve::Server;

/// How long a test waits for something that should take well under a second.
pub const WAIT: Duration = Duration::from_secs(20);

/// A SQLite store in its own temporary directory, which lives as long as the test process.
pub async fn sqlite() -> Arc<dyn Store> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("stoker.sqlite3");
    std::mem::forget(dir);
    Arc::new(SqliteStore::open(&path).await.expect("open sqlite"))
}

/// The PostgreSQL URL tests use.
pub fn postgres_url() -> String {
    std::env::var("STOKER_TEST_DATABASE_URL")
        .expect("STOKER_TEST_DATABASE_URL must be set for the PostgreSQL tests")
}

/// Drops schemas these tests made more than ten minutes ago, once per test binary, so repeated
/// runs do not pile schemas up in the database.
async fn drop_leftover_schemas(url: &str) {
    static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if SWEPT.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let pool = sqlx::PgPool::connect(url).await.expect("connect postgres");
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'stoker\\_srv\\_%'",
    )
    .fetch_all(&pool)
    .await
    .expect("list test schemas");
    let cutoff = chrono::Utc::now().timestamp() - 600;
    for schema in schemas {
        let made_at = schema
            .split('_')
            .nth(2)
            .and_then(|secs| secs.parse::<i64>().ok());
        if made_at.is_some_and(|secs| secs < cutoff) {
            let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            if let Err(err) = sqlx::query(&drop).execute(&pool).await {
                eprintln!("could not drop leftover schema {schema}: {err}");
            }
        }
    }
    pool.close().await;
}

/// A PostgreSQL store in a schema of its own: `stoker_srv_<unix seconds>_<random>`.
pub async fn postgres() -> Arc<dyn Store> {
    let url = postgres_url();
    drop_leftover_schemas(&url).await;
    let schema = format!(
        "stoker_srv_{}_{:08x}",
        chrono::Utc::now().timestamp(),
        rand::random::<u32>()
    );
    let store = PgStore::builder(&url)
        .schema(&schema)
        .max_connections(8)
        .build()
        .await
        .expect("connect postgres");
    Arc::new(store)
}

/// A configuration for fast tests: any free loopback port, the built-in worker on its own
/// queue (so pull tests own `default` and the others), quick polls and maintenance.
pub fn config() -> Config {
    let mut config = Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    config.worker.queues = [("builtin".to_owned(), 2)].into();
    config.worker.poll_interval = Duration::from_millis(50);
    config.worker.shutdown_grace = Duration::from_secs(2);
    config.pull = PullSettings {
        lease: Duration::from_secs(30),
        max_lease: Duration::from_secs(3600),
        max_wait: Duration::from_secs(30),
        poll_interval: Duration::from_millis(200),
    };
    config.rescuer.interval = Duration::from_millis(100);
    config.stats.sample_interval = Duration::from_millis(100);
    config
}

/// A running server and an HTTP client for it.
pub struct TestServer {
    pub server: Server,
    pub url: String,
    pub http: reqwest::Client,
    pub token: Option<String>,
}

/// Starts a server on `store` with `config`.
pub async fn start(store: Arc<dyn Store>, config: Config) -> TestServer {
    let server = Server::start_with_store(config, store)
        .await
        .expect("start server");
    TestServer {
        url: server.url(),
        server,
        http: reqwest::Client::new(),
        token: None,
    }
}

/// An answer: status and JSON body (`Value::Null` when there is none or it is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    /// The error code of an error answer.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    /// The field of an error answer.
    pub fn field(&self) -> &str {
        self.body["error"]["field"].as_str().unwrap_or_default()
    }

    /// Asserts an error answer with `status` and `code`, shaped as every error must be.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.code(), code, "{self:?}");
        assert!(
            !self.body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "an error needs a message: {self:?}"
        );
    }
}

impl TestServer {
    /// The same server, calling with `token`.
    pub fn with_token(&self, token: &str) -> Caller<'_> {
        Caller {
            server: self,
            token: Some(token.to_owned()),
        }
    }

    /// The server, calling without a token.
    pub fn anonymous(&self) -> Caller<'_> {
        Caller {
            server: self,
            token: None,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.anonymous().get(path).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.anonymous().post(path, body).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.anonymous().delete(path).await
    }

    /// Sends a raw request.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("send request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("read body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            body,
            headers,
        }
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let response = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("scrape");
        assert_eq!(response.status(), 200);
        response.text().await.expect("metrics text")
    }

    /// Enqueues `body`, asserting it is new; returns the id.
    pub async fn enqueue(&self, body: Value) -> i64 {
        let answer = self.post("/v1/jobs", body).await;
        assert_eq!(answer.status, 201, "{answer:?}");
        answer.body["id"].as_i64().expect("an id")
    }

    /// Reserves with `body`, asserting success; returns the jobs.
    pub async fn reserve(&self, body: Value) -> Vec<Value> {
        let answer = self.post("/v1/pull/reserve", body).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.body["jobs"].as_array().expect("jobs").clone()
    }

    /// Gets a job, asserting it exists.
    pub async fn job(&self, id: i64) -> Value {
        let answer = self.get(&format!("/v1/jobs/{id}")).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.body
    }

    /// Stops the server.
    pub async fn stop(self) {
        self.server.shutdown().await.expect("clean shutdown");
    }
}

/// Calls a server with or without a token.
pub struct Caller<'a> {
    server: &'a TestServer,
    token: Option<String>,
}

impl Caller<'_> {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self
            .server
            .http
            .request(method, format!("{}{path}", self.server.url));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.server
            .send(self.request(reqwest::Method::GET, path))
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.server
            .send(self.request(reqwest::Method::POST, path).json(&body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.server
            .send(self.request(reqwest::Method::DELETE, path))
            .await
    }
}

/// Polls `check` every 50 ms until it returns `Some`, failing after [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Expands scenarios `async fn name(store: Arc<dyn Store>)` into one test per store.
#[macro_export]
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::api_support::sqlite().await).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
                async fn $name() {
                    super::$name(super::api_support::postgres().await).await;
                }
            )*
        }
    };
}
