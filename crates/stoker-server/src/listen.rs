//! Serving the API's connections, bounded so idle, slow or too many clients cannot make the
//! server unreachable for the others.
//!
//! - A client has [`HttpSettings::header_read_timeout`] to send a request's headers, from the
//!   connection's start and, on a kept-alive HTTP/1 connection, from the end of the previous
//!   response (hyper's timer), else the connection is closed.
//! - A request body that pauses longer than [`HttpSettings::body_read_timeout`] fails, and
//!   the request with it.
//! - A connection with no request in flight for [`HttpSettings::idle_timeout`] is closed
//!   (HTTP/2 too, which has no header timer).
//! - At most [`HttpSettings::max_connections`] connections are served at once. One more is
//!   answered `503` with the API's JSON error and `Connection: close`, then closed; the
//!   refusals themselves are bounded, beyond that a connection is closed at once.
//!
//! Handlers see the client's address as [`axum::extract::ConnectInfo<SocketAddr>`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tower_http::timeout::TimeoutBody;

use crate::config::HttpSettings;

/// Refusals (over the connection limit) being written at once; beyond, a connection is closed
/// without an answer, so a flood costs no more than this many extra sockets.
const MAX_REFUSALS: usize = 64;
/// How long a refused connection may take: waiting for the request, the answer, draining.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a refusal waits for the request before answering anyway: an HTTP client that
/// gets the answer before it sent its request takes it for a broken connection, not a 503.
const REFUSAL_READ_WAIT: Duration = Duration::from_millis(500);
/// After an accept error such as "too many open files", wait this long before the next
/// accept instead of spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The answer to a connection over the limit, in the API's error shape.
const REFUSAL: &str = concat!(
    "HTTP/1.1 503 Service Unavailable\r\n",
    "content-type: application/json\r\n",
    "connection: close\r\n",
    "retry-after: 1\r\n",
    "content-length: 97\r\n",
    "\r\n",
    r#"{"error":{"code":"unavailable","message":"the server is at its connection limit; retry shortly"}}"#,
);

/// Raises this process's soft open-file limit to its hard limit, so the connection limit (not
/// the operating system) decides when connections are refused, and returns the limit now in
/// force (`None` where there is no such limit or it cannot be read).
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(limit) => Some(limit),
            Err(err) => {
                tracing::warn!(%err, "cannot raise the open-file limit");
                rlimit::getrlimit(rlimit::Resource::NOFILE)
                    .ok()
                    .map(|(soft, _)| soft)
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The connection limit to use under an open-file limit: the configured one, lowered so the
/// connections, the refusals and the database pool (with a margin) fit under the limit.
pub fn effective_max_connections(configured: usize, open_files: Option<u64>) -> usize {
    /// Descriptors kept for everything but client connections: the database pool, the
    /// listener, log files, SQLite's files, refusals.
    const RESERVED: u64 = 256 + MAX_REFUSALS as u64;
    match open_files {
        Some(limit) => {
            let room = usize::try_from(limit.saturating_sub(RESERVED)).unwrap_or(usize::MAX);
            configured.min(room).max(1)
        }
        None => configured,
    }
}

/// Serves `app` on `listener` until `stop`, then stops accepting, asks every connection to
/// close once its request is answered, and waits for them.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: HttpSettings,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let connections = Arc::new(Semaphore::new(settings.max_connections));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    let tracker = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        match Arc::clone(&connections).try_acquire_owned() {
            Ok(permit) => {
                let connection = serve_connection(
                    stream,
                    peer,
                    app.clone(),
                    Arc::clone(&builder),
                    settings,
                    stop.clone(),
                );
                tracker.spawn(async move {
                    connection.await;
                    drop(permit);
                });
            }
            Err(_) => {
                crate::logging::refused_connection(peer, settings.max_connections);
                if let Ok(permit) = Arc::clone(&refusals).try_acquire_owned() {
                    tracker.spawn(async move {
                        let _ = tokio::time::timeout(REFUSAL_TIMEOUT, refuse(stream)).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// Answers a connection over the limit once its request starts to arrive, then drains what the
/// client sent (closing a socket with unread data would reset it, and the client could lose
/// the answer).
async fn refuse(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buffer = [0u8; 1024];
    let _ = tokio::time::timeout(REFUSAL_READ_WAIT, stream.read(&mut buffer)).await;
    stream.write_all(REFUSAL.as_bytes()).await?;
    stream.shutdown().await?;
    while stream.read(&mut buffer).await? > 0 {}
    Ok(())
}

/// Serves one connection until it closes, its idle timeout passes, or the server stops.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    settings: HttpSettings,
    stop: CancellationToken,
) {
    let (in_flight, mut watch_in_flight) = watch::channel(0usize);
    let in_flight = Arc::new(in_flight);
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request
            .map(|body| axum::body::Body::new(TimeoutBody::new(settings.body_read_timeout, body)));
        request.extensions_mut().insert(ConnectInfo(peer));
        let busy = InFlight::begin(Arc::clone(&in_flight));
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await;
            drop(busy);
            response
        }
    });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, %err, "connection ended with an error");
                }
                return;
            }
            () = idle(
                &mut watch_in_flight,
                settings.header_read_timeout.min(settings.idle_timeout),
                settings.idle_timeout,
            ), if !closing => {
                tracing::debug!(%peer, "closing an idle connection");
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            () = stop.cancelled(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Completes once no request has been in flight for `then`, or, before the first request,
/// for `first`. The first wait is the header read timeout: hyper's HTTP/1 timer starts only
/// once the protocol is told from the first bytes, so it alone would let a connection that
/// sends nothing (or less than a line) stay open.
async fn idle(in_flight: &mut watch::Receiver<usize>, first: Duration, then: Duration) {
    let mut timeout = first;
    loop {
        if *in_flight.borrow_and_update() == 0 {
            tokio::select! {
                () = tokio::time::sleep(timeout) => return,
                changed = in_flight.changed() => if changed.is_err() { return },
            }
        } else if in_flight.changed().await.is_err() {
            return;
        }
        timeout = then;
    }
}

/// Counts a request in flight on its connection until dropped (answered or abandoned).
struct InFlight(Arc<watch::Sender<usize>>);

impl InFlight {
    fn begin(count: Arc<watch::Sender<usize>>) -> Self {
        count.send_modify(|count| *count += 1);
        InFlight(count)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|count| *count -= 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_well_formed() {
        let (head, body) = REFUSAL.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "unavailable");
    }

    #[test]
    fn the_connection_limit_fits_under_the_open_file_limit() {
        assert_eq!(effective_max_connections(10_000, None), 10_000);
        assert_eq!(effective_max_connections(10_000, Some(1_048_576)), 10_000);
        assert_eq!(effective_max_connections(10_000, Some(1024)), 1024 - 320);
        assert_eq!(effective_max_connections(10_000, Some(10)), 1);
    }
}
