//! Marks the PostgreSQL runtime tests as ignored, with the reason shown, when
//! `STOKER_TEST_DATABASE_URL` is unset, so `cargo test` says plainly what it skipped instead of
//! passing silently.

fn main() {
    println!("cargo::rerun-if-env-changed=STOKER_TEST_DATABASE_URL");
    println!("cargo::rustc-check-cfg=cfg(stoker_pg_skip)");
    if std::env::var_os("STOKER_TEST_DATABASE_URL").is_none_or(|url| url.is_empty()) {
        println!("cargo::rustc-cfg=stoker_pg_skip");
        println!(
            "cargo::warning=PostgreSQL server tests skipped: STOKER_TEST_DATABASE_URL is unset"
        );
    }
}
