//! `stoker serve` configuration: defaults, the TOML file, flags, validation, the refusal to
//! listen beyond loopback without a token, `--help`, and the server's start and stop.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use stoker_server::config::{Config, ConfigError, Scope, BIND_DEFAULT, DATABASE_URL_DEFAULT};
use stoker_server::serve::{ServeArgs, ServeError, Server};

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

fn parse(args: &[&str]) -> ServeArgs {
    Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
        .expect("valid arguments")
        .serve
}

fn toml_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(text.as_bytes()).expect("write config");
    file
}

fn load_toml(text: &str) -> Result<Config, ConfigError> {
    let file = toml_file(text);
    let path = file.path().to_str().unwrap().to_owned();
    Config::load(&parse(&["--config", &path]))
}

#[test]
fn no_flags_no_file_means_sqlite_on_loopback() {
    let config = Config::load(&parse(&[])).expect("defaults are valid");
    assert_eq!(config, Config::default());
    assert_eq!(config.database_url, DATABASE_URL_DEFAULT);
    assert_eq!(config.database_url, "sqlite://stoker.sqlite3");
    assert_eq!(config.bind, BIND_DEFAULT);
    assert_eq!(config.bind.to_string(), "127.0.0.1:7700");
    assert!(config.tokens.is_empty());
    assert_eq!(config.max_body_bytes, 2 * 1024 * 1024);
    assert_eq!(config.worker.queues, [("default".to_owned(), 10)].into());
}

#[test]
fn the_file_applies_and_flags_win() {
    let file = toml_file(
        r#"
        database_url = "postgres://stoker:secret@db/stoker"
        bind = "0.0.0.0:7800"
        api_token = "file-admin-token-0123456789"
        max_body_bytes = "512KiB"

        [worker]
        queues = { default = 4, webhooks = 20 }
        poll_interval = "250ms"
        shutdown_grace = 30

        [pull]
        lease = "1m"
        max_lease = "2h"
        max_wait = "20s"
        poll_interval = "2s"

        [rescuer]
        interval = "500ms"
        stale_after = "10s"

        [pruner]
        interval = "1m"
        completed_retention = "1h"
        cancelled_retention = "forever"
        discarded_retention = "30d"
        keep_last = 1000
        worker_retention = "2h"

        [stats]
        sample_interval = "10s"

        [[tokens]]
        name = "billing"
        token = "billing-token-0123456789"
        scopes = ["enqueue", "read"]
        tenant = "acme"
        "#,
    );
    let path = file.path().to_str().unwrap().to_owned();
    let config = Config::load(&parse(&["--config", &path])).expect("valid file");
    assert_eq!(config.database_url, "postgres://stoker:secret@db/stoker");
    assert_eq!(config.bind.to_string(), "0.0.0.0:7800");
    assert_eq!(config.max_body_bytes, 512 * 1024);
    assert_eq!(
        config.worker.queues,
        [("default".to_owned(), 4), ("webhooks".to_owned(), 20)].into()
    );
    assert_eq!(config.worker.poll_interval, Duration::from_millis(250));
    assert_eq!(config.worker.shutdown_grace, Duration::from_secs(30));
    assert_eq!(config.pull.lease, Duration::from_secs(60));
    assert_eq!(config.pull.max_lease, Duration::from_secs(7200));
    assert_eq!(config.pull.max_wait, Duration::from_secs(20));
    assert_eq!(config.pull.poll_interval, Duration::from_secs(2));
    assert_eq!(config.rescuer.interval, Duration::from_millis(500));
    assert_eq!(config.rescuer.stale_after, Duration::from_secs(10));
    assert_eq!(config.pruner.interval, Duration::from_secs(60));
    assert_eq!(
        config.pruner.completed_retention,
        Some(Duration::from_secs(3600))
    );
    assert_eq!(config.pruner.cancelled_retention, None);
    assert_eq!(
        config.pruner.discarded_retention,
        Some(Duration::from_secs(30 * 86400))
    );
    assert_eq!(config.pruner.keep_last, Some(1000));
    assert_eq!(config.pruner.worker_retention, Duration::from_secs(7200));
    assert_eq!(config.stats.sample_interval, Duration::from_secs(10));
    assert_eq!(config.tokens.len(), 2);
    assert_eq!(config.tokens[0].name, "admin");
    assert!(config.tokens[0].allows(Scope::Work));
    let billing = &config.tokens[1];
    assert_eq!(
        billing.scopes,
        BTreeSet::from([Scope::Enqueue, Scope::Read])
    );
    assert_eq!(billing.tenant.as_deref(), Some("acme"));
    assert!(!billing.allows(Scope::Admin));
    assert!(
        !format!("{config:?}").contains("billing-token"),
        "secrets stay out of Debug"
    );

    // Flags win over the file.
    let config = Config::load(&parse(&[
        "--config",
        &path,
        "--bind",
        "127.0.0.1:9100",
        "--database-url",
        "sqlite://other.db",
        "--api-token",
        "flag-admin-token-0123456789",
        "--queue",
        "a=3",
        "--queue",
        "b",
        "--pull-lease",
        "45s",
        "--discarded-retention",
        "forever",
        "--max-body-bytes",
        "1MiB",
    ]))
    .expect("valid flags");
    assert_eq!(config.bind.to_string(), "127.0.0.1:9100");
    assert_eq!(config.database_url, "sqlite://other.db");
    assert_eq!(config.tokens[0].secret, "flag-admin-token-0123456789");
    assert_eq!(config.tokens.len(), 2, "the named token stays");
    assert_eq!(
        config.worker.queues,
        [("a".to_owned(), 3), ("b".to_owned(), 10)].into()
    );
    assert_eq!(config.pull.lease, Duration::from_secs(45));
    assert_eq!(config.pull.max_wait, Duration::from_secs(20), "the file's");
    assert_eq!(config.pruner.discarded_retention, None);
    assert_eq!(config.max_body_bytes, 1024 * 1024);
}

