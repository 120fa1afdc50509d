//! The dashboard in a real headless Chromium, driven through chromedriver with fantoccini
//! (issue 14): a counter moves as jobs run, a paused queue's worker stops taking its jobs, a
//! retried failure group empties, a job's page shows its error and logs, a bulk cancel by
//! filter reaches 100 %, and a read-only token finds the buttons refused. Screenshots of
//! every page, light and dark, 1280 and 390 px wide, go to `<target>/screenshots/`.
//!
//! Needs the `chromium` and `chromium-driver` packages (`.ci/run` installs them); without
//! `chromedriver` on the PATH the test says so and passes without running.

mod api_support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fantoccini::{Client as Browser, ClientBuilder, Locator};
use serde_json::{json, Value};
use stoker::{JobContext, JobError, Store, Worker};
use stoker_server::config::{ApiToken, Scope};

use api_support::{config, eventually, start, TestServer, WAIT};

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts chromedriver, or `None` when it is not installed.
async fn driver() -> Option<Driver> {
    let found = Command::new("chromedriver")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        // CI installs chromium and says so: there a missing driver is a failure, not a skip.
        assert!(
            std::env::var_os("STOKER_REQUIRE_BROWSER").is_none(),
            "STOKER_REQUIRE_BROWSER is set but chromedriver is not installed"
        );
        eprintln!(
            "SKIPPED: chromedriver is not installed (apt-get install -y chromium chromium-driver); \
             the dashboard's browser tests did not run"
        );
        return None;
    }
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let status = format!("{}/status", driver.url);
    eventually("chromedriver to listen", || async {
        reqwest::get(&status)
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;
    Some(driver)
}

async fn browser(driver: &Driver) -> Browser {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                        "--disable-gpu", "--hide-scrollbars", "--window-size=1280,900"]}),
    );
    // The dashboard asks before destructive actions; the test says yes.
    caps.insert("unhandledPromptBehavior".to_owned(), json!("accept"));
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a browser session")
}

