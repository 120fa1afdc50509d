//! The dashboard's pages and actions over a real socket, on every store (issue 14): each page
//! renders over a seeded store with its content, the security headers hold, sign-in and
//! scopes are honoured, tenant-bound tokens see only their tenant, and an unsafe request
//! needs both the same origin and the form token.

mod api_support;

use std::collections::BTreeSet;
use std::sync::Arc;

use reqwest::header::{HeaderMap, HeaderValue, COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::json;
use stoker::Store;
use stoker_server::config::{ApiToken, Config, Scope};

use api_support::{config, eventually, start, TestServer};

store_tests!(
    every_page_renders_over_a_seeded_store,
    signing_in_honours_scopes_and_tenants,
    unsafe_requests_need_the_same_origin_and_the_form_token,
    actions_go_through_the_client,
    // --- stream ops ---
    due_and_scheduled_tiles_and_the_polled_snapshot,
    the_failures_page_counts_its_range,
    // --- stream wf ---
    a_workflow_page_draws_its_graph,
    // --- stream workflows ---
    the_workflow_and_batch_lists_and_a_batch_page,
    batch_and_workflow_buttons_go_through_the_client,
);

/// A browser without redirects or a cookie jar: the test sees every step.
struct Browser<'a> {
    server: &'a TestServer,
    http: reqwest::Client,
    cookie: Option<String>,
}

/// A page as the browser got it.
#[derive(Debug)]
struct Page {
    status: u16,
    headers: HeaderMap,
    html: String,
}

