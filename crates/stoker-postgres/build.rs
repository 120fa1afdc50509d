//! Skips the PostgreSQL conformance suite, plainly, when no test database is configured.
//!
//! With `STOKER_TEST_DATABASE_URL` unset (or empty), this sets the `stoker_pg_skip` cfg, which
//! `tests/conformance.rs` turns into `#[ignore = "STOKER_TEST_DATABASE_URL is unset"]` on every
//! test, and prints a warning, so `cargo test` lists each test as ignored with the reason
//! instead of passing without having run.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=STOKER_TEST_DATABASE_URL");
    println!("cargo::rustc-check-cfg=cfg(stoker_pg_skip)");
    let configured = std::env::var("STOKER_TEST_DATABASE_URL").is_ok_and(|url| !url.is_empty());
    if !configured {
        println!("cargo::rustc-cfg=stoker_pg_skip");
        println!(
            "cargo::warning=PostgreSQL conformance suite skipped: STOKER_TEST_DATABASE_URL is unset"
        );
    }
}
