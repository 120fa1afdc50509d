//! The `stoker` binary's library: the job server (`stoker serve`) with its HTTP API, pull
//! protocol, metrics and built-in handlers, and the command line operators use.
//!
//! Most users run the binary; the library is public so the server can be embedded in a Rust
//! service or tested in-process (see [`api::router`]).

pub mod api;
pub mod app;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod config;
// The web dashboard (issue 14).
pub mod dashboard;
pub mod handlers;
pub mod listen;
pub mod logging;
pub mod serve;
