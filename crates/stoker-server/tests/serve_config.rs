//! `stoker serve` configuration: defaults, the TOML file, flags, validation, the refusal to
//! listen beyond loopback without a token, `--help`, and the server's start and stop.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use stoker_server::config::{
    Config, ConfigError, LogFormat, Scope, BIND_DEFAULT, DATABASE_URL_DEFAULT, EXAMPLE_FILE,
};
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
            "expected one of: database_url, database_schema",
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

/// Every flag of `stoker serve` has a `STOKER_` variable and a key in the complete example file
/// of the module docs, and the default its help names is the configuration's default: the
/// flag, the variable, the TOML key, the default and the docs cannot drift apart.
#[test]
fn every_flag_has_its_variable_key_and_default_in_the_example_file() {
    let mut variables = BTreeSet::new();
    for arg in Cli::command().get_arguments() {
        let id = arg.get_id().as_str();
        if id == "help" || id == "config" {
            continue;
        }
        let long = arg.get_long().expect("a long flag");
        let env = arg
            .get_env()
            .expect("a variable")
            .to_str()
            .unwrap()
            .to_owned();
        assert!(variables.insert(env.clone()), "{env} is used twice");
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .expect("documented")
            .to_string()
            .replace('\n', " ");
        let key = help
            .split("[toml: ")
            .nth(1)
            .and_then(|rest| rest.split(']').next())
            .unwrap_or_else(|| panic!("--{long} names no TOML key: {help}"));
        let (section, name) = key.split_once('.').unwrap_or(("", key));
        assert!(
            example_has_key(section, name),
            "--{long}'s key `{key}` is not in the example file"
        );
        // The default the help names is the one in force.
        if let Some(default) = help
            .split("[default: ")
            .nth(1)
            .and_then(|rest| rest.split(']').next())
        {
            if default != "none" {
                let flag = format!("--{long}");
                let config = Config::load(&parse(&[&flag, default]))
                    .unwrap_or_else(|err| panic!("{flag} {default}: {err}"));
                assert_eq!(
                    config,
                    Config::default(),
                    "{flag}'s default is not {default}"
                );
            }
        } else {
            assert!(
                matches!(id, "api_token" | "api_token_file" | "keep_last"),
                "--{long} names no default: {help}"
            );
        }
    }
}

/// Whether the example file sets `name` (or shows it commented out) in `[section]`.
fn example_has_key(section: &str, name: &str) -> bool {
    let mut current = "";
    for line in EXAMPLE_FILE.lines() {
        let line = line.trim_start_matches("# ").trim();
        if let Some(header) = line.strip_prefix('[') {
            current = header
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("");
        } else if current == section && line.starts_with(&format!("{name} = ")) {
            return true;
        }
    }
    false
}

/// The example file of the module docs, every section included (`[stager]` and `[http]`
/// were once refused as unknown keys), loads to the defaults.
#[test]
fn the_complete_example_file_loads_to_the_defaults() {
    let config = load_toml(EXAMPLE_FILE).expect("the example file loads");
    assert_eq!(config, Config::default());
    let config = load_toml("[stager]\ninterval = \"250ms\"\n").expect("[stager] is accepted");
    assert_eq!(config.stager.interval, Duration::from_millis(250));
    let config = Config::load(&parse(&["--stage-interval", "2s"])).unwrap();
    assert_eq!(config.stager.interval, Duration::from_secs(2));
}

#[test]
fn connection_limits_log_format_and_schema_are_settings() {
    let config = load_toml(
        r#"
        database_url = "postgres://db/stoker"
        database_schema = "jobs_a"
        database_acquire_timeout = "1500ms"
        log_format = "json"
        [http]
        header_read_timeout = "5s"
        body_read_timeout = "7s"
        idle_timeout = "2m"
        max_connections = 300
        "#,
    )
    .expect("valid");
    assert_eq!(config.database_schema, "jobs_a");
    assert_eq!(config.database_acquire_timeout, Duration::from_millis(1500));
    assert_eq!(config.log_format, LogFormat::Json);
    assert_eq!(config.http.header_read_timeout, Duration::from_secs(5));
    assert_eq!(config.http.body_read_timeout, Duration::from_secs(7));
    assert_eq!(config.http.idle_timeout, Duration::from_secs(120));
    assert_eq!(config.http.max_connections, 300);

    let config = Config::load(&parse(&[
        "--database-url",
        "postgresql://db/stoker",
        "--database-schema",
        "jobs_b",
        "--log-format",
        "json",
        "--max-connections",
        "20",
        "--idle-timeout",
        "3s",
    ]))
    .expect("valid flags");
    assert_eq!(config.database_schema, "jobs_b");
    assert_eq!(config.log_format, LogFormat::Json);
    assert_eq!(config.http.max_connections, 20);
    assert_eq!(config.http.idle_timeout, Duration::from_secs(3));

    for (text, needle) in [
        ("database_schema = \"jobs\"", "only PostgreSQL has schemas"),
        ("log_format = \"xml\"", "expected text or json"),
        ("[http]\nmax_connections = 0", "http.max_connections"),
        (
            "[http]\nheader_read_timeout = 0",
            "http.header_read_timeout",
        ),
        (
            "database_acquire_timeout = \"0s\"",
            "database_acquire_timeout",
        ),
    ] {
        let err = load_toml(text).expect_err(text);
        assert!(err.to_string().contains(needle), "{text}: {err}");
    }
    let err = Cli::try_parse_from(["serve", "--log-format", "xml"]).unwrap_err();
    assert!(err.to_string().contains("text or json"), "{err}");
}

