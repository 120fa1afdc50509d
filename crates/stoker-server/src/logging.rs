//! The server's log: text or JSON lines on stderr, and warnings an attacker could otherwise
//! turn into a flood (refused tokens, refused connections), limited to one line a second.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::LogFormat;

/// The most often one kind of rate-limited warning is written.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// Logs to stderr at `info` unless `RUST_LOG` says otherwise, as text (coloured only when
/// stderr is a terminal and `NO_COLOR` is unset) or as one JSON object per line. Does nothing
/// if the program set up logging already.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(colour_stderr()).try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

/// Whether text logs get colour codes: only on a terminal, and not when `NO_COLOR` is set.
fn colour_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A warning written at most once a second; the lines held back in between are counted and
/// reported (`suppressed`) with the next one written.
#[derive(Debug)]
pub(crate) struct RateLimited {
    state: Mutex<RateState>,
}

#[derive(Debug)]
struct RateState {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    pub(crate) const fn new() -> Self {
        RateLimited {
            state: Mutex::new(RateState {
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// `Some(count of lines held back since the last one)` when this one is to be written.
    pub(crate) fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match state.last {
            Some(last) if now.duration_since(last) < WARN_EVERY => {
                state.suppressed += 1;
                None
            }
            _ => {
                state.last = Some(now);
                Some(std::mem::take(&mut state.suppressed))
            }
        }
    }
}

static REFUSED_TOKENS: RateLimited = RateLimited::new();
static REFUSED_CONNECTIONS: RateLimited = RateLimited::new();

/// Warns that a request's token was refused, with the client's address (when known) and why.
pub(crate) fn refused_token(peer: Option<SocketAddr>, reason: &str) {
    if let Some(suppressed) = REFUSED_TOKENS.admit(Instant::now()) {
        let peer = peer.map_or_else(|| "unknown".to_owned(), |peer| peer.to_string());
        tracing::warn!(%peer, reason, suppressed, "refused an API token");
    }
}

/// Warns that a connection was refused because the server serves its most connections.
pub(crate) fn refused_connection(peer: SocketAddr, max_connections: usize) {
    if let Some(suppressed) = REFUSED_CONNECTIONS.admit(Instant::now()) {
        tracing::warn!(
            %peer,
            max_connections,
            suppressed,
            "refused a connection: the server is at its connection limit \
             (--max-connections)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_line_a_second_and_counts_the_rest() {
        let limit = RateLimited::new();
        let start = Instant::now();
        assert_eq!(limit.admit(start), Some(0));
        assert_eq!(limit.admit(start + Duration::from_millis(10)), None);
        assert_eq!(limit.admit(start + Duration::from_millis(900)), None);
        assert_eq!(limit.admit(start + Duration::from_millis(1000)), Some(2));
        assert_eq!(limit.admit(start + Duration::from_millis(2500)), Some(0));
    }
}