/// The text of the first element matching `css`, or "" when there is none.
async fn text(browser: &Browser, css: &str) -> String {
    match browser.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits until the text of `css` satisfies `check`, reloading the page when `reload`.
async fn wait_text(
    browser: &Browser,
    css: &str,
    what: &str,
    reload: bool,
    check: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = text(browser, css).await;
        if check(&now) {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {css} reads {now:?}"
        );
        if reload {
            browser.refresh().await.expect("reload");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn count(text: &str) -> i64 {
    text.replace(',', "").trim().parse().unwrap_or(-1)
}

async fn click(browser: &Browser, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|err| panic!("no {css}: {err}"))
        .click()
        .await
        .unwrap_or_else(|err| panic!("click {css}: {err}"));
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// A Chrome DevTools command, sent through chromedriver's `goog/cdp/execute`.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _url: &url::Url) -> (axum::http::Method, Option<String>) {
        let body = json!({"cmd": self.cmd, "params": self.params});
        (axum::http::Method::POST, Some(body.to_string()))
    }
}

/// Makes the page `width` × `height` CSS pixels, as a phone when narrow.
async fn viewport(browser: &Browser, width: u32, height: u32) {
    browser
        .issue_cmd(Cdp {
            cmd: "Emulation.setDeviceMetricsOverride",
            params: json!({"width": width, "height": height, "deviceScaleFactor": 1,
                           "mobile": width < 600}),
        })
        .await
        .expect("set the viewport");
}

/// Screenshots of `path` in both themes at both widths, the page's full height.
async fn shoot(browser: &Browser, base: &str, name: &str, path: &str) {
    let dir = screenshots_dir();
    for theme in ["light", "dark"] {
        for width in [1280u32, 390] {
            viewport(browser, width, 900).await;
            browser.goto(&format!("{base}{path}")).await.expect("open");
            browser
                .execute(
                    "localStorage.setItem('stoker.theme', arguments[0]); \
                     document.documentElement.setAttribute('data-theme', arguments[0]);",
                    vec![json!(theme)],
                )
                .await
                .expect("theme");
            let height = browser
                .execute(
                    "return Math.ceil(Math.max(document.documentElement.scrollHeight, \
                     document.body.scrollHeight));",
                    vec![],
                )
                .await
                .expect("height")
                .as_f64()
                .unwrap_or(900.0)
                .clamp(600.0, 6000.0) as u32;
            viewport(browser, width, height).await;
            tokio::time::sleep(Duration::from_millis(150)).await;
            let png = browser.screenshot().await.expect("screenshot");
            std::fs::write(dir.join(format!("{name}-{theme}-{width}.png")), png).expect("write");
        }
    }
    viewport(browser, 1280, 900).await;
}

async fn state_of(server: &TestServer, id: i64) -> String {
    server.job(id).await["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A worker of this test's own kinds: `resize` takes a moment, `charge` fails its first
/// attempt for good (and logs why), then succeeds when retried.
async fn worker(store: Arc<dyn Store>) -> stoker::WorkerHandle {
    Worker::builder(Arc::clone(&store))
        .history_every(stoker::History::new(store), Duration::from_secs(1))
        .queue("work", 2)
        .queue("billing", 2)
        .poll_interval(Duration::from_millis(50))
        .version("e2e-1.0")
        .handler_fn("resize", |args: Value, ctx: JobContext| async move {
            ctx.log("resizing").await.map_err(JobError::retryable)?;
            tokio::time::sleep(Duration::from_millis(40)).await;
            Ok(json!({"resized": args["n"]}))
        })
        .handler_fn("charge", |args: Value, ctx: JobContext| async move {
            ctx.log(format!("charging customer {}", args["customer"]))
                .await
                .map_err(JobError::retryable)?;
            if ctx.attempt() == 1 {
                ctx.log("provider answered 503")
                    .await
                    .map_err(JobError::retryable)?;
                return Err(JobError::fatal(format!(
                    "payment provider unavailable for customer {}",
                    args["customer"]
                )));
            }
            Ok(json!({"charged": true}))
        })
        .build()
        .expect("build the worker")
        .start()
        .await
        .expect("start the worker")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_in_a_real_browser() {
    let Some(driver) = driver().await else {
        return;
    };
    let store = api_support::sqlite().await;
    let server = start(Arc::clone(&store), config()).await;
    let base = server.url.clone();
    let worker = worker(Arc::clone(&store)).await;
    let browser = browser(&driver).await;

    // A counter moves as jobs run: the live snapshot updates the tile without a reload.
    browser
        .goto(&format!("{base}/"))
        .await
        .expect("open overview");
    wait_text(
        &browser,
        "[data-live-status]",
        "the live stream",
        false,
        |t| t.contains("live"),
    )
    .await;
    let before = count(&text(&browser, r#"[data-live="states.completed"]"#).await);
    assert_eq!(before, 0);
    for n in 0..12 {
        server
            .enqueue(json!({"kind": "resize", "queue": "work", "args": {"n": n}}))
            .await;
    }
    wait_text(
        &browser,
        r#"[data-live="states.completed"]"#,
        "the completed counter",
        false,
        |t| count(t) == 12,
    )
    .await;

    // Pause a queue from its row; the worker stops taking its jobs; resume, and they run.
    browser
        .goto(&format!("{base}/queues"))
        .await
        .expect("queues");
    click(
        &browser,
        r#"tr[data-queue="work"] button[data-action="pause"]"#,
    )
    .await;
    wait_text(&browser, ".notice", "the paused notice", false, |t| {
        t.contains("Queue paused")
    })
    .await;
    let mut held = Vec::new();
    for n in 0..3 {
        held.push(
            server
                .enqueue(json!({"kind": "resize", "queue": "work", "args": {"n": 100 + n}}))
                .await,
        );
    }
    // Several poll intervals of the worker pass; none of the held jobs is taken.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for id in &held {
        assert_eq!(
            state_of(&server, *id).await,
            "available",
            "a paused queue's job ran"
        );
    }
    browser
        .goto(&format!("{base}/queues"))
        .await
        .expect("queues");
    assert_eq!(
        text(&browser, r#"tr[data-queue="work"] .badge.paused"#).await,
        "paused"
    );
    click(
        &browser,
        r#"tr[data-queue="work"] button[data-action="resume"]"#,
    )
    .await;
    for id in &held {
        let id = *id;
        eventually("a resumed queue's job to run", || async {
            (state_of(&server, id).await == "completed").then_some(())
        })
        .await;
    }

    // Failures group by message; the job's page shows its error and its logs.
    let mut charges = Vec::new();
    for customer in [17, 23, 42] {
        charges.push(
            server
                .enqueue(
                    json!({"kind": "charge", "queue": "billing", "args": {"customer": customer}}),
                )
                .await,
        );
    }
    for id in &charges {
        let id = *id;
        eventually("a charge to fail", || async {
            (state_of(&server, id).await == "discarded").then_some(())
        })
        .await;
    }
    browser
        .goto(&format!("{base}/failures"))
        .await
        .expect("failures");
    let message = text(&browser, ".group-message").await;
    assert_eq!(message, "payment provider unavailable for customer <n>");
    assert_eq!(text(&browser, ".group-count b").await, "3");
    shoot(&browser, &base, "failures", "/failures").await;
    browser
        .goto(&format!("{base}/jobs/{}", charges[0]))
        .await
        .expect("a job");
    let error = text(&browser, ".error-text").await;
    assert_eq!(error, "payment provider unavailable for customer 17");
    let logs = text(&browser, ".logs").await;
    assert!(logs.contains("charging customer 17"), "{logs}");
    assert!(logs.contains("provider answered 503"), "{logs}");
    shoot(
        &browser,
        &base,
        "job-failed",
        &format!("/jobs/{}", charges[0]),
    )
    .await;

    // Retry the group: a bulk operation; its jobs run again and the dead letters empty.
    browser
        .goto(&format!("{base}/failures"))
        .await
        .expect("failures");
    click(&browser, r#"button[data-action="retry-group"]"#).await;
    wait_text(
        &browser,
        "[data-op-state]",
        "the group's retry",
        true,
        |t| t == "done",
    )
    .await;
    assert_eq!(text(&browser, "[data-op-percent]").await, "100%");
    for id in &charges {
        let id = *id;
        eventually("a retried charge to complete", || async {
            (state_of(&server, id).await == "completed").then_some(())
        })
        .await;
    }
    browser
        .goto(&format!("{base}/jobs?q=kind%3Acharge+state%3Adiscarded"))
        .await
        .expect("jobs");
    assert_eq!(text(&browser, ".empty h2").await, "No jobs match");
    browser
        .goto(&format!("{base}/failures"))
        .await
        .expect("failures");
    assert_eq!(text(&browser, "[data-failing]").await, "no job failed now");

    // A bulk cancel by filter, from the search, to 100 %.
    for n in 0..40 {
        server
            .enqueue(json!({"kind": "resize", "queue": "parked", "args": {"n": n}}))
            .await;
    }
    shoot(&browser, &base, "jobs", "/jobs?q=queue%3Aparked").await;
    browser
        .goto(&format!("{base}/jobs?q=queue%3Aparked+state%3Aavailable"))
        .await
        .expect("jobs");
    click(&browser, "[data-show-all-matching]").await;
    let dialog = text(&browser, "#all-h").await;
    assert_eq!(dialog, "Act on all 40 matching jobs");
    browser
        .find(Locator::Css("#bulk-action"))
        .await
        .expect("the action")
        .select_by_value("cancel")
        .await
        .expect("choose cancel");
    click(&browser, "[data-start-bulk]").await;
    wait_text(&browser, "[data-op-state]", "the bulk cancel", false, |t| {
        t == "done"
    })
    .await;
    assert_eq!(text(&browser, "[data-op-percent]").await, "100%");
    assert_eq!(text(&browser, "[data-op-done]").await, "40");
    let op_path = browser.current_url().await.expect("url").path().to_owned();
    assert_eq!(
        text(&browser, "code.filter").await,
        "state:available queue:parked"
    );
    // New jobs show as a banner over the list; the rows stay where they are.
    browser
        .goto(&format!("{base}/jobs?q=queue%3Aparked"))
        .await
        .expect("jobs");
    wait_text(
        &browser,
        "[data-live-status]",
        "the live stream",
        false,
        |t| t.contains("live"),
    )
    .await;
    let first_row = text(&browser, "tbody tr th").await;
    for n in 0..2 {
        server
            .enqueue(json!({"kind": "resize", "queue": "parked", "args": {"n": 200 + n}}))
            .await;
    }
    wait_text(
        &browser,
        "[data-new-count]",
        "the new-jobs banner",
        false,
        |t| t == "2",
    )
    .await;
    assert_eq!(
        text(&browser, "tbody tr th").await,
        first_row,
        "the rows did not move"
    );
    let cancelled = server
        .get("/v1/jobs?queue=parked&state=cancelled&limit=100")
        .await;
    assert_eq!(cancelled.body["jobs"].as_array().unwrap().len(), 40);

    // Screenshots of every page.
    server
        .post(
            "/v1/alerts",
            json!({"name": "dead-letters", "metric": "discarded", "window_seconds": 3600,
                   "url": "http://127.0.0.1:9/hook"}),
        )
        .await;
    server
        .post(
            "/v1/cron",
            json!({"name": "nightly-report", "expr": "0 3 * * *", "kind": "report"}),
        )
        .await;
    for n in 0..5 {
        server
            .enqueue(json!({"kind": "email", "queue": "mailers", "args": {"n": n}}))
            .await;
    }
    shoot(&browser, &base, "overview", "/").await;
    shoot(&browser, &base, "overview-24h", "/?range=24h").await;
    shoot(&browser, &base, "queues", "/queues").await;
    shoot(&browser, &base, "queue", "/queues/work").await;
    shoot(&browser, &base, "jobs-all", "/jobs").await;
    shoot(
        &browser,
        &base,
        "job-completed",
        &format!("/jobs/{}", charges[1]),
    )
    .await;
    shoot(&browser, &base, "workers", "/workers").await;
    shoot(&browser, &base, "ops", "/ops").await;
    shoot(&browser, &base, "op", &op_path).await;
    shoot(&browser, &base, "cron", "/cron").await;
    // --- stream dash ---
    // The pages of the later capabilities: limits, the audit log, a workflow.
    let limit = server
        .send(server.http.put(format!("{base}/v1/limits/openai")).json(
            &json!({"kind": "generate", "key": "tenant", "concurrency": 4,
                              "rate": {"count": 100, "period_ms": 60000}}),
        ))
        .await;
    assert_eq!(limit.status, 200, "{:?}", limit.body);
    let workflow = server
        .post(
            "/v1/workflows",
            json!({"name": "nightly-report", "jobs": [
                {"name": "fetch", "job": {"kind": "fetch", "queue": "reports"}},
                {"name": "clean", "job": {"kind": "clean", "queue": "reports"},
                 "depends_on": [{"node": "fetch", "policy": "run"}]},
                {"name": "merge", "job": {"kind": "merge", "queue": "reports"},
                 "depends_on": [{"node": "fetch", "policy": "run"},
                                {"node": "clean", "policy": "run"}]},
            ]}),
        )
        .await;
    assert_eq!(workflow.status, 201, "{:?}", workflow.body);
    let workflow_id = workflow.body["id"].as_i64().unwrap();
    shoot(&browser, &base, "limits", "/limits").await;
    browser
        .goto(&format!("{base}/limits"))
        .await
        .expect("limits");
    assert!(text(&browser, "main").await.contains("openai"));
    shoot(&browser, &base, "audit", "/audit").await;
    browser.goto(&format!("{base}/audit")).await.expect("audit");
    assert!(text(&browser, "main").await.contains("queue.pause"));
    shoot(
        &browser,
        &base,
        "workflow",
        &format!("/workflows/{workflow_id}"),
    )
    .await;
    browser
        .goto(&format!("{base}/workflows/{workflow_id}"))
        .await
        .expect("workflow");
    assert!(text(&browser, "main").await.contains("merge"));
    // --- stream workflows ---
    // The lists, once they hold a workflow and a batch.
    let batch = server
        .post(
            "/v1/batches",
            json!({"name": "spring-campaign",
                   "callback": {"kind": "report", "queue": "reports"},
                   "jobs": [{"kind": "deliver", "queue": "reports"},
                            {"kind": "deliver", "queue": "reports"}]}),
        )
        .await;
    assert_eq!(batch.status, 201, "{:?}", batch.body);
    shoot(&browser, &base, "workflows", "/workflows").await;
    browser
        .goto(&format!("{base}/workflows"))
        .await
        .expect("workflows");
    assert!(text(&browser, "main").await.contains("nightly-report"));
    shoot(&browser, &base, "batches", "/batches").await;
    browser
        .goto(&format!("{base}/batches"))
        .await
        .expect("batches");
    assert!(text(&browser, "main").await.contains("spring-campaign"));
    browser.close().await.expect("close the browser");

    // --- stream dash ---
    // The polling fallback: with the event stream blocked (as a proxy that cuts streams
    // would), the overview says so and polls the shared snapshot, and its counters still move.
    let browser = self::browser(&driver).await;
    browser
        .issue_cmd(Cdp {
            cmd: "Network.enable",
            params: json!({}),
        })
        .await
        .expect("enable the network domain");
    browser
        .issue_cmd(Cdp {
            cmd: "Network.setBlockedURLs",
            params: json!({"urls": ["*/ui/live*"]}),
        })
        .await
        .expect("block the event stream");
    browser
        .goto(&format!("{base}/"))
        .await
        .expect("open overview");
    wait_text(
        &browser,
        "[data-live-status]",
        "the polling fallback",
        false,
        |t| t.contains("polling"),
    )
    .await;
    let before = count(&text(&browser, r#"[data-live="states.completed"]"#).await);
    assert!(before > 0, "the overview shows the completed jobs");
    for n in 0..3 {
        server
            .enqueue(json!({"kind": "resize", "queue": "work", "args": {"n": 300 + n}}))
            .await;
    }
    wait_text(
        &browser,
        r#"[data-live="states.completed"]"#,
        "the completed counter, by polling",
        false,
        |t| count(t) == before + 3,
    )
    .await;
    browser.close().await.expect("close the browser");

    // A read-only token: every button is off, and the server refuses a forced submit.
    let mut with_tokens = config();
    let mut viewer = ApiToken::admin("read-secret-0123456789");
    viewer.name = "viewer".to_owned();
    viewer.scopes = [Scope::Read].into();
    with_tokens.tokens = vec![ApiToken::admin("admin-secret-0123456789"), viewer];
    let guarded = start(Arc::clone(&store), with_tokens).await;
    let browser = self::browser(&driver).await;
    browser
        .goto(&format!("{}/queues", guarded.url))
        .await
        .expect("open");
    assert!(browser
        .current_url()
        .await
        .unwrap()
        .path()
        .starts_with("/login"));
    shoot(&browser, &guarded.url, "login", "/login").await;
    browser
        .goto(&format!("{}/queues", guarded.url))
        .await
        .expect("open");
    browser
        .find(Locator::Css("#token"))
        .await
        .expect("the token field")
        .send_keys("read-secret-0123456789")
        .await
        .expect("type");
    click(&browser, r#"button[type="submit"]"#).await;
    wait_text(&browser, "h1", "the queues page", false, |t| t == "Queues").await;
    let pause = browser
        .find(Locator::Css(
            r#"tr[data-queue="work"] button[data-action="pause"]"#,
        ))
        .await
        .expect("the pause button");
    assert!(
        !pause.is_enabled().await.unwrap(),
        "a read-only token's button is off"
    );
    assert!(text(&browser, ".tool.user").await.contains("read-only"));
    browser
        .execute(
            "document.querySelector('tr[data-queue=\"work\"] form').submit();",
            vec![],
        )
        .await
        .expect("force the form");
    wait_text(&browser, "h1", "the refusal", false, |t| t == "Not allowed").await;
    let queues = guarded
        .with_token("admin-secret-0123456789")
        .get("/v1/queues")
        .await;
    let work = queues.body["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "work")
        .cloned()
        .unwrap();
    assert_eq!(work["paused"], false, "the refused pause changed nothing");
    browser.close().await.expect("close the browser");

    guarded.stop().await;
    worker.shutdown().await;
    server.stop().await;
}
