//! The store's own pool gives up on a connection after its acquire timeout: a database that
//! accepts connections and never answers (a hung host, a dead proxy) fails calls with `Busy`
//! after a few seconds instead of sqlx's 30. Needs no PostgreSQL: a local listener plays the
//! hung database. The bound asserted is loose on purpose (a noisy shared machine).

use std::time::{Duration, Instant};

use stoker_core::StoreErrorKind;
use stoker_postgres::PgStore;

#[tokio::test]
async fn a_database_that_never_answers_fails_after_the_acquire_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let started = Instant::now();
    let err = PgStore::builder(&format!("postgres://stoker@127.0.0.1:{port}/stoker"))
        .acquire_timeout(Duration::from_secs(1))
        .build()
        .await
        .expect_err("nothing answers");
    let took = started.elapsed();
    assert_eq!(err.kind(), StoreErrorKind::Busy, "{err}");
    assert!(
        took < Duration::from_secs(10),
        "gave up only after {took:?}"
    );
    hold.abort();
}

#[tokio::test]
async fn a_zero_acquire_timeout_is_refused() {
    let err = PgStore::builder("postgres://stoker@127.0.0.1:1/stoker")
        .acquire_timeout(Duration::ZERO)
        .build()
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err}");
    assert!(err.to_string().contains("acquire_timeout"), "{err}");
}
