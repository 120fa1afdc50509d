//! Environment variables sit between flags and the TOML file. Alone in its binary, because it
//! changes the process environment.

use std::io::Write;

use clap::Parser;
use stoker_server::config::{Config, Scope};
use stoker_server::serve::ServeArgs;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

#[test]
fn flags_beat_the_environment_which_beats_the_file() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    write!(
        file,
        r#"
        bind = "127.0.0.1:9300"
        database_url = "sqlite://from-file.db"
        [worker]
        queues = {{ filed = 1 }}
        [[tokens]]
        name = "billing"
        token_env = "STOKER_TEST_BILLING_TOKEN"
        scopes = ["work"]
        "#
    )
    .unwrap();
    let path = file.path().to_str().unwrap().to_owned();
    std::env::set_var("STOKER_CONFIG", &path);
    std::env::set_var("STOKER_BIND", "127.0.0.1:9200");
    std::env::set_var("STOKER_QUEUES", "x=2,y");
    std::env::set_var("STOKER_API_TOKEN", "env-admin-token-0123456789");
    std::env::set_var("STOKER_PULL_MAX_WAIT", "5s");
    std::env::set_var("STOKER_TEST_BILLING_TOKEN", "billing-from-env-0123456789");

    let args = Cli::try_parse_from(["serve"]).unwrap().serve;
    let config = Config::load(&args).expect("valid");
    assert_eq!(
        config.bind.to_string(),
        "127.0.0.1:9200",
        "the environment beats the file"
    );
    assert_eq!(
        config.database_url, "sqlite://from-file.db",
        "the file beats the default"
    );
    assert_eq!(
        config.worker.queues,
        [("x".to_owned(), 2), ("y".to_owned(), 10)].into()
    );
    assert_eq!(config.pull.max_wait, std::time::Duration::from_secs(5));
    assert_eq!(config.tokens[0].secret, "env-admin-token-0123456789");
    assert_eq!(config.tokens[1].secret, "billing-from-env-0123456789");
    assert!(config.tokens[1].allows(Scope::Work));

    let args = Cli::try_parse_from(["serve", "--bind", "127.0.0.1:9400", "--queue", "z=1"])
        .unwrap()
        .serve;
    let config = Config::load(&args).expect("valid");
    assert_eq!(
        config.bind.to_string(),
        "127.0.0.1:9400",
        "the flag beats the environment"
    );
    assert_eq!(config.worker.queues, [("z".to_owned(), 1)].into());
}