impl Page {
    /// The form token the page carries.
    fn csrf(&self) -> String {
        let at = self
            .html
            .find(r#"name="csrf" value=""#)
            .expect("a form token")
            + 19;
        self.html[at..at + 64].to_owned()
    }

    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    #[track_caller]
    fn assert_has(&self, text: &str) {
        assert!(
            self.html.contains(text),
            "expected {text:?} in the page ({}):\n{}",
            self.status,
            self.html
        );
    }
}

impl<'a> Browser<'a> {
    fn new(server: &'a TestServer) -> Self {
        Browser {
            server,
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            cookie: None,
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let request = match &self.cookie {
            Some(cookie) => request.header(COOKIE, cookie.clone()),
            None => request,
        };
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if let Some(set) = headers.get(SET_COOKIE).and_then(|v| v.to_str().ok()) {
            let pair = set.split(';').next().unwrap_or_default().to_owned();
            self.cookie = if pair.ends_with('=') {
                None
            } else {
                Some(pair)
            };
        }
        Page {
            status,
            headers,
            html: response.text().await.expect("body"),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let url = format!("{}{path}", self.server.url);
        self.send(self.http.get(url)).await
    }

    /// Posts a form as the dashboard's own page would (same origin).
    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let url = format!("{}{path}", self.server.url);
        let request = self
            .http
            .post(url)
            .header("sec-fetch-site", "same-origin")
            .form(form);
        self.send(request).await
    }

    async fn sign_in(&mut self, token: &str) -> Page {
        self.post("/login", &[("token", token), ("next", "/")])
            .await
    }
}

/// Every dashboard response: a strict policy, no inline script and no style attribute.
#[track_caller]
fn assert_safe(page: &Page) {
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    assert!(
        !page.html.contains(" style="),
        "a style attribute:\n{}",
        page.html
    );
    for (at, _) in page.html.match_indices("<script") {
        let tag = &page.html[at..at + page.html[at..].find('>').unwrap()];
        assert!(
            tag.contains(" src=\"/ui/assets/"),
            "an inline script: {tag}"
        );
    }
}

async fn seed(server: &TestServer) -> (i64, String) {
    for n in 0..4 {
        server
            .enqueue(json!({"kind": "email", "queue": "mailers", "args": {"to": format!("u{n}@example.com")}}))
            .await;
    }
    let failing = server
        .enqueue(
            json!({"kind": "import", "queue": "pull", "args": {"file": "a.csv"}, "tenant": "acme"}),
        )
        .await;
    let jobs = server
        .reserve(json!({"worker": "py", "queues": ["pull"], "limit": 1}))
        .await;
    let fence = jobs[0]["fence"].as_i64().unwrap();
    let logged = server
        .post(
            &format!("/v1/pull/jobs/{failing}/logs"),
            json!({"fence": fence, "lines": ["opening a.csv", "row 7: bad date"]}),
        )
        .await;
    assert_eq!(logged.status, 200, "{logged:?}");
    let failed = server
        .post(
            &format!("/v1/pull/jobs/{failing}/fail"),
            json!({"fence": fence, "error": "row 7 has bad date 2024-13-01", "discard": true}),
        )
        .await;
    assert_eq!(failed.status, 200, "{failed:?}");
    let created = server
        .post(
            "/v1/cron",
            json!({"name": "nightly-report", "expr": "0 3 * * *", "kind": "report"}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let groups = server.get("/v1/failures?limit=10").await;
    let fingerprint = groups.body["groups"][0]["fingerprint"]
        .as_str()
        .expect("a failure group")
        .to_owned();
    (failing, fingerprint)
}

async fn every_page_renders_over_a_seeded_store(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let (failing, _) = seed(&server).await;
    let mut browser = Browser::new(&server);

    let overview = browser.get("/").await;
    assert_eq!(overview.status, 200, "{overview:?}");
    assert_safe(&overview);
    assert!(browser.cookie.is_some(), "an open server opens a session");
    overview.assert_has("<h1>Overview</h1>");
    overview.assert_has(r#"data-live="states.available""#);
    overview.assert_has("Throughput");
    overview.assert_has("Wait time");
    overview.assert_has("<svg class=\"chart\"");
    overview.assert_has(r#"aria-current="true">1 h</a>"#);
    // The pull queue has work and no live worker: the attention bar says so.
    overview.assert_has("Needs attention");
    overview.assert_has("no live worker serves it");
    let week = browser.get("/?range=7d").await;
    week.assert_has(r#"aria-current="true">7 d</a>"#);
    week.assert_has("per 2 hours");

    let queues = browser.get("/queues").await;
    assert_safe(&queues);
    queues.assert_has(r#"<a href="/queues/mailers">mailers</a>"#);
    queues.assert_has(r#"data-live="queue.mailers.available">4</td>"#);
    queues.assert_has(r#"action="/ui/queues/mailers/pause""#);
    let queue = browser.get("/queues/mailers").await;
    assert_eq!(queue.status, 200);
    queue.assert_has("<h1>mailers");
    queue.assert_has("Jobs in this queue");
    assert_eq!(browser.get("/queues/nowhere").await.status, 404);

    let jobs = browser.get("/jobs").await;
    assert_safe(&jobs);
    jobs.assert_has(&format!(r#"href="/jobs/{failing}""#));
    jobs.assert_has("row 7 has bad date 2024-13-01");
    let discarded = browser.get("/jobs?q=state%3Adiscarded").await;
    discarded.assert_has(&format!("#{failing}"));
    assert!(!discarded.html.contains("u0@example.com"));
    let mailers = browser
        .get("/jobs?q=queue%3Amailers+state%3Aavailable")
        .await;
    mailers.assert_has("<b>4</b> matching");
    assert!(!mailers.html.contains(&format!("#{failing}<")));
    let refused = browser.get("/jobs?q=stat%3Ax").await;
    refused.assert_has("unknown qualifier");
    // The rest of the language: a correlation id, free text in the args, a page cursor.
    let text = browser.get("/jobs?q=u2%40example.com").await;
    text.assert_has("<b>1</b> matching");
    let older = browser.get("/jobs?q=queue%3Amailers&older=999999").await;
    older.assert_has("⇤ Newest");
    let by_id = browser.get(&format!("/jobs?q=id%3A{failing}")).await;
    assert_eq!(by_id.status, 303);
    assert_eq!(by_id.location(), format!("/jobs/{failing}"));

    let job = browser.get(&format!("/jobs/{failing}")).await;
    assert_safe(&job);
    job.assert_has("row 7 has bad date 2024-13-01");
    job.assert_has("row 7: bad date");
    job.assert_has("&#34;file&#34;: &#34;a.csv&#34;");
    job.assert_has("stoker enqueue import --args");
    job.assert_has("--tenant acme");
    job.assert_has("/v1/jobs");
    job.assert_has(r#"data-action="retry""#);
    assert_eq!(browser.get("/jobs/999999").await.status, 404);
    assert_eq!(browser.get("/jobs/nope").await.status, 400);

    let failures = browser.get("/failures").await;
    assert_safe(&failures);
    failures.assert_has("1 jobs failed now");
    failures.assert_has("row &#60;n&#62; has bad date &#60;n&#62;-&#60;n&#62;-&#60;n&#62;");
    failures.assert_has("Retry group");
    failures.assert_has("<svg class=\"spark s-failed\"");

    let workers = browser.get("/workers").await;
    assert_safe(&workers);
    workers.assert_has("ws-idle");

    let cron = browser.get("/cron").await;
    cron.assert_has("nightly-report");
    cron.assert_has("0 3 * * *");

    let ops = browser.get("/ops").await;
    ops.assert_has("No bulk operations");
    ops.assert_has("No alert rules");
    let rule = server
        .post(
            "/v1/alerts",
            json!({"name": "dead-letters", "metric": "discarded", "url": "http://127.0.0.1:9/hook"}),
        )
        .await;
    assert_eq!(rule.status, 201, "{rule:?}");
    let ops = browser.get("/ops").await;
    assert_safe(&ops);
    ops.assert_has("<th scope=\"row\">dead-letters</th>");
    ops.assert_has("discarded &#62; 0 over 5 min");

    // The assets: immutable under a hashed name; anything else is not found.
    let css = overview
        .html
        .split('"')
        .find(|part| part.starts_with("/ui/assets/app-") && part.ends_with(".css"))
        .expect("the style sheet's URL")
        .to_owned();
    let sheet = browser.get(&css).await;
    assert_eq!(sheet.status, 200);
    assert!(sheet.headers["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert!(sheet.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    assert_eq!(browser.get("/ui/assets/app.css").await.status, 404);
    // The API keeps its routes and its JSON errors.
    assert_eq!(server.get("/v1/nowhere").await.code(), "route_not_found");
    server.stop().await;
}

/// Whether the API says queue `name` is paused.
async fn paused(server: &TestServer, name: &str) -> bool {
    // An open server ignores the token.
    let answer = server
        .with_token("admin-secret-0123456789")
        .get("/v1/queues")
        .await;
    answer.body["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .find(|q| q["name"] == name)
        .map(|q| q["paused"] == true)
        .expect("the queue")
}

fn token(name: &str, secret: &str, scopes: &[Scope], tenant: Option<&str>) -> ApiToken {
    let mut token = ApiToken::admin(secret);
    token.name = name.to_owned();
    token.scopes = scopes.iter().copied().collect::<BTreeSet<_>>();
    token.tenant = tenant.map(str::to_owned);
    token
}

fn with_tokens() -> Config {
    let mut config = config();
    // A revoked stored token ends its dashboard session within this long.
    config.token_cache_ttl = std::time::Duration::from_secs(1);
    config.tokens = vec![
        token("ops", "admin-secret-0123456789", &[Scope::Admin], None),
        token("viewer", "read-secret-0123456789", &[Scope::Read], None),
        token(
            "pusher",
            "enqueue-secret-0123456789",
            &[Scope::Enqueue],
            None,
        ),
        token(
            "acme",
            "acme-secret-0123456789",
            &[Scope::Read],
            Some("acme"),
        ),
    ];
    config
}

async fn signing_in_honours_scopes_and_tenants(store: Arc<dyn Store>) {
    let server = start(store, with_tokens()).await;
    let admin = server.with_token("admin-secret-0123456789");
    for (tenant, n) in [("acme", 0), ("globex", 1)] {
        let answer = admin
            .post(
                "/v1/jobs",
                json!({"kind": "email", "queue": "mailers", "tenant": tenant, "args": {"n": n}}),
            )
            .await;
        assert_eq!(answer.status, 201, "{answer:?}");
    }
    let mut browser = Browser::new(&server);

    // No data without a session: pages send to the form, everything else is refused.
    let page = browser.get("/jobs?q=kind%3Aemail").await;
    assert_eq!(page.status, 303);
    assert_eq!(page.location(), "/login?next=%2Fjobs%3Fq%3Dkind%253Aemail");
    assert!(browser.cookie.is_none());
    assert_eq!(browser.get("/ui/live").await.status, 303);
    let form = browser.get("/login").await;
    assert_eq!(form.status, 200);
    assert_safe(&form);
    form.assert_has(r#"type="password""#);

    let wrong = browser.sign_in("not-a-token").await;
    assert_eq!(wrong.status, 401);
    wrong.assert_has("unknown API token");
    assert!(browser.cookie.is_none());
    let pusher = browser.sign_in("enqueue-secret-0123456789").await;
    assert_eq!(pusher.status, 401);
    pusher.assert_has("needs the read (or admin) scope");

    // A read token: everything shows, every button is off, and the server refuses anyway.
    let signed = browser.sign_in("read-secret-0123456789").await;
    assert_eq!(signed.status, 303, "{signed:?}");
    let cookie = signed.headers[SET_COOKIE].to_str().unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    let queues = browser.get("/queues").await;
    assert_eq!(queues.status, 200, "{queues:?}");
    queues.assert_has("viewer · read-only");
    queues.assert_has(r#"data-action="pause" disabled"#);
    let csrf = queues.csrf();
    let refused = browser
        .post(
            "/ui/queues/mailers/pause",
            &[("csrf", csrf.as_str()), ("back", "/queues")],
        )
        .await;
    assert_eq!(refused.status, 403, "{refused:?}");
    refused.assert_has("operate (or admin) scope");
    assert!(!paused(&server, "mailers").await);

    // Signing out ends the session.
    let out = browser.post("/logout", &[("csrf", csrf.as_str())]).await;
    assert_eq!(out.status, 303);
    assert_eq!(browser.get("/queues").await.status, 303);

    // An admin token acts.
    browser.sign_in("admin-secret-0123456789").await;
    let queues = browser.get("/queues").await;
    let done = browser
        .post(
            "/ui/queues/mailers/pause",
            &[("csrf", queues.csrf().as_str()), ("back", "/queues")],
        )
        .await;
    assert_eq!(done.status, 303, "{done:?}");
    assert_eq!(done.location(), "/queues?done=paused");
    browser
        .get("/queues?done=paused")
        .await
        .assert_has("Queue paused");
    assert!(paused(&server, "mailers").await);

    // A tenant-bound token sees its tenant's jobs only, and its own part of the queues
    // (issue 17): their counts are its jobs', and pausing (which stops a queue for every
    // tenant) is not offered.
    let mut tenant = Browser::new(&server);
    assert_eq!(tenant.sign_in("acme-secret-0123456789").await.status, 303);
    let jobs = tenant.get("/jobs").await;
    assert_eq!(jobs.status, 200, "{jobs:?}");
    jobs.assert_has(">acme</span>");
    assert!(!jobs.html.contains(">globex</span>"), "{}", jobs.html);
    assert!(
        jobs.html.contains(r#"href="/queues""#),
        "the queues page is in its navigation"
    );
    let queues = tenant.get("/queues").await;
    assert_eq!(queues.status, 200, "{queues:?}");
    queues.assert_has(">mailers</a>");
    queues.assert_has("A queue serves every tenant");
    assert!(
        !queues.html.contains("data-action=\"pause\""),
        "{}",
        queues.html
    );
    assert!(!queues.html.contains("globex"), "{}", queues.html);
    let overview = tenant.get("/").await;
    assert_eq!(overview.status, 200, "{overview:?}");
    overview.assert_has("Charts show tenant");

    // A stored `operate` token signs in like a configured one, pauses and resumes, may not
    // delete, and its session ends once the token is revoked.
    let created = admin
        .post(
            "/v1/tokens",
            json!({"name": "oncall", "scopes": ["operate"]}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    let id = created.body["token"]["id"].as_str().unwrap().to_owned();
    let mut oncall = Browser::new(&server);
    assert_eq!(oncall.sign_in(&secret).await.status, 303);
    let queues = oncall.get("/queues").await;
    assert_eq!(queues.status, 200, "{queues:?}");
    let resumed = oncall
        .post(
            "/ui/queues/mailers/resume",
            &[("csrf", queues.csrf().as_str()), ("back", "/queues")],
        )
        .await;
    assert_eq!(resumed.status, 303, "{resumed:?}");
    assert!(!paused(&server, "mailers").await);
    let job = admin.get("/v1/jobs?queue=mailers&limit=1").await.body["jobs"][0]["id"]
        .as_i64()
        .unwrap();
    let delete = oncall
        .post(
            &format!("/ui/jobs/{job}/delete"),
            &[("csrf", queues.csrf().as_str())],
        )
        .await;
    assert_eq!(delete.status, 403, "{delete:?}");
    delete.assert_has("admin");
    assert_eq!(admin.get(&format!("/v1/jobs/{job}")).await.status, 200);
    let revoked = admin
        .post(&format!("/v1/tokens/{id}/revoke"), json!({}))
        .await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    let mut ended = false;
    for _ in 0..100 {
        if oncall.get("/queues").await.status == 303 {
            ended = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        ended,
        "a revoked token's session ends within the token cache's lifetime"
    );
    server.stop().await;
}

async fn unsafe_requests_need_the_same_origin_and_the_form_token(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    server
        .enqueue(json!({"kind": "email", "queue": "mailers"}))
        .await;
    let mut browser = Browser::new(&server);
    let page = browser.get("/queues").await;
    let csrf = page.csrf();
    let url = format!("{}/ui/queues/mailers/pause", server.url);
    let form = [("csrf", csrf.as_str())];

    let cross_site = browser
        .send(
            browser
                .http
                .post(&url)
                .header("sec-fetch-site", "cross-site")
                .form(&form),
        )
        .await;
    assert_eq!(cross_site.status, 403);
    cross_site.assert_has("Cross-site request refused");
    let other_origin = browser
        .send(
            browser
                .http
                .post(&url)
                .header("origin", HeaderValue::from_static("http://evil.example"))
                .form(&form),
        )
        .await;
    assert_eq!(other_origin.status, 403);
    let no_token = browser
        .post("/ui/queues/mailers/pause", &[("back", "/queues")])
        .await;
    assert_eq!(no_token.status, 403);
    no_token.assert_has("security token");
    let wrong_token = browser
        .post("/ui/queues/mailers/pause", &[("csrf", &"0".repeat(64))])
        .await;
    assert_eq!(wrong_token.status, 403);
    assert!(!paused(&server, "mailers").await, "nothing changed");

    // Another browser's session has its own token.
    let mut other = Browser::new(&server);
    other.get("/queues").await;
    let stolen = other
        .post("/ui/queues/mailers/pause", &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(stolen.status, 403);

    let same = browser
        .post(
            "/ui/queues/mailers/pause",
            &[("csrf", csrf.as_str()), ("back", "//evil.example/x")],
        )
        .await;
    assert_eq!(same.status, 303);
    assert_eq!(
        same.location(),
        "/?done=paused",
        "never back to another site"
    );
    assert!(paused(&server, "mailers").await);
    server.stop().await;
}

async fn actions_go_through_the_client(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let (failing, fingerprint) = seed(&server).await;
    let mut browser = Browser::new(&server);
    let csrf = browser.get("/jobs").await.csrf();
    let csrf = csrf.as_str();

    // The failure group: a bulk operation, shown with its progress.
    let group = browser
        .post(
            &format!("/ui/failures/{fingerprint}/retry"),
            &[("csrf", csrf)],
        )
        .await;
    assert_eq!(group.status, 303, "{group:?}");
    assert!(group.location().starts_with("/ops/"), "{group:?}");
    let op_page = browser.get(group.location()).await;
    assert_eq!(op_page.status, 200);
    op_page.assert_has("retry");
    eventually("the group's job to be retried", || async {
        (server.job(failing).await["state"] == "available").then_some(())
    })
    .await;
    let bad_group = browser
        .post("/ui/failures/0000000000000000/retry", &[("csrf", csrf)])
        .await;
    assert_eq!(bad_group.status, 404);

    // One job: cancel, then retry.
    let cancelled = browser
        .post(&format!("/ui/jobs/{failing}/cancel"), &[("csrf", csrf)])
        .await;
    assert_eq!(cancelled.status, 303, "{cancelled:?}");
    assert_eq!(
        cancelled.location(),
        format!("/jobs/{failing}?done=cancelled")
    );
    assert_eq!(server.job(failing).await["state"], "cancelled");
    let retried = browser
        .post(
            &format!("/ui/jobs/{failing}/retry"),
            &[("csrf", csrf), ("back", &format!("/jobs/{failing}"))],
        )
        .await;
    assert_eq!(retried.status, 303, "{retried:?}");
    assert_eq!(server.job(failing).await["state"], "available");
    let unknown = browser
        .post(&format!("/ui/jobs/{failing}/explode"), &[("csrf", csrf)])
        .await;
    assert_eq!(unknown.status, 404);

    // Ticked rows: cancel two of the four mailers.
    let list = browser.get("/jobs?q=queue%3Amailers").await;
    let ids: Vec<String> = list
        .html
        .match_indices(r#"name="id" value=""#)
        .map(|(at, _)| {
            let rest = &list.html[at + 17..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
    let selected = browser
        .post(
            "/ui/jobs/selected",
            &[
                ("csrf", csrf),
                ("action", "cancel"),
                ("id", &ids[0]),
                ("id", &ids[1]),
            ],
        )
        .await;
    assert_eq!(selected.status, 303, "{selected:?}");
    assert!(selected.location().starts_with("/ops/"), "{selected:?}");
    for id in &ids[..2] {
        let id: i64 = id.parse().unwrap();
        eventually("a ticked job to be cancelled", || async {
            (server.job(id).await["state"] == "cancelled").then_some(())
        })
        .await;
    }
    assert_eq!(
        server.job(ids[2].parse().unwrap()).await["state"],
        "available"
    );
    let none = browser
        .post("/ui/jobs/selected", &[("csrf", csrf), ("action", "cancel")])
        .await;
    assert_eq!(none.status, 400);
    none.assert_has("Tick at least one job");

    // All matching: a bulk cancel by filter, run to the end by the leader.
    let bulk = browser
        .post(
            "/ui/ops",
            &[
                ("csrf", csrf),
                ("action", "cancel"),
                ("q", "queue:mailers state:available"),
            ],
        )
        .await;
    assert_eq!(bulk.status, 303, "{bulk:?}");
    let op = bulk.location().trim_start_matches("/ops/").to_owned();
    eventually("the bulk cancel to finish", || async {
        let op = server.get(&format!("/v1/ops/{op}")).await;
        (op.body["state"] == "done").then_some(())
    })
    .await;
    let progress = browser.get(&format!("/ui/ops/{op}/progress")).await;
    let progress: serde_json::Value = serde_json::from_str(&progress.html).unwrap();
    assert_eq!(progress["percent"], "100%");
    assert_eq!(progress["done"], "2");
    for id in &ids {
        assert_eq!(server.job(id.parse().unwrap()).await["state"], "cancelled");
    }
    let refused = browser
        .post(
            "/ui/ops",
            &[
                ("csrf", csrf),
                ("action", "explode"),
                ("q", "queue:mailers"),
            ],
        )
        .await;
    assert_eq!(refused.status, 404);
    let bad_query = browser
        .post(
            "/ui/ops",
            &[("csrf", csrf), ("action", "cancel"), ("q", "stat:x")],
        )
        .await;
    assert_eq!(bad_query.status, 400);
    bad_query.assert_has("unknown qualifier");

    // A schedule fires now from its page.
    let fired = browser
        .post(
            "/ui/cron/nightly-report/run-now",
            &[("csrf", csrf), ("back", "/cron")],
        )
        .await;
    assert_eq!(fired.status, 303, "{fired:?}");
    let jobs = server.get("/v1/jobs?kind=report").await;
    assert_eq!(jobs.body["jobs"].as_array().unwrap().len(), 1, "{jobs:?}");

    // --- stream tenancy ---
    // The dashboard's actions are in the audit log, recorded as the dashboard's (issue 17).
    let audit = browser.get("/audit").await;
    assert_eq!(audit.status, 200, "{audit:?}");
    assert_safe(&audit);
    audit.assert_has("cron.run_now");
    audit.assert_has("<td data-label=\"Via\">dashboard</td>");
    let filtered = browser.get("/audit?action=queue.").await;
    assert_eq!(filtered.status, 200, "{filtered:?}");
    assert!(!filtered.html.contains("cron.run_now"), "{}", filtered.html);
    let logged = server.get("/v1/audit?action=cron.run_now").await;
    assert_eq!(logged.body["entries"][0]["via"], "dashboard", "{logged:?}");
    server.stop().await;
}

// --- stream ops ---
/// The overview's tiles tell due work from scheduled work, each under the key the live
/// snapshot updates; `/ui/snapshot` (what the page polls when its stream fails) answers the
/// same snapshot as the signed-in token, and only to a session allowed to see every tenant.
async fn due_and_scheduled_tiles_and_the_polled_snapshot(store: Arc<dyn Store>) {
    let server = start(store, with_tokens()).await;
    let admin = server.with_token("admin-secret-0123456789");
    for job in [
        json!({"kind": "email", "queue": "mailers"}),
        json!({"kind": "email", "queue": "mailers"}),
        json!({"kind": "report", "queue": "later", "delay_seconds": 3600}),
    ] {
        let answer = admin.post("/v1/jobs", job).await;
        assert_eq!(answer.status, 201, "{answer:?}");
    }
    let mut browser = Browser::new(&server);
    assert_eq!(browser.get("/ui/snapshot").await.status, 303);
    browser.sign_in("read-secret-0123456789").await;

    let overview = browser.get("/").await;
    assert_eq!(overview.status, 200, "{overview:?}");
    overview.assert_has(r#"<span class="dot"></span>Due</span><span class="tile-value" data-live="states.available">2</span>"#);
    overview.assert_has(r#"<span class="dot"></span>Scheduled</span><span class="tile-value" data-live="states.scheduled">1</span>"#);
    overview.assert_has(r#"href="/jobs?q=state%3Ascheduled""#);
    overview.assert_has(r#"href="/jobs?q=state%3Aavailable""#);
    let queue = browser.get("/queues/later").await;
    queue.assert_has(r#"data-live="queue.later.scheduled">1</span>"#);
    queue.assert_has(r#"data-live="queue.later.available">0</span>"#);
    let scheduled = browser.get("/jobs?q=state%3Ascheduled").await;
    scheduled.assert_has("<b>1</b> matching");

    let polled = browser.get("/ui/snapshot").await;
    assert_eq!(polled.status, 200, "{polled:?}");
    let snapshot: serde_json::Value = serde_json::from_str(&polled.html).expect("JSON");
    assert_eq!(snapshot["states"]["available"], 2, "{snapshot}");
    assert_eq!(snapshot["states"]["scheduled"], 1, "{snapshot}");
    assert!(snapshot["workers_alive"].is_u64(), "{snapshot}");

    // --- stream tenant ---
    // A tenant's session gets its tenant's snapshot (issue 17): none of these jobs is acme's.
    let mut tenant = Browser::new(&server);
    tenant.sign_in("acme-secret-0123456789").await;
    let polled = tenant.get("/ui/snapshot").await;
    assert_eq!(polled.status, 200, "{polled:?}");
    let own: serde_json::Value = serde_json::from_str(&polled.html).expect("JSON");
    assert_eq!(own["states"]["available"], 0, "{own}");
    assert_eq!(own["queues"], serde_json::json!([]), "{own}");
    server.stop().await;
}

/// The failures page has a range picker: each group shows its failed attempts in the range
/// (from the groups' hourly counts) beside its count ever, and a sparkline of its own.
async fn the_failures_page_counts_its_range(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let (_, fingerprint) = seed(&server).await;
    let mut browser = Browser::new(&server);
    let day = browser.get("/failures").await;
    assert_eq!(day.status, 200, "{day:?}");
    assert_safe(&day);
    day.assert_has(r#"aria-current="true">24 h</a>"#);
    day.assert_has(&format!(r#"data-group="{fingerprint}""#));
    day.assert_has("<b data-in-range>1</b><span class=\"muted small\">in 24 h · 1 ever</span>");
    day.assert_has("This group's failed attempts per 1 h, last 1 d");
    day.assert_has("<svg class=\"spark s-failed\"");
    let week = browser.get("/failures?range=7d").await;
    week.assert_has(r#"aria-current="true">7 d</a>"#);
    week.assert_has("in 7 d · 1 ever");
    week.assert_has("per 7 h, last 7 d");
    server.stop().await;
}

// --- stream wf ---
/// A workflow's page (issue 18): its state, its graph in layers and its jobs, each linking to
/// its job page; an unknown workflow is a 404 page.
async fn a_workflow_page_draws_its_graph(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let created = server
        .post(
            "/v1/workflows",
            json!({"name": "report", "jobs": [
                {"name": "fetch", "job": {"kind": "fetch"}},
                {"name": "merge", "job": {"kind": "merge"},
                 "depends_on": [{"node": "fetch", "policy": "run"}]},
            ]}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.body["id"].as_i64().unwrap();
    let merge = created.body["jobs"][1]["id"].as_i64().unwrap();
    let mut browser = Browser::new(&server);
    let page = browser.get(&format!("/workflows/{id}")).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert_safe(&page);
    page.assert_has("Workflow 1");
    page.assert_has("running");
    page.assert_has(&format!(
        "merge #{merge} merge [blocked]  &#60;- fetch (run)"
    ));
    page.assert_has(&format!("href=\"/jobs/{merge}\""));
    let missing = browser.get("/workflows/424242").await;
    assert_eq!(missing.status, 404);
    server.stop().await;
}

// --- stream workflows ---
/// The Workflows and Batches pages (issue 18): each lists what exists, newest first, with its
/// state and counts, linking to its page; a batch's page shows its counters and callback; the
/// navigation names both; an unknown batch is a 404 page.
async fn the_workflow_and_batch_lists_and_a_batch_page(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let flow = server
        .post(
            "/v1/workflows",
            json!({"name": "nightly", "jobs": [{"name": "a", "job": {"kind": "fetch"}}]}),
        )
        .await;
    assert_eq!(flow.status, 201, "{flow:?}");
    let flow_id = flow.body["id"].as_i64().unwrap();
    let batch = server
        .post(
            "/v1/batches",
            json!({"name": "campaign-7", "open": true,
                   "callback": {"kind": "campaign_done", "args": {"campaign": 7}},
                   "jobs": [{"kind": "deliver"}, {"kind": "deliver"}]}),
        )
        .await;
    assert_eq!(batch.status, 201, "{batch:?}");
    let batch_id = batch.body["id"].as_i64().unwrap();
    let callback = batch.body["callback_id"].as_i64().unwrap();
    let mut browser = Browser::new(&server);

    let page = browser.get("/workflows").await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert_safe(&page);
    page.assert_has(&format!("href=\"/workflows/{flow_id}\">nightly</a>"));
    page.assert_has("href=\"/batches\"");
    page.assert_has(r#"aria-current="page">Workflows</a>"#);

    let page = browser.get("/batches").await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert_safe(&page);
    page.assert_has(&format!("href=\"/batches/{batch_id}\">campaign-7</a>"));
    page.assert_has(r#"<span class="badge open">open</span>"#);
    page.assert_has(r#"aria-current="page">Batches</a>"#);

    let page = browser.get(&format!("/batches/{batch_id}")).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert_safe(&page);
    page.assert_has(&format!("Batch {batch_id}"));
    page.assert_has("<dt>Total</dt><dd>2</dd>");
    page.assert_has("<dt>Pending</dt><dd>2</dd>");
    page.assert_has(&format!("href=\"/jobs/{callback}\">job {callback}</a>"));
    page.assert_has("open: jobs can be added");

    let missing = browser.get("/batches/424242").await;
    assert_eq!(missing.status, 404);
    let bad = browser.get("/batches?before=x").await;
    assert_eq!(bad.status, 400);
    server.stop().await;
}

/// The batch page's Close and Cancel buttons and the workflow page's Cancel (issue 18): a
/// read session sees them off and is refused by the server, changing nothing; a form without
/// its token is refused; an admin session closes, then cancels, through the same client calls
/// as the API, and the buttons go once they no longer apply.
async fn batch_and_workflow_buttons_go_through_the_client(store: Arc<dyn Store>) {
    let server = start(store, with_tokens()).await;
    let admin = server.with_token("admin-secret-0123456789");
    let batch = admin
        .post(
            "/v1/batches",
            json!({"name": "campaign", "open": true, "callback": {"kind": "done"},
                   "jobs": [{"kind": "deliver"}, {"kind": "deliver"}]}),
        )
        .await;
    assert_eq!(batch.status, 201, "{batch:?}");
    let id = batch.body["id"].as_i64().unwrap();
    let flow = admin
        .post(
            "/v1/workflows",
            json!({"name": "nightly", "jobs": [{"name": "a", "job": {"kind": "fetch"}}]}),
        )
        .await;
    let flow_id = flow.body["id"].as_i64().unwrap();
    let page_of = format!("/batches/{id}");
    let batch_state = || async { admin.get(&format!("/v1/batches/{id}")).await.body };

    // Read-only: the buttons show, off; the server refuses anyway.
    let mut viewer = Browser::new(&server);
    assert_eq!(viewer.sign_in("read-secret-0123456789").await.status, 303);
    let page = viewer.get(&page_of).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert_safe(&page);
    page.assert_has(r#"data-action="close" disabled"#);
    page.assert_has(r#"data-action="cancel" disabled"#);
    let csrf = page.csrf();
    for action in ["close", "cancel"] {
        let refused = viewer
            .post(
                &format!("/ui/batches/{id}/{action}"),
                &[("csrf", csrf.as_str())],
            )
            .await;
        assert_eq!(refused.status, 403, "{action}: {refused:?}");
    }
    let refused = viewer
        .post(
            &format!("/ui/workflows/{flow_id}/cancel"),
            &[("csrf", csrf.as_str())],
        )
        .await;
    assert_eq!(refused.status, 403, "{refused:?}");
    let unchanged = batch_state().await;
    assert_eq!(unchanged["state"], "open", "{unchanged}");

    // An admin session: without the form token nothing happens; with it, close then cancel.
    let mut browser = Browser::new(&server);
    assert_eq!(browser.sign_in("admin-secret-0123456789").await.status, 303);
    let page = browser.get(&page_of).await;
    page.assert_has(r#"action="/ui/batches/"#);
    assert!(
        !page.html.contains(r#"data-action="close" disabled"#),
        "{}",
        page.html
    );
    let csrf = page.csrf();
    let forged = browser
        .post(
            &format!("/ui/batches/{id}/close"),
            &[("csrf", "0".repeat(64).as_str())],
        )
        .await;
    assert_eq!(forged.status, 403, "{forged:?}");
    assert_eq!(batch_state().await["state"], "open");
    let unknown = browser
        .post(
            &format!("/ui/batches/{id}/explode"),
            &[("csrf", csrf.as_str())],
        )
        .await;
    assert_eq!(unknown.status, 404);
    let bad = browser
        .post("/ui/batches/x/close", &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(bad.status, 400);

    let closed = browser
        .post(
            &format!("/ui/batches/{id}/close"),
            &[("csrf", csrf.as_str()), ("back", &page_of)],
        )
        .await;
    assert_eq!(closed.status, 303, "{closed:?}");
    assert_eq!(closed.location(), format!("{page_of}?done=batch-closed"));
    assert_eq!(batch_state().await["state"], "running");
    let page = browser.get(closed.location()).await;
    page.assert_has("Batch closed");
    assert!(
        !page.html.contains(r#"data-action="close""#),
        "{}",
        page.html
    );

    let cancelled = browser
        .post(
            &format!("/ui/batches/{id}/cancel"),
            &[("csrf", csrf.as_str())],
        )
        .await;
    assert_eq!(cancelled.status, 303, "{cancelled:?}");
    let shown = batch_state().await;
    assert_eq!(shown["state"], "cancelled", "{shown}");
    assert_eq!(shown["cancelled"], 2, "{shown}");
    let page = browser.get(&page_of).await;
    assert!(
        !page.html.contains(r#"data-action="cancel""#),
        "{}",
        page.html
    );

    let page = browser.get(&format!("/workflows/{flow_id}")).await;
    page.assert_has(r#"data-action="cancel""#);
    let done = browser
        .post(
            &format!("/ui/workflows/{flow_id}/cancel"),
            &[("csrf", csrf.as_str())],
        )
        .await;
    assert_eq!(done.status, 303, "{done:?}");
    assert_eq!(
        done.location(),
        format!("/workflows/{flow_id}?done=workflow-cancelled")
    );
    let flow = admin.get(&format!("/v1/workflows/{flow_id}")).await;
    assert_eq!(flow.body["state"], "cancelled", "{flow:?}");
    server.stop().await;
}
