//! The server raises its soft open-file limit to the hard limit at start: with the common
//! default of 1,024, about a thousand half-sent requests used to make it unreachable. Alone in
//! its binary, because it lowers the limit of the whole process first.

#![cfg(target_os = "linux")]

use rlimit::Resource;
use stoker_server::config::Config;
use stoker_server::serve::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soft_open_file_limit_is_raised_to_the_hard_limit() {
    let (_, hard) = rlimit::getrlimit(Resource::NOFILE).unwrap();
    let low = hard.min(256);
    rlimit::setrlimit(Resource::NOFILE, low, hard).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}", dir.path().join("jobs.sqlite3").display()),
        ..Config::default()
    };
    let server = Server::start(config).await.expect("start");
    let (soft, _) = rlimit::getrlimit(Resource::NOFILE).unwrap();
    assert_eq!(soft, hard, "the soft limit was raised to the hard one");
    server.shutdown().await.unwrap();
}
