//! `stoker serve`: the job server. The HTTP API, the pull protocol, metrics, the built-in
//! handlers and, on the elected leader, the maintenance services, in one process.
//!
//! With no flags and no environment it runs on `./stoker.sqlite3`, listening on
//! `127.0.0.1:7700`. Point any number of servers at one PostgreSQL database
//! (`--database-url postgres://...`) and they form a cluster: they share the jobs, elect one
//! leader for maintenance, and wake each other with `LISTEN/NOTIFY`.
//!
//! [`run`] is the command; [`Server`] is the same server for embedding and tests, started on
//! a [`Config`] (and optionally a store you built yourself).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use stoker::{Store, Worker, WorkerHandle};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState, Background};
use crate::config::{self, Config, ConfigError, LogFormat, Retention};
use crate::listen;

const CONFIG_HELP: &str = "\
Settings come from flags, then environment variables, then the --config TOML file, then
defaults. Each flag above names its variable and its TOML key. Durations are written 500ms,
30s, 5m, 1h, 7d; sizes 2097152, 512KiB, 2MiB.

Without an API token the server listens on loopback only; any other --bind address needs a
token (STOKER_API_TOKEN, --api-token-file, --api-token, or api_token / [[tokens]] in the
file). A single --api-token is an admin token. The TOML file can also list named tokens with
scopes (admin, operate, enqueue, work, read), each optionally bound to a tenant:

    [[tokens]]
    name = \"billing\"
    token_env = \"STOKER_BILLING_TOKEN\"   # or token = \"...\", or token_file = \"PATH\"
    scopes = [\"enqueue\", \"read\"]
    tenant = \"acme\"                      # optional: sees and touches only acme's jobs

Clients send `Authorization: Bearer <token>`; refused tokens are logged at warn with the
client's address. The API is under /v1 (OpenAPI document at /v1/openapi.json), with /health
and Prometheus /metrics beside it. Logs go to stderr; set RUST_LOG (e.g.
RUST_LOG=stoker=debug) to change what is logged.

Unknown keys in the TOML file are errors.";

/// The options of `stoker serve`. Every option has a flag, an environment variable and a key
/// in the `--config` TOML file; flags win over the environment, which wins over the file.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(after_long_help = CONFIG_HELP)]
pub struct ServeArgs {
    /// A TOML configuration file. Flags and environment variables win over its settings.
    #[arg(long, env = "STOKER_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// The database: sqlite://PATH (created if missing) or postgres://USER:PASSWORD@HOST/DB.
    /// Servers sharing one PostgreSQL database form a cluster. [default:
    /// sqlite://stoker.sqlite3] [toml: database_url]
    #[arg(
        long,
        env = "STOKER_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// The PostgreSQL schema holding stoker's tables (created and migrated at start), so
    /// several servers or an application can share one database. PostgreSQL only. [default:
    /// public] [toml: database_schema]
    #[arg(long, env = "STOKER_DATABASE_SCHEMA", value_name = "NAME")]
    pub database_schema: Option<String>,

    /// How long a call waits for a PostgreSQL connection before it fails: while the database
    /// is unreachable, requests answer 503 after this long instead of hanging. [default: 3s]
    /// [toml: database_acquire_timeout]
    #[arg(long, env = "STOKER_DATABASE_ACQUIRE_TIMEOUT", value_name = "DURATION", value_parser = config::parse_duration)]
    pub database_acquire_timeout: Option<Duration>,

    /// Commit acknowledgements without waiting for PostgreSQL's WAL flush: more jobs per
    /// second, but a crash of the database server can forget the last acknowledgements and
    /// run those jobs again (never lose one). `--database-async-ack-commit` alone means true.
    /// PostgreSQL only. [default: false] [toml: database_async_ack_commit]
    #[arg(
        long,
        env = "STOKER_DATABASE_ASYNC_ACK_COMMIT",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub database_async_ack_commit: Option<bool>,

    /// The address the HTTP API listens on. Anything but loopback requires an API token.
    /// [default: 127.0.0.1:7700] [toml: bind]
    #[arg(long, env = "STOKER_BIND", value_name = "HOST:PORT")]
    pub bind: Option<String>,

    /// An admin API token (at least 16 characters): every request must then carry
    /// `Authorization: Bearer <TOKEN>`. Prefer the variable or --api-token-file: a flag is
    /// visible to every user in `ps`. [toml: api_token]
    #[arg(
        long,
        env = "STOKER_API_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub api_token: Option<String>,

    /// A file holding the admin API token (a secrets mount, say); a trailing newline is
    /// ignored. [toml: api_token_file]
    #[arg(long, env = "STOKER_API_TOKEN_FILE", value_name = "PATH")]
    pub api_token_file: Option<PathBuf>,

    /// The largest request body accepted. [default: 2MiB] [toml: max_body_bytes]
    #[arg(long, env = "STOKER_MAX_BODY_BYTES", value_name = "SIZE", value_parser = config::parse_byte_size)]
    pub max_body_bytes: Option<usize>,

    /// How log lines are written to stderr: text (coloured only on a terminal) or json (one
    /// object per line). [default: text] [toml: log_format]
    #[arg(long, env = "STOKER_LOG_FORMAT", value_name = "text|json")]
    pub log_format: Option<LogFormat>,

    /// How long a client has to send a request's headers, counted from the connection's
    /// start or the end of its previous response; then the connection is closed. [default:
    /// 10s] [toml: http.header_read_timeout]
    #[arg(long, env = "STOKER_HEADER_READ_TIMEOUT", value_name = "DURATION", value_parser = config::parse_duration)]
    pub header_read_timeout: Option<Duration>,

    /// The longest pause while a request body arrives; a stalled body is refused and its
    /// connection closed. [default: 30s] [toml: http.body_read_timeout]
    #[arg(long, env = "STOKER_BODY_READ_TIMEOUT", value_name = "DURATION", value_parser = config::parse_duration)]
    pub body_read_timeout: Option<Duration>,

    /// How long a connection may stay open with no request in flight. [default: 60s] [toml:
    /// http.idle_timeout]
    #[arg(long, env = "STOKER_IDLE_TIMEOUT", value_name = "DURATION", value_parser = config::parse_duration)]
    pub idle_timeout: Option<Duration>,

    /// The most connections served at once; one more is answered 503 with `Connection: close`.
    /// Lowered at start to what the open-file limit allows. [default: 10000] [toml:
    /// http.max_connections]
    #[arg(long, env = "STOKER_MAX_CONNECTIONS", value_name = "COUNT")]
    pub max_connections: Option<usize>,

    /// A queue the built-in handlers (webhook) serve, with its concurrency; repeat the flag, or
    /// separate with commas in the variable. The built-in worker takes only the built-in
    /// kinds from these queues; other kinds wait there for pull workers. [default: default=10]
    /// [toml: worker.queues]
    #[arg(
        long = "queue",
        env = "STOKER_QUEUES",
        value_name = "NAME[=CONCURRENCY]",
        value_delimiter = ','
    )]
    pub queues: Vec<String>,

    /// How often the built-in worker looks for due jobs when no event wakes it. [default: 1s]
    /// [toml: worker.poll_interval]
    #[arg(long, env = "STOKER_POLL_INTERVAL", value_name = "DURATION", value_parser = config::parse_duration)]
    pub poll_interval: Option<Duration>,

    /// How long running built-in jobs get to finish on shutdown before they are handed back.
    /// [default: 10s] [toml: worker.shutdown_grace]
    #[arg(long, env = "STOKER_SHUTDOWN_GRACE", value_name = "DURATION", value_parser = config::parse_duration)]
    pub shutdown_grace: Option<Duration>,

    /// The lease of a job reserved by a pull worker that asks for none: unless extended, the
    /// job returns to its queue this long after it was reserved. [default: 30s] [toml:
    /// pull.lease]
    #[arg(long, env = "STOKER_PULL_LEASE", value_name = "DURATION", value_parser = config::parse_duration)]
    pub pull_lease: Option<Duration>,

    /// The longest lease a pull worker may ask for. [default: 1h] [toml: pull.max_lease]
    #[arg(long, env = "STOKER_PULL_MAX_LEASE", value_name = "DURATION", value_parser = config::parse_duration)]
    pub pull_max_lease: Option<Duration>,

    /// The longest a reserve request may wait for a job (long-poll). [default: 30s] [toml:
    /// pull.max_wait]
    #[arg(long, env = "STOKER_PULL_MAX_WAIT", value_name = "DURATION", value_parser = config::parse_duration)]
    pub pull_max_wait: Option<Duration>,

    /// How often a waiting reserve request re-checks the store when no event wakes it (for
    /// scheduled jobs, and other processes' inserts on SQLite). [default: 1s] [toml:
    /// pull.poll_interval]
    #[arg(long, env = "STOKER_PULL_POLL_INTERVAL", value_name = "DURATION", value_parser = config::parse_duration)]
    pub pull_poll_interval: Option<Duration>,

    /// How often the stager moves scheduled jobs that are due to their queues: the most a
    /// scheduled or retrying job waits past its run_at. [default: 1s] [toml: stager.interval]
    #[arg(long, env = "STOKER_STAGE_INTERVAL", value_name = "DURATION", value_parser = config::parse_duration)]
    pub stage_interval: Option<Duration>,

    /// How often the rescuer looks for jobs of dead workers and lapsed leases. [default: 1s]
    /// [toml: rescuer.interval]
    #[arg(long, env = "STOKER_RESCUE_INTERVAL", value_name = "DURATION", value_parser = config::parse_duration)]
    pub rescue_interval: Option<Duration>,

    /// How long a worker may go without a heartbeat before its jobs are rescued. [default:
    /// 3s] [toml: rescuer.stale_after]
    #[arg(long, env = "STOKER_RESCUE_AFTER", value_name = "DURATION", value_parser = config::parse_duration)]
    pub rescue_after: Option<Duration>,

    /// How often the leader's bulk runner looks for bulk operations to run. [default: 1s]
    /// [toml: bulk.interval]
    #[arg(long, env = "STOKER_BULK_INTERVAL", value_name = "DURATION", value_parser = config::parse_duration)]
    pub bulk_interval: Option<Duration>,

    /// How often the pruner deletes old finished jobs. [default: 30s] [toml: pruner.interval]
    #[arg(long, env = "STOKER_PRUNE_INTERVAL", value_name = "DURATION", value_parser = config::parse_duration)]
    pub prune_interval: Option<Duration>,

    /// How long completed jobs are kept, or `forever`. [default: 24h] [toml:
    /// pruner.completed_retention]
    #[arg(
        long,
        env = "STOKER_COMPLETED_RETENTION",
        value_name = "DURATION|forever"
    )]
    pub completed_retention: Option<Retention>,

    /// How long cancelled jobs are kept, or `forever`. [default: 24h] [toml:
    /// pruner.cancelled_retention]
    #[arg(
        long,
        env = "STOKER_CANCELLED_RETENTION",
        value_name = "DURATION|forever"
    )]
    pub cancelled_retention: Option<Retention>,

    /// How long discarded (dead-letter) jobs are kept, or `forever`. [default: 7d] [toml:
    /// pruner.discarded_retention]
    #[arg(
        long,
        env = "STOKER_DISCARDED_RETENTION",
        value_name = "DURATION|forever"
    )]
    pub discarded_retention: Option<Retention>,

    /// Per queue, keep at most this many finished jobs (the newest), whatever their age.
    /// [default: none] [toml: pruner.keep_last]
    #[arg(long, env = "STOKER_KEEP_LAST", value_name = "COUNT")]
    pub keep_last: Option<u32>,

    /// How long a silent worker's row is kept before the pruner deletes it. [default: 1h]
    /// [toml: pruner.worker_retention]
    #[arg(long, env = "STOKER_WORKER_RETENTION", value_name = "DURATION", value_parser = config::parse_duration)]
    pub worker_retention: Option<Duration>,

    /// How often the throughput sampler behind /v1/stats reads the job counts. [default: 5s]
    /// [toml: stats.sample_interval]
    #[arg(long, env = "STOKER_STATS_INTERVAL", value_name = "DURATION", value_parser = config::parse_duration)]
    pub stats_interval: Option<Duration>,

    // --- stream tenancy ---
    /// How long a server trusts a stored API token's row before reading it again: a revoked
    /// token is refused by every server within this long. 0s reads the row on every request;
    /// at most 5m. [default: 5s] [toml: token_cache_ttl]
    #[arg(long, env = "STOKER_TOKEN_CACHE_TTL", value_name = "DURATION", value_parser = config::parse_duration)]
    pub token_cache_ttl: Option<Duration>,
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database could not be opened or migrated.
    #[error("cannot open the database {url}: {source}")]
    Store {
        /// The URL, without its password.
        url: String,
        /// Why.
        #[source]
        source: stoker::Error,
    },
    /// The address could not be listened on.
    #[error("cannot listen on {addr}: {source}; choose another address with --bind (STOKER_BIND)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The built-in worker could not start.
    #[error("cannot start the built-in worker: {0}")]
    Worker(#[source] stoker::Error),
    /// The HTTP server failed while running.
    #[error("the HTTP server failed: {0}")]
    Http(#[source] std::io::Error),
}

/// Runs `stoker serve` until SIGINT or SIGTERM, then shuts down gracefully: stop accepting
/// connections, finish in-flight requests, end long-polls, stop the built-in worker (running
/// jobs get the shutdown grace), and resign leadership.
///
/// # Errors
///
/// A [`ServeError`] if the configuration is unusable, the database cannot be opened, the
/// address cannot be listened on, or the server fails.
pub async fn run(args: ServeArgs) -> Result<(), ServeError> {
    let config = match Config::load(&args) {
        Ok(config) => config,
        Err(err) => {
            crate::logging::init(args.log_format.unwrap_or_default());
            return Err(err.into());
        }
    };
    crate::logging::init(config.log_format);
    if token_on_command_line(std::env::args_os()) {
        tracing::warn!(
            "an API token was given with --api-token, where every user of this machine can \
             read it (ps, /proc); pass it in STOKER_API_TOKEN or --api-token-file instead"
        );
    }
    let server = Server::start(config).await?;
    server.print_banner();
    tokio::select! {
        () = stoker::shutdown_signal() => {
            tracing::info!("shutdown signal received; stopping gracefully");
        }
        () = server.http_stopped() => {}
    }
    server.shutdown().await
}

/// Whether a command line carries a token in `--api-token` (not `--api-token-file`), where
/// other users of the machine can read it.
pub fn token_on_command_line(args: impl IntoIterator<Item = std::ffi::OsString>) -> bool {
    args.into_iter().any(|arg| {
        let arg = arg.to_string_lossy();
        arg == "--api-token" || arg.starts_with("--api-token=")
    })
}

/// Opens the store of `config`: PostgreSQL in its schema with its acquire timeout and
/// acknowledgement commit, or what [`stoker::connect`] opens for other URLs.
async fn open_store(config: &Config) -> stoker::Result<Arc<dyn Store>> {
    if config::is_postgres_url(&config.database_url) {
        let store = stoker::postgres::PgStore::builder(&config.database_url)
            .schema(config.database_schema.clone())
            .acquire_timeout(config.database_acquire_timeout)
            .async_ack_commit(config.database_async_ack_commit)
            .build()
            .await?;
        Ok(Arc::new(store))
    } else {
        stoker::connect(&config.database_url).await
    }
}

/// A running server: the HTTP API on its listener, the built-in worker and the background
/// tasks (throughput sampler, pull worker heartbeats, worker metrics).
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> Result<(), stoker_server::serve::ServeError> {
/// use stoker_server::config::Config;
/// use stoker_server::serve::Server;
///
/// let mut config = Config::default();
/// config.bind = "127.0.0.1:0".parse().unwrap(); // any free port
/// let server = Server::start(config).await?;
/// println!("listening on {}", server.local_addr());
/// server.shutdown().await?;
/// # Ok(()) }
/// ```
pub struct Server {
    config: Config,
    local_addr: SocketAddr,
    state: AppState,
    worker: WorkerHandle,
    background: Background,
    stop_http: CancellationToken,
    http: JoinHandle<std::io::Result<()>>,
    http_done: CancellationToken,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("worker", &self.worker.id())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the store `config.database_url` names, migrates it, and starts the server.
    ///
    /// # Errors
    ///
    /// As [`Server::start_with_store`], and if the database cannot be opened.
    pub async fn start(config: Config) -> Result<Server, ServeError> {
        config.validate()?;
        let store = open_store(&config)
            .await
            .map_err(|source| ServeError::Store {
                url: stoker::redact_url(&config.database_url),
                source,
            })?;
        Server::start_with_store(config, store).await
    }

    /// Starts the server on a store you opened yourself (e.g. a PostgreSQL store in a schema
    /// of its own); `config.database_url` is then only shown. Migrates the store first.
    ///
    /// # Errors
    ///
    /// If the configuration is unusable, the store cannot be migrated, the address cannot be
    /// listened on, or the worker cannot start.
    pub async fn start_with_store(
        config: Config,
        store: Arc<dyn Store>,
    ) -> Result<Server, ServeError> {
        config.validate()?;
        store.migrate().await.map_err(|source| ServeError::Store {
            url: stoker::redact_url(&config.database_url),
            source: source.into(),
        })?;
        let open_files = listen::raise_open_file_limit();
        let mut http_settings = config.http;
        http_settings.max_connections =
            listen::effective_max_connections(config.http.max_connections, open_files);
        if http_settings.max_connections < config.http.max_connections {
            tracing::warn!(
                configured = config.http.max_connections,
                max_connections = http_settings.max_connections,
                open_files,
                "the open-file limit is too low for --max-connections; serving fewer"
            );
        }
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|source| ServeError::Bind {
                addr: config.bind,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: config.bind,
            source,
        })?;

        let mut builder = Worker::builder(Arc::clone(&store))
            .registry(crate::handlers::builtin())
            // Pull workers share these queues: leave them every kind we have no handler for.
            .registered_kinds_only(true)
            .poll_interval(config.worker.poll_interval)
            .shutdown_grace(config.worker.shutdown_grace)
            .stager(config.stager.clone())
            .rescuer(config.rescuer.clone())
            .pruner(config.pruner.clone())
            .bulk_runner(config.bulk.clone())
            .history_keeper(config.history.keeper.clone());
        // History (issue 13): one recorder for the worker and the API's client (pull workers),
        // so the process writes one statement per flush.
        let history = config
            .history
            .enabled
            .then(|| stoker::History::new(Arc::clone(&store)));
        if let Some(history) = &history {
            builder = builder.history_every(history.clone(), config.history.flush_interval);
        }
        for (queue, &concurrency) in &config.worker.queues {
            builder = builder.queue(queue.clone(), concurrency);
        }
        // --- stream events ---
        // One hub for the worker and the API's client, so `GET /v1/events` sees both.
        let event_hub = stoker::EventHub::new();
        builder = builder.event_hub(event_hub.clone());
        // Recurring schedules (issue 15), upserted by name when the worker starts.
        for schedule in &config.cron {
            builder = builder.cron(schedule.clone());
        }
        // --- stream alerts ---
        // Alert messages (issue 13) are webhook jobs: put them on a queue this server's
        // built-in worker serves, `default` when it does.
        if let Some(queue) = alert_queue(&config.worker.queues) {
            builder = builder.alert_evaluator(stoker::alerts::AlertEvaluatorConfig {
                queue,
                ..stoker::alerts::AlertEvaluatorConfig::default()
            });
        }
        // Alert rules from the config (issue 13), upserted by name: an unchanged rule keeps
        // its version and state, so a restart neither re-sends nor forgets a firing rule.
        for rule in &config.alerts {
            stoker::Client::new(Arc::clone(&store))
                .alert_upsert(rule.clone())
                .await
                .map_err(|source| ServeError::Store {
                    url: stoker::redact_url(&config.database_url),
                    source,
                })?;
        }
        // --- stream flow ---
        // Limits from the config (issue 16), set by name before the worker claims anything.
        for spec in &config.limits {
            stoker::Client::new(Arc::clone(&store))
                .limit_set(spec.clone())
                .await
                .map_err(|source| ServeError::Store {
                    url: stoker::redact_url(&config.database_url),
                    source,
                })?;
        }
        // --- stream crypt ---
        // The built-in handlers get plaintext of sealed jobs, and seal their results.
        if let Some(encryption) = config.encryption.encryption() {
            builder = builder.encryption(encryption);
        }
        let worker = builder.build().map_err(ServeError::Worker)?;
        let worker = worker.start().await.map_err(ServeError::Worker)?;

        let mut state = AppState::new(Arc::clone(&store), &config);
        if let Some(history) = history {
            state = state.with_history(history);
        }
        // --- stream events ---
        state = state.with_event_hub(event_hub);
        let background = state.spawn_background(Some(worker.events()));
        // The API, and the dashboard at `/` (issue 14).
        let app = api::router(state.clone()).merge(crate::dashboard::router(state.clone()));
        let stop_http = CancellationToken::new();
        let http_done = CancellationToken::new();
        let http = tokio::spawn({
            let stop = stop_http.clone();
            let done = http_done.clone();
            async move {
                let result = listen::serve(listener, app, http_settings, stop).await;
                done.cancel();
                result
            }
        });
        tracing::info!(
            addr = %local_addr,
            store = store.name(),
            worker = worker.id(),
            queues = ?config.worker.queues,
            auth = if config.tokens.is_empty() { "none (loopback only)" } else { "bearer tokens" },
            max_connections = http_settings.max_connections,
            "stoker server started"
        );
        Ok(Server {
            config,
            local_addr,
            state,
            worker,
            background,
            stop_http,
            http,
            http_done,
        })
    }

    /// The address the API listens on (with the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The API's base URL, e.g. `http://127.0.0.1:7700`.
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// The state the API's handlers share.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The built-in worker's id, as in its heartbeat row.
    pub fn worker_id(&self) -> &str {
        self.worker.id()
    }

    /// Whether this server leads the maintenance services now.
    pub fn is_leader(&self) -> bool {
        self.worker.is_leader()
    }

    /// Completes when the HTTP server stopped on its own (it failed).
    async fn http_stopped(&self) {
        self.http_done.cancelled().await;
    }

    fn print_banner(&self) {
        let url = self.url();
        println!(
            "stoker serve {}: {} ({})",
            env!("CARGO_PKG_VERSION"),
            stoker::redact_url(&self.config.database_url),
            self.state.store().name()
        );
        println!("  API:        {url}/v1  (OpenAPI: {url}/v1/openapi.json)");
        println!("  Dashboard:  {url}/");
        println!("  Health:     {url}/health   Metrics: {url}/metrics");
        let queues: Vec<String> = self
            .config
            .worker
            .queues
            .iter()
            .map(|(queue, concurrency)| format!("{queue}={concurrency}"))
            .collect();
        println!(
            "  Built-in handlers: {} on queues {}",
            crate::handlers::builtin().kinds().join(", "),
            queues.join(", ")
        );
        if self.config.tokens.is_empty() {
            println!("  Auth: none (listening on loopback only; set --api-token to open up)");
        } else {
            println!("  Auth: {} API token(s)", self.config.tokens.len());
        }
    }

    /// Shuts down gracefully: stop accepting connections, end long-polls, let in-flight
    /// requests finish, stop the built-in worker (running jobs get the shutdown grace, then
    /// are handed back), then the background tasks.
    ///
    /// # Errors
    ///
    /// [`ServeError::Http`] if the HTTP server had failed.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.state.begin_shutdown();
        self.stop_http.cancel();
        let http = match self.http.await {
            Ok(result) => result.map_err(ServeError::Http),
            Err(err) => Err(ServeError::Http(std::io::Error::other(err))),
        };
        let report = self.worker.shutdown().await;
        if report.cancelled_at_deadline > 0 {
            tracing::warn!(
                jobs = report.cancelled_at_deadline,
                "jobs still running at the end of the shutdown grace were handed back"
            );
        }
        self.background.stop().await;
        tracing::info!("stoker server stopped");
        http
    }
}

// --- stream alerts ---
/// The queue alert messages go to: `default` if the built-in worker serves it, else the
/// first queue it serves.
fn alert_queue(queues: &std::collections::BTreeMap<String, usize>) -> Option<String> {
    if queues.contains_key(stoker::QUEUE_DEFAULT) {
        return Some(stoker::QUEUE_DEFAULT.to_owned());
    }
    queues.keys().next().cloned()
}