#[test]
fn unknown_keys_are_refused_with_a_hint() {
    let cases = [
        (
            "bnd = \"127.0.0.1:7700\"",
            "unknown key `bnd` in the top level",
            "did you mean `bind`?",
        ),
        (
            "[pull]\nleas = \"1s\"",
            "unknown key `leas` in [pull]",
            "did you mean `lease`?",
        ),
        (
            "lease = \"1s\"",
            "unknown key `lease` in the top level",
            "did you mean `lease` in [pull]?",
        ),
        (
            "[rescuer]\nstale_afer = 3",
            "in [rescuer]",
            "did you mean `stale_after`?",
        ),
        (
            "[[tokens]]\nnme = \"x\"\ntoken = \"0123456789abcdef\"\nscopes = [\"read\"]",
            "in [[tokens]]",
            "did you mean `name`?",
        ),
        (
            "frobnicate = 1",
            "unknown key `frobnicate`",
            "expected one of: database_url, bind",
        ),
    ];
    for (text, what, hint) in cases {
        let err = load_toml(text).expect_err(text);
        assert!(
            matches!(err, ConfigError::UnknownKey { .. }),
            "{text}: {err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(what), "{text}: {message}");
        assert!(message.contains(hint), "{text}: {message}");
    }
}

#[test]
fn bad_values_name_the_setting() {
    for (text, needle) in [
        ("bind = \"everywhere\"", "--bind / STOKER_BIND / bind"),
        ("[pull]\nlease = \"5 parsecs\"", "line 2"),
        ("[pull]\nlease = \"2h\"", "pull.max_lease"),
        ("[worker]\nqueues = { default = 0 }", "concurrency of at least 1"),
        ("[worker]\nqueues = { \"bad queue\" = 1 }", "worker.queues"),
        ("api_token = \"short\"", "shorter than 16 characters"),
        ("[[tokens]]\nname = \"t\"\nscopes = [\"read\"]", "exactly one of token"),
        (
            "[[tokens]]\nname = \"t\"\ntoken = \"0123456789abcdef\"\nscopes = [\"root\"]",
            "unknown scope \"root\"",
        ),
        (
            "[[tokens]]\nname = \"t\"\ntoken = \"0123456789abcdef\"\nscopes = []",
            "no scopes",
        ),
        (
            "[[tokens]]\nname = \"t\"\ntoken_env = \"STOKER_SURELY_UNSET_VARIABLE\"\nscopes = [\"read\"]",
            "STOKER_SURELY_UNSET_VARIABLE",
        ),
        ("max_body_bytes = \"2MB\"", "KiB, MiB or GiB"),
        ("[rescuer]\ninterval = \"0s\"", "longer than zero"),
        ("database_url = 5", "database_url"),
    ] {
        let err = load_toml(text).expect_err(text);
        let message = err.to_string();
        assert!(message.contains(needle), "{text}: {message}");
    }
    let err = Cli::try_parse_from(["serve", "--pull-lease", "soon"]).unwrap_err();
    assert!(err.to_string().contains("is not a duration"), "{err}");
    let err = Config::load(&parse(&["--queue", "x=none"])).unwrap_err();
    assert!(err.to_string().contains("--queue"), "{err}");
}

#[test]
fn other_addresses_need_a_token() {
    for args in [
        vec!["--bind", "0.0.0.0:7700"],
        vec!["--bind", "192.0.2.10:80"],
        vec!["--bind", "[::]:7700"],
    ] {
        let err = Config::load(&parse(&args)).expect_err("refused");
        assert!(matches!(err, ConfigError::InsecureBind { .. }), "{err:?}");
        let message = err.to_string();
        for how in ["--api-token", "STOKER_API_TOKEN", "api_token", "[[tokens]]"] {
            assert!(message.contains(how), "{message} should say {how}");
        }
    }
    let err = load_toml("bind = \"0.0.0.0:7700\"").unwrap_err();
    assert!(matches!(err, ConfigError::InsecureBind { .. }));

    // With a token, or on loopback, it is fine.
    let config = Config::load(&parse(&[
        "--bind",
        "0.0.0.0:7700",
        "--api-token",
        "a-long-enough-token-1234",
    ]))
    .expect("a token opens other addresses");
    assert_eq!(config.bind.to_string(), "0.0.0.0:7700");
    Config::load(&parse(&["--bind", "[::1]:7701"])).expect("IPv6 loopback");
    Config::load(&parse(&["--bind", "localhost:7702"])).expect("localhost");
}

#[tokio::test]
async fn the_server_refuses_to_start_open_beyond_loopback() {
    let config = Config {
        bind: "0.0.0.0:0".parse().unwrap(),
        database_url: "sqlite::memory:".to_owned(),
        ..Config::default()
    };
    let err = Server::start(config).await.expect_err("refused");
    assert!(
        matches!(err, ServeError::Config(ConfigError::InsecureBind { .. })),
        "{err:?}"
    );
}

#[test]
fn help_documents_every_option() {
    let mut command = Cli::command();
    let help = command.render_long_help().to_string();
    for arg in Cli::command().get_arguments() {
        let id = arg.get_id().as_str();
        if id == "help" {
            continue;
        }
        let env = arg
            .get_env()
            .unwrap_or_else(|| panic!("--{id} has no environment variable"));
        let env = env.to_str().unwrap();
        assert!(env.starts_with("STOKER_"), "{env}");
        assert!(help.contains(env), "--help does not name {env}");
        let text = arg
            .get_long_help()
            .or(arg.get_help())
            .unwrap_or_else(|| panic!("--{id} is undocumented"))
            .to_string();
        assert!(!text.is_empty());
        if id != "config" {
            assert!(
                text.contains("[toml:"),
                "--{id} does not name its TOML key: {text}"
            );
        }
    }
    for needle in [
        "Authorization: Bearer",
        "[[tokens]]",
        "Unknown keys",
        "/v1/openapi.json",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_on_a_sqlite_url_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jobs.sqlite3");
    let config = Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}", file.display()),
        ..Config::default()
    };
    let server = Server::start(config.clone()).await.expect("start");
    assert!(file.exists(), "the database file was created");
    let addr = server.local_addr();
    let health: serde_json::Value = reqwest::get(format!("{}/health", server.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["store"], "sqlite");
    assert_eq!(health["migrations_current"], true);

    // The same address twice: a clear error.
    let busy = Config {
        bind: addr,
        ..config
    };
    let err = Server::start(busy).await.expect_err("address in use");
    assert!(matches!(err, ServeError::Bind { .. }), "{err:?}");
    assert!(err.to_string().contains("--bind"), "{err}");

    server.shutdown().await.expect("clean shutdown");
    assert!(
        reqwest::get(format!("http://{addr}/health")).await.is_err(),
        "nothing listens after shutdown"
    );
}