#[test]
fn tokens_come_from_files() {
    let admin = toml_file("admin-token-from-a-file-0123\n");
    let billing = toml_file("billing-token-from-a-file-0123");
    let admin_path = admin.path().to_str().unwrap().to_owned();
    let billing_path = billing.path().to_str().unwrap().to_owned();

    let config = Config::load(&parse(&["--api-token-file", &admin_path])).expect("valid");
    assert_eq!(config.tokens[0].name, "admin");
    assert_eq!(config.tokens[0].secret, "admin-token-from-a-file-0123");

    let config = load_toml(&format!(
        "api_token_file = {admin_path:?}\n\
         [[tokens]]\nname = \"billing\"\ntoken_file = {billing_path:?}\nscopes = [\"read\"]\n"
    ))
    .expect("valid");
    assert_eq!(config.tokens[0].secret, "admin-token-from-a-file-0123");
    assert_eq!(config.tokens[1].secret, "billing-token-from-a-file-0123");

    let err = Config::load(&parse(&["--api-token-file", "/surely/not/a/file"])).unwrap_err();
    assert!(
        err.to_string().contains("--api-token-file") && err.to_string().contains("/surely/not"),
        "{err}"
    );
    let err = Config::load(&parse(&[
        "--api-token-file",
        &admin_path,
        "--api-token",
        "another-admin-token-0123",
    ]))
    .unwrap_err();
    assert!(err.to_string().contains("not both"), "{err}");
    let err = load_toml(&format!(
        "[[tokens]]\nname = \"b\"\ntoken = \"0123456789abcdef0\"\ntoken_file = {billing_path:?}\n\
         scopes = [\"read\"]\n"
    ))
    .unwrap_err();
    assert!(err.to_string().contains("exactly one of"), "{err}");
}

#[test]
fn a_token_on_the_command_line_is_noticed() {
    use stoker_server::serve::token_on_command_line;
    let args = |list: &[&str]| {
        list.iter()
            .map(std::ffi::OsString::from)
            .collect::<Vec<_>>()
    };
    assert!(token_on_command_line(args(&[
        "stoker",
        "serve",
        "--api-token",
        "x"
    ])));
    assert!(token_on_command_line(args(&[
        "stoker",
        "serve",
        "--api-token=x"
    ])));
    assert!(!token_on_command_line(args(&[
        "stoker",
        "serve",
        "--api-token-file",
        "/t"
    ])));
    assert!(!token_on_command_line(args(&["stoker", "serve"])));
}

// --- stream tenancy ---
/// `token_cache_ttl` (issue 17): how long a stored token's row is trusted, from the file, a
/// flag or its variable; zero reads it on every request; over five minutes is refused, naming
/// the setting.
#[test]
fn the_token_cache_ttl_is_a_setting() {
    assert_eq!(
        Config::default().token_cache_ttl,
        stoker_server::config::TOKEN_CACHE_TTL_DEFAULT
    );
    let config = load_toml("token_cache_ttl = \"30s\"").expect("valid");
    assert_eq!(config.token_cache_ttl, Duration::from_secs(30));
    let config = Config::load(&parse(&["--token-cache-ttl", "0s"])).expect("valid");
    assert_eq!(config.token_cache_ttl, Duration::ZERO);
    let err = load_toml("token_cache_ttl = \"10m\"").expect_err("too long");
    let message = err.to_string();
    assert!(
        message.contains("token_cache_ttl") && message.contains("at most 5m"),
        "{message}"
    );
    let err = load_toml("token_cache_ttl = \"soon\"").expect_err("not a duration");
    assert!(err.to_string().contains("line 1"), "{err}");
}

/// `database_async_ack_commit` (PostgreSQL's `async_ack_commit`) is off by default, set by the
/// file, the flag (alone or with a value) and refused, naming it, on SQLite, where it has no
/// meaning; turning it off there is allowed.
#[test]
fn async_ack_commit_is_a_postgres_setting() {
    assert!(!Config::default().database_async_ack_commit);
    let config =
        load_toml("database_url = \"postgres://db/stoker\"\ndatabase_async_ack_commit = true")
            .expect("valid");
    assert!(config.database_async_ack_commit);

    let config = Config::load(&parse(&[
        "--database-url",
        "postgres://db/stoker",
        "--database-async-ack-commit",
    ]))
    .expect("the flag alone means true");
    assert!(config.database_async_ack_commit);
    let config = Config::load(&parse(&[
        "--database-url",
        "postgresql://db/stoker",
        "--database-async-ack-commit=false",
    ]))
    .expect("valid");
    assert!(!config.database_async_ack_commit);

    // The flag wins over the file.
    let file =
        toml_file("database_url = \"postgres://db/stoker\"\ndatabase_async_ack_commit = true");
    let path = file.path().to_str().unwrap().to_owned();
    let config = Config::load(&parse(&[
        "--config",
        &path,
        "--database-async-ack-commit",
        "false",
    ]))
    .expect("valid");
    assert!(!config.database_async_ack_commit);

    for err in [
        load_toml("database_async_ack_commit = true").expect_err("SQLite by default"),
        Config::load(&parse(&[
            "--database-url",
            "sqlite::memory:",
            "--database-async-ack-commit",
        ]))
        .expect_err("SQLite"),
    ] {
        let message = err.to_string();
        assert!(
            message.contains("--database-async-ack-commit")
                && message.contains("database_async_ack_commit")
                && message.contains("only PostgreSQL"),
            "{message}"
        );
    }
    let config = load_toml("database_async_ack_commit = false").expect("off is allowed anywhere");
    assert!(!config.database_async_ack_commit);
    let err = load_toml("database_async_ack_commit = \"yes\"").expect_err("not a boolean");
    assert!(err.to_string().contains("line 1"), "{err}");
    Cli::try_parse_from(["serve", "--database-async-ack-commit=maybe"]).expect_err("not a boolean");
}
