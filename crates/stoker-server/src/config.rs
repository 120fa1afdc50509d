//! The configuration of `stoker serve`: defaults, an optional TOML file, environment variables
//! and flags, in increasing order of precedence.
//!
//! Every setting has a flag and an environment variable (see `stoker serve --help`), and a key
//! in the TOML file given with `--config`. The complete file, every key at its default (it is
//! `stoker.example.toml` in the crate, and [`EXAMPLE_FILE`]):
//!
//! ```toml
#![doc = include_str!("../stoker.example.toml")]
//! ```
//!
//! Durations are written `500ms`, `30s`, `5m`, `1h`, `7d` (or a number of seconds); sizes
//! `2097152`, `512KiB`, `2MiB`. A key the server does not know is an error, with a hint at the
//! key that was probably meant. Tests pin each flag to its variable, its key in this file and
//! its default, so the four cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use stoker::maintenance::{PrunerConfig, RescuerConfig, StagerConfig};

use crate::serve::ServeArgs;

/// The database used when none is configured: a SQLite file in the current directory.
pub const DATABASE_URL_DEFAULT: &str = "sqlite://stoker.sqlite3";
/// The port the server listens on unless told otherwise.
pub const PORT_DEFAULT: u16 = 7700;
/// The address the server listens on unless told otherwise: loopback only.
pub const BIND_DEFAULT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), PORT_DEFAULT);
/// The largest request body accepted unless configured otherwise: 2 MiB.
pub const MAX_BODY_BYTES_DEFAULT: usize = 2 * 1024 * 1024;
/// The queue the built-in handlers serve unless configured otherwise.
pub const WORKER_QUEUE_DEFAULT: &str = "default";
/// The built-in worker's concurrency on a queue given without one.
pub const WORKER_CONCURRENCY_DEFAULT: usize = 10;
/// How long a pull worker holds a reserved job unless it asks otherwise: 30 seconds.
pub const PULL_LEASE_DEFAULT: Duration = Duration::from_secs(30);
/// The longest lease a pull worker may ask for: 1 hour.
pub const PULL_MAX_LEASE_DEFAULT: Duration = Duration::from_secs(3600);
/// The longest a reserve request may wait for a job: 30 seconds.
pub const PULL_MAX_WAIT_DEFAULT: Duration = Duration::from_secs(30);
/// How often a waiting reserve request re-checks the store without an event: 1 second.
pub const PULL_POLL_INTERVAL_DEFAULT: Duration = Duration::from_secs(1);
/// How often the throughput sampler reads the job counts: 5 seconds.
pub const STATS_SAMPLE_INTERVAL_DEFAULT: Duration = Duration::from_secs(5);
/// The shortest API token accepted, so a token cannot be guessed.
pub const TOKEN_MIN_LEN: usize = 16;
/// The PostgreSQL schema of stoker's tables unless configured otherwise.
pub const DATABASE_SCHEMA_DEFAULT: &str = stoker::postgres::SCHEMA_DEFAULT;
/// How long a call waits for a PostgreSQL connection before it fails as unavailable.
pub const DATABASE_ACQUIRE_TIMEOUT_DEFAULT: Duration = stoker::postgres::ACQUIRE_TIMEOUT_DEFAULT;
/// How long a client has to send a request's headers: 10 seconds.
pub const HEADER_READ_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// The longest pause while a client sends a request body: 30 seconds.
pub const BODY_READ_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// How long a connection may stay open with no request in flight: 60 seconds.
pub const IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);
/// The most connections served at once: 10,000 (fewer if the open-file limit is lower).
pub const MAX_CONNECTIONS_DEFAULT: usize = 10_000;

/// The complete configuration file with every key at its default, as in the module docs.
pub const EXAMPLE_FILE: &str = include_str!("../stoker.example.toml");

/// Everything `stoker serve` needs to run, resolved from defaults, the file, the environment
/// and flags. [`Config::default`] is a working configuration (SQLite in the current directory,
/// loopback, no tokens); embedders and tests change fields directly.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The store: `sqlite://PATH`, `sqlite::memory:` or `postgres://...`. Defaults to
    /// [`DATABASE_URL_DEFAULT`].
    pub database_url: String,
    /// The PostgreSQL schema holding stoker's tables, so several servers (or an application
    /// and stoker) can share a database. Defaults to `public`; SQLite has none.
    pub database_schema: String,
    /// How long a call waits for a PostgreSQL connection (opening one included) before it
    /// fails, answered as 503: while the database is unreachable, requests fail after this
    /// long instead of hanging. Defaults to 3 seconds.
    pub database_acquire_timeout: Duration,
    /// Whether PostgreSQL commits acknowledgements without waiting for its WAL flush
    /// ([`stoker::postgres::PgStoreBuilder::async_ack_commit`]): faster, but a crash of the
    /// database server can make recently acknowledged jobs run again. Defaults to false;
    /// refused with SQLite, which has no such commit mode.
    pub database_async_ack_commit: bool,
    /// Where the HTTP API listens. Defaults to [`BIND_DEFAULT`] (127.0.0.1:7700). A
    /// non-loopback address requires at least one token.
    pub bind: SocketAddr,
    /// The API tokens. Empty means no authentication, which is allowed only on loopback.
    pub tokens: Vec<ApiToken>,
    /// The largest request body accepted, in bytes. Defaults to 2 MiB.
    pub max_body_bytes: usize,
    /// How log lines are written to stderr. Defaults to text.
    pub log_format: LogFormat,
    /// Limits on the API's connections.
    pub http: HttpSettings,
    /// The worker that runs the built-in handlers (and, on the elected leader, maintenance).
    pub worker: WorkerSettings,
    /// The pull protocol.
    pub pull: PullSettings,
    /// The stager, which moves scheduled jobs to their queues when due.
    pub stager: StagerConfig,
    /// The rescuer, which returns jobs of dead workers and lapsed leases to their queues.
    pub rescuer: RescuerConfig,
    /// The pruner, which deletes old finished jobs.
    pub pruner: PrunerConfig,
    /// The throughput sampler.
    pub stats: StatsSettings,
    /// Recurring schedules (issue 15) from the file's `[[cron]]` tables, upserted by name when
    /// the server starts (a schedule paused through the API stays paused). Validated, with
    /// distinct names.
    pub cron: Vec<stoker::cron::CronSchedule>,
    /// The bulk runner, which applies bulk operations in batches (issue 13).
    pub bulk: stoker::maintenance::BulkRunnerConfig,
    /// Durable history (issue 13).
    pub history: HistorySettings,
    // --- stream alerts ---
    /// Alert rules (issue 13) from the file's `[[alert]]` tables, upserted by name when the
    /// server starts (a rule's state is kept). Validated, with distinct names.
    pub alerts: Vec<stoker::alerts::AlertRule>,
    // --- stream tokens ---
    /// How long a server trusts a stored token's row before reading it again (issue 17): a
    /// revocation reaches every server within this long. Defaults to
    /// [`TOKEN_CACHE_TTL_DEFAULT`]; zero reads the row on every request.
    pub token_cache_ttl: Duration,
    // --- stream flow ---
    /// Flow-control limits (issue 16) from the file's `[[limit]]` tables, set by name when the
    /// server starts (a limit set through the API with another name is left alone).
    /// Validated, with distinct names.
    pub limits: Vec<stoker::LimitSpec>,
    // --- stream crypt ---
    /// Encryption at rest (issue 17): which jobs' args and results are sealed, and the keys.
    pub encryption: EncryptionSettings,
    /// What tokens below admin see redacted, by kind (issue 17), from `[[redact]]` tables.
    pub redaction: stoker::Redaction,
}

// --- stream crypt ---
/// The environment variable naming a key file, as `[encryption] key_file` does.
pub const KEY_FILE_ENV: &str = "STOKER_ENCRYPTION_KEY_FILE";

/// Settings of encryption at rest (issue 17): the `[encryption]` table, with the keys from
/// [`stoker::KEYS_ENV`] or a key file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncryptionSettings {
    /// The key file (`id=base64key` lines); [`stoker::KEYS_ENV`] wins over it.
    pub key_file: Option<PathBuf>,
    /// Seal every job.
    pub all: bool,
    /// Seal jobs of these kinds.
    pub kinds: Vec<String>,
    /// Seal jobs of these queues.
    pub queues: Vec<String>,
    /// The keys, once read (by [`Config::load`] or [`EncryptionSettings::read_keys`]).
    pub keys: Option<stoker::KeyRing>,
}

impl EncryptionSettings {
    /// Reads the keys from `env_keys` (the value of [`stoker::KEYS_ENV`]) or else the key
    /// file (`env_file`, the value of [`KEY_FILE_ENV`], wins over `key_file`).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the setting for keys that do not parse, or for kinds, queues
    /// or `all` set without any key.
    pub fn read_keys(
        &mut self,
        env_keys: Option<&str>,
        env_file: Option<&Path>,
    ) -> Result<(), ConfigError> {
        if let Some(path) = env_file {
            self.key_file = Some(path.to_owned());
        }
        self.keys = match (
            env_keys.filter(|keys| !keys.trim().is_empty()),
            &self.key_file,
        ) {
            (Some(keys), _) => Some(
                stoker::KeyRing::parse(keys)
                    .map_err(|err| ConfigError::invalid(stoker::KEYS_ENV, err.to_string()))?,
            ),
            (None, Some(path)) => Some(stoker::KeyRing::from_file(path).map_err(|err| {
                ConfigError::invalid(
                    "encryption.key_file / STOKER_ENCRYPTION_KEY_FILE",
                    err.to_string(),
                )
            })?),
            (None, None) => None,
        };
        if self.keys.is_none() && (self.all || !self.kinds.is_empty() || !self.queues.is_empty()) {
            return Err(ConfigError::invalid(
                "encryption",
                format!(
                    "jobs are to be encrypted but no key is given: set {} or                      encryption.key_file ({KEY_FILE_ENV})",
                    stoker::KEYS_ENV
                ),
            ));
        }
        Ok(())
    }

    /// The client's encryption, if keys were read: sealing the configured jobs, and opening
    /// sealed ones of any kind.
    pub fn encryption(&self) -> Option<stoker::Encryption> {
        let ring = self.keys.clone()?;
        Some(if self.all {
            stoker::Encryption::all(ring)
        } else {
            stoker::Encryption::kinds(ring, self.kinds.clone()).and_queues(self.queues.clone())
        })
    }
}

// --- stream tokens ---
/// The default of [`Config::token_cache_ttl`]: 5 seconds.
pub const TOKEN_CACHE_TTL_DEFAULT: Duration = Duration::from_secs(5);
// --- stream tenancy ---
/// The longest [`Config::token_cache_ttl`]: a revocation must reach every server within
/// minutes at worst.
pub const TOKEN_CACHE_TTL_MAX: Duration = Duration::from_secs(300);

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: DATABASE_URL_DEFAULT.to_owned(),
            database_schema: DATABASE_SCHEMA_DEFAULT.to_owned(),
            database_acquire_timeout: DATABASE_ACQUIRE_TIMEOUT_DEFAULT,
            database_async_ack_commit: false,
            bind: BIND_DEFAULT,
            tokens: Vec::new(),
            max_body_bytes: MAX_BODY_BYTES_DEFAULT,
            log_format: LogFormat::Text,
            http: HttpSettings::default(),
            worker: WorkerSettings::default(),
            pull: PullSettings::default(),
            stager: StagerConfig::default(),
            rescuer: RescuerConfig::default(),
            pruner: PrunerConfig::default(),
            stats: StatsSettings::default(),
            cron: Vec::new(),
            bulk: stoker::maintenance::BulkRunnerConfig::default(),
            history: HistorySettings::default(),
            // --- stream alerts ---
            alerts: Vec::new(),
            // --- stream tokens ---
            token_cache_ttl: TOKEN_CACHE_TTL_DEFAULT,
            // --- stream flow ---
            limits: Vec::new(),
            // --- stream crypt ---
            encryption: EncryptionSettings::default(),
            redaction: stoker::Redaction::new(),
        }
    }
}

/// Settings of the durable history (issue 13): whether this server records its worker's and
/// its pull workers' jobs, how often it writes them, and how long each grain is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistorySettings {
    /// Record history. Defaults to true.
    pub enabled: bool,
    /// How often the recorder writes its deltas (one statement each time). Defaults to 5 s.
    pub flush_interval: Duration,
    /// The leader's keeper: sampling interval and retention (minute 7 d, hour 90 d, day 2 y).
    pub keeper: stoker::HistoryKeeperConfig,
}

impl Default for HistorySettings {
    fn default() -> Self {
        HistorySettings {
            enabled: true,
            flush_interval: stoker::HISTORY_FLUSH_INTERVAL_DEFAULT,
            keeper: stoker::HistoryKeeperConfig::default(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines, coloured only when stderr is a terminal (and `NO_COLOR` is unset).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format {other:?}: expected text or json"
            )),
        }
    }
}

/// Limits on the API's connections, so idle, slow or too many clients cannot make the server
/// unreachable for the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
    /// How long a client has to send a request's headers, counted from when the server waits
    /// for them: the connection's start or, on a kept-alive HTTP/1 connection, the end of the
    /// previous response. A connection that runs out of it is closed. Defaults to 10 seconds.
    pub header_read_timeout: Duration,
    /// The longest pause while a request body arrives; a body that stalls longer is refused
    /// and its connection closed. Defaults to 30 seconds.
    pub body_read_timeout: Duration,
    /// How long a connection may stay open with no request in flight before it is closed.
    /// Defaults to 60 seconds.
    pub idle_timeout: Duration,
    /// The most connections served at once. A connection beyond it is answered `503` with a
    /// JSON error and `Connection: close`, and closed. Lowered at start to what the open-file
    /// limit allows. Defaults to 10,000.
    pub max_connections: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            header_read_timeout: HEADER_READ_TIMEOUT_DEFAULT,
            body_read_timeout: BODY_READ_TIMEOUT_DEFAULT,
            idle_timeout: IDLE_TIMEOUT_DEFAULT,
            max_connections: MAX_CONNECTIONS_DEFAULT,
        }
    }
}

/// Settings of the worker that runs the built-in handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSettings {
    /// Queue name to concurrency. Defaults to `default` with 10. The worker takes only the
    /// built-in kinds from these queues; other kinds wait there for pull workers.
    pub queues: BTreeMap<String, usize>,
    /// How often it looks for due jobs when no event wakes it. Defaults to 1 second.
    pub poll_interval: Duration,
    /// How long running jobs get to finish at shutdown. Defaults to 10 seconds.
    pub shutdown_grace: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            queues: BTreeMap::from([(WORKER_QUEUE_DEFAULT.to_owned(), WORKER_CONCURRENCY_DEFAULT)]),
            poll_interval: stoker::POLL_INTERVAL_DEFAULT,
            shutdown_grace: stoker::SHUTDOWN_GRACE_DEFAULT,
        }
    }
}

/// Settings of the pull protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullSettings {
    /// The lease of a reserved job when the worker does not ask for one. Defaults to 30
    /// seconds.
    pub lease: Duration,
    /// The longest lease a worker may ask for. Defaults to 1 hour.
    pub max_lease: Duration,
    /// The longest a reserve request may wait for a job. Defaults to 30 seconds.
    pub max_wait: Duration,
    /// How often a waiting reserve request re-checks the store when no event arrives (for
    /// scheduled jobs coming due, and other processes' inserts on SQLite). Defaults to 1
    /// second.
    pub poll_interval: Duration,
}

impl Default for PullSettings {
    fn default() -> Self {
        PullSettings {
            lease: PULL_LEASE_DEFAULT,
            max_lease: PULL_MAX_LEASE_DEFAULT,
            max_wait: PULL_MAX_WAIT_DEFAULT,
            poll_interval: PULL_POLL_INTERVAL_DEFAULT,
        }
    }
}

/// Settings of the throughput sampler behind `GET /v1/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsSettings {
    /// How often it reads the job counts. Defaults to 5 seconds.
    pub sample_interval: Duration,
}

impl Default for StatsSettings {
    fn default() -> Self {
        StatsSettings {
            sample_interval: STATS_SAMPLE_INTERVAL_DEFAULT,
        }
    }
}

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Everything, including cancel, retry, delete, pause and resume.
    Admin,
    /// Enqueue jobs.
    Enqueue,
    /// The pull protocol: reserve jobs and report on them.
    Work,
    /// Read jobs, queues, workers, stats and metrics.
    Read,
    // --- stream tokens ---
    /// `read`, plus pause and resume queues, retry and cancel jobs, failure-group and bulk
    /// actions; not delete nor token management.
    Operate,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 5] = [
        Scope::Admin,
        Scope::Enqueue,
        Scope::Work,
        Scope::Read,
        Scope::Operate,
    ];

    /// The scope's name in configuration and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Enqueue => "enqueue",
            Scope::Work => "work",
            Scope::Read => "read",
            Scope::Operate => "operate",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                format!("unknown scope {s:?}: expected one of admin, operate, enqueue, work, read")
            })
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// One API token: a secret, what it may do, and optionally the one tenant it acts for.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// A name for logs and job metadata (`source`), e.g. `billing`.
    pub name: String,
    /// The secret clients send as `Authorization: Bearer <secret>`.
    pub secret: String,
    /// What it may do; `admin` implies every other scope.
    pub scopes: BTreeSet<Scope>,
    /// If set, the token sees and touches only this tenant's jobs (and reserves only them in
    /// the pull protocol), and cannot use the routes that span every tenant (workers, queue
    /// pause, failure groups, metrics, alerts, tokens).
    pub tenant: Option<String>,
}

impl ApiToken {
    /// An admin token for every tenant, named `admin`.
    pub fn admin(secret: impl Into<String>) -> Self {
        ApiToken {
            name: "admin".to_owned(),
            secret: secret.into(),
            scopes: BTreeSet::from([Scope::Admin]),
            tenant: None,
        }
    }

    /// Whether the token grants `scope` (admin grants everything).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .field("scopes", &self.scopes)
            .field("tenant", &self.tenant)
            .finish()
    }
}

/// A configuration that cannot be used, saying which setting is wrong and how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read the configuration file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML, or a value has the wrong type.
    #[error("{origin}: {message}")]
    Parse {
        /// The file.
        origin: String,
        /// What is wrong, with the line where the parser could tell.
        message: String,
    },
    /// The configuration file has a key the server does not know.
    #[error("{origin}: unknown key `{key}` in {section}{}", hint.as_ref().map(|hint| format!("; {hint}")).unwrap_or_default())]
    UnknownKey {
        /// The file.
        origin: String,
        /// The section, e.g. `[pull]`, or `the top level`.
        section: String,
        /// The key.
        key: String,
        /// "did you mean ...?", or the keys the section takes.
        hint: Option<String>,
    },
    /// A setting has a value that cannot be used.
    #[error("invalid {setting}: {message}")]
    Invalid {
        /// The setting, as flag, variable and key: `--bind / STOKER_BIND / bind`.
        setting: String,
        /// What is wrong.
        message: String,
    },
    /// A non-loopback address without any API token: anyone who can reach it could run jobs.
    #[error(
        "refusing to listen on {bind} without an API token: anyone who can reach that address \
         could enqueue, read and delete jobs. Set a token with --api-token <TOKEN>, the \
         STOKER_API_TOKEN environment variable, or `api_token = \"...\"` (or [[tokens]]) in the \
         --config file; tokens must be at least {TOKEN_MIN_LEN} characters (e.g. \
         `openssl rand -hex 32`). Or listen on loopback only with --bind 127.0.0.1:{port}",
        port = bind.port()
    )]
    InsecureBind {
        /// The address.
        bind: SocketAddr,
    },
}

impl ConfigError {
    fn invalid(setting: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            setting: setting.to_owned(),
            message: message.into(),
        }
    }
}

impl Config {
    /// The configuration `stoker serve` runs with: defaults, then the `--config` file if any,
    /// then the flags and environment variables in `args` (clap has already let flags win over
    /// the environment). The result is validated.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the setting at fault.
    pub fn load(args: &ServeArgs) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        if let Some(path) = &args.config {
            config.apply_file(path)?;
        }
        config.apply_args(args)?;
        // --- stream crypt ---
        config.encryption.read_keys(
            std::env::var(stoker::KEYS_ENV).ok().as_deref(),
            std::env::var_os(KEY_FILE_ENV).map(PathBuf::from).as_deref(),
        )?;
        config.validate()?;
        Ok(config)
    }

    /// Applies the TOML file at `path` over this configuration.
    ///
    /// # Errors
    ///
    /// If the file cannot be read, is not valid TOML, has an unknown key or a bad value.
    pub fn apply_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.apply_toml(&text, &path.display().to_string())
    }

    /// Applies TOML text over this configuration; `origin` names it in errors.
    ///
    /// # Errors
    ///
    /// If the text is not valid TOML, has an unknown key or a bad value.
    pub fn apply_toml(&mut self, text: &str, origin: &str) -> Result<(), ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|err| ConfigError::Parse {
            origin: origin.to_owned(),
            message: toml_message(&err, text),
        })?;
        check_keys(&table, origin)?;
        let file: FileConfig = toml::from_str(text).map_err(|err| ConfigError::Parse {
            origin: origin.to_owned(),
            message: toml_message(&err, text),
        })?;
        file.apply(self)
    }

    /// Applies flags and environment variables over this configuration.
    ///
    /// # Errors
    ///
    /// If a value cannot be used.
    pub fn apply_args(&mut self, args: &ServeArgs) -> Result<(), ConfigError> {
        if let Some(url) = &args.database_url {
            self.database_url = url.clone();
        }
        if let Some(schema) = &args.database_schema {
            self.database_schema = schema.clone();
        }
        if let Some(bind) = &args.bind {
            self.bind = parse_bind(bind)
                .map_err(|message| ConfigError::invalid("--bind / STOKER_BIND / bind", message))?;
        }
        if args.api_token.is_some() && args.api_token_file.is_some() {
            return Err(ConfigError::invalid(
                API_TOKEN_FILE_SETTING,
                "give the admin token once: --api-token (STOKER_API_TOKEN) or --api-token-file \
                 (STOKER_API_TOKEN_FILE), not both",
            ));
        }
        if let Some(path) = &args.api_token_file {
            let secret = read_token_file(path, API_TOKEN_FILE_SETTING)?;
            self.set_admin_token(secret);
        }
        if let Some(secret) = &args.api_token {
            self.set_admin_token(secret.clone());
        }
        if let Some(on) = args.database_async_ack_commit {
            self.database_async_ack_commit = on;
        }
        if let Some(bytes) = args.max_body_bytes {
            self.max_body_bytes = bytes;
        }
        if let Some(format) = args.log_format {
            self.log_format = format;
        }
        if let Some(max) = args.max_connections {
            self.http.max_connections = max;
        }
        if !args.queues.is_empty() {
            let mut queues = BTreeMap::new();
            for spec in &args.queues {
                let (name, concurrency) = parse_queue(spec).map_err(|message| {
                    ConfigError::invalid("--queue / STOKER_QUEUES / worker.queues", message)
                })?;
                queues.insert(name, concurrency);
            }
            self.worker.queues = queues;
        }
        let set = |slot: &mut Duration, value: Option<Duration>| {
            if let Some(value) = value {
                *slot = value;
            }
        };
        set(
            &mut self.database_acquire_timeout,
            args.database_acquire_timeout,
        );
        set(&mut self.http.header_read_timeout, args.header_read_timeout);
        set(&mut self.http.body_read_timeout, args.body_read_timeout);
        set(&mut self.http.idle_timeout, args.idle_timeout);
        set(&mut self.worker.poll_interval, args.poll_interval);
        set(&mut self.worker.shutdown_grace, args.shutdown_grace);
        set(&mut self.pull.lease, args.pull_lease);
        set(&mut self.pull.max_lease, args.pull_max_lease);
        set(&mut self.pull.max_wait, args.pull_max_wait);
        set(&mut self.pull.poll_interval, args.pull_poll_interval);
        set(&mut self.stager.interval, args.stage_interval);
        set(&mut self.rescuer.interval, args.rescue_interval);
        set(&mut self.rescuer.stale_after, args.rescue_after);
        set(&mut self.pruner.interval, args.prune_interval);
        set(&mut self.pruner.worker_retention, args.worker_retention);
        set(&mut self.stats.sample_interval, args.stats_interval);
        set(&mut self.bulk.interval, args.bulk_interval);
        // --- stream tenancy ---
        set(&mut self.token_cache_ttl, args.token_cache_ttl);
        if let Some(Retention(retention)) = args.completed_retention {
            self.pruner.completed_retention = retention;
        }
        if let Some(Retention(retention)) = args.cancelled_retention {
            self.pruner.cancelled_retention = retention;
        }
        if let Some(Retention(retention)) = args.discarded_retention {
            self.pruner.discarded_retention = retention;
        }
        if let Some(keep_last) = args.keep_last {
            self.pruner.keep_last = Some(keep_last);
        }
        Ok(())
    }

    /// Replaces the unnamed admin token (from `--api-token` or `api_token`), keeping named
    /// tokens.
    fn set_admin_token(&mut self, secret: String) {
        self.tokens.retain(|token| token.name != "admin");
        self.tokens.insert(0, ApiToken::admin(secret));
    }

    /// Checks the settings together: token strength, a token on non-loopback addresses,
    /// positive intervals, at least one queue.
    ///
    /// # Errors
    ///
    /// The first problem found, naming the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut names = BTreeSet::new();
        let mut secrets = BTreeSet::new();
        for token in &self.tokens {
            let setting = if token.name == "admin" {
                "--api-token / STOKER_API_TOKEN / api_token".to_owned()
            } else {
                format!("tokens (token {:?})", token.name)
            };
            if token.secret.chars().count() < TOKEN_MIN_LEN {
                return Err(ConfigError::invalid(
                    &setting,
                    format!(
                        "the token is shorter than {TOKEN_MIN_LEN} characters; use a long random \
                         one, e.g. from `openssl rand -hex 32`"
                    ),
                ));
            }
            if token
                .secret
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(ConfigError::invalid(
                    &setting,
                    "the token contains whitespace or control characters",
                ));
            }
            if !names.insert(token.name.as_str()) {
                return Err(ConfigError::invalid(
                    "tokens",
                    format!("two tokens are named {:?}", token.name),
                ));
            }
            if !secrets.insert(token.secret.as_str()) {
                return Err(ConfigError::invalid(
                    "tokens",
                    format!(
                        "token {:?} has the same secret as another token",
                        token.name
                    ),
                ));
            }
            if token.scopes.is_empty() {
                return Err(ConfigError::invalid(
                    &setting,
                    "the token has no scopes: give it some of admin, operate, enqueue, work, read",
                ));
            }
            if let Some(tenant) = &token.tenant {
                if tenant.is_empty() || tenant.len() > 255 || tenant.chars().any(char::is_control) {
                    return Err(ConfigError::invalid(
                        &setting,
                        "the tenant must be 1 to 255 characters without control characters",
                    ));
                }
            }
        }
        if self.tokens.is_empty() && !self.bind.ip().is_loopback() {
            return Err(ConfigError::InsecureBind { bind: self.bind });
        }
        if self.database_schema != DATABASE_SCHEMA_DEFAULT && !is_postgres_url(&self.database_url) {
            return Err(ConfigError::invalid(
                DATABASE_SCHEMA_SETTING,
                "only PostgreSQL has schemas; remove it, or use a postgres:// database URL",
            ));
        }
        if self.database_async_ack_commit && !is_postgres_url(&self.database_url) {
            return Err(ConfigError::invalid(
                DATABASE_ASYNC_ACK_COMMIT_SETTING,
                "only PostgreSQL can commit acknowledgements without waiting for the flush; \
                 remove it, or use a postgres:// database URL",
            ));
        }
        if self.http.max_connections == 0 {
            return Err(ConfigError::invalid(
                "--max-connections / STOKER_MAX_CONNECTIONS / http.max_connections",
                "must be at least 1",
            ));
        }
        if self.worker.queues.is_empty() {
            return Err(ConfigError::invalid(
                "--queue / STOKER_QUEUES / worker.queues",
                "the built-in worker needs at least one queue",
            ));
        }
        for (queue, &concurrency) in &self.worker.queues {
            stoker::core::validate_queue(queue).map_err(|err| {
                ConfigError::invalid("--queue / STOKER_QUEUES / worker.queues", err.to_string())
            })?;
            if concurrency == 0 {
                return Err(ConfigError::invalid(
                    "--queue / STOKER_QUEUES / worker.queues",
                    format!("queue {queue:?} needs a concurrency of at least 1"),
                ));
            }
        }
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::invalid(
                "--max-body-bytes / STOKER_MAX_BODY_BYTES / max_body_bytes",
                format!(
                    "{} bytes is too small; use at least 1KiB",
                    self.max_body_bytes
                ),
            ));
        }
        for (setting, value) in [
            (
                "--database-acquire-timeout / STOKER_DATABASE_ACQUIRE_TIMEOUT / \
                 database_acquire_timeout",
                self.database_acquire_timeout,
            ),
            (
                "--header-read-timeout / STOKER_HEADER_READ_TIMEOUT / http.header_read_timeout",
                self.http.header_read_timeout,
            ),
            (
                "--body-read-timeout / STOKER_BODY_READ_TIMEOUT / http.body_read_timeout",
                self.http.body_read_timeout,
            ),
            (
                "--idle-timeout / STOKER_IDLE_TIMEOUT / http.idle_timeout",
                self.http.idle_timeout,
            ),
            (
                "--poll-interval / STOKER_POLL_INTERVAL / worker.poll_interval",
                self.worker.poll_interval,
            ),
            (
                "--pull-lease / STOKER_PULL_LEASE / pull.lease",
                self.pull.lease,
            ),
            (
                "--pull-poll-interval / STOKER_PULL_POLL_INTERVAL / pull.poll_interval",
                self.pull.poll_interval,
            ),
            (
                "--stage-interval / STOKER_STAGE_INTERVAL / stager.interval",
                self.stager.interval,
            ),
            (
                "--rescue-interval / STOKER_RESCUE_INTERVAL / rescuer.interval",
                self.rescuer.interval,
            ),
            (
                "--rescue-after / STOKER_RESCUE_AFTER / rescuer.stale_after",
                self.rescuer.stale_after,
            ),
            (
                "--prune-interval / STOKER_PRUNE_INTERVAL / pruner.interval",
                self.pruner.interval,
            ),
            (
                "--stats-interval / STOKER_STATS_INTERVAL / stats.sample_interval",
                self.stats.sample_interval,
            ),
            (
                "--bulk-interval / STOKER_BULK_INTERVAL / bulk.interval",
                self.bulk.interval,
            ),
            ("history.flush_interval", self.history.flush_interval),
        ] {
            if value.is_zero() {
                return Err(ConfigError::invalid(setting, "must be longer than zero"));
            }
        }
        // --- stream tenancy ---
        if self.token_cache_ttl > TOKEN_CACHE_TTL_MAX {
            return Err(ConfigError::invalid(
                "--token-cache-ttl / STOKER_TOKEN_CACHE_TTL / token_cache_ttl",
                format!(
                    "{} would let a revoked token work that long; use at most {}",
                    format_duration(self.token_cache_ttl),
                    format_duration(TOKEN_CACHE_TTL_MAX)
                ),
            ));
        }
        // History (issue 13).
        if let Err(invalid) = self.history.keeper.retention.validate() {
            return Err(ConfigError::invalid(
                "history.minute_retention / hour_retention / day_retention",
                invalid.reason,
            ));
        }
        if self.pull.lease > self.pull.max_lease {
            return Err(ConfigError::invalid(
                "--pull-lease / STOKER_PULL_LEASE / pull.lease",
                format!(
                    "{} is longer than pull.max_lease ({})",
                    format_duration(self.pull.lease),
                    format_duration(self.pull.max_lease)
                ),
            ));
        }
        Ok(())
    }
}

const API_TOKEN_FILE_SETTING: &str = "--api-token-file / STOKER_API_TOKEN_FILE / api_token_file";
const DATABASE_SCHEMA_SETTING: &str =
    "--database-schema / STOKER_DATABASE_SCHEMA / database_schema";
const DATABASE_ASYNC_ACK_COMMIT_SETTING: &str =
    "--database-async-ack-commit / STOKER_DATABASE_ASYNC_ACK_COMMIT / database_async_ack_commit";

/// Whether a database URL names PostgreSQL.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Reads a token from a file (a secrets mount, say): its content without the trailing
/// newline.
fn read_token_file(path: &Path, setting: &str) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        ConfigError::invalid(
            setting,
            format!("cannot read the token file {}: {err}", path.display()),
        )
    })?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// Parses a duration: `500ms`, `30s`, `1.5s`, `5m`, `1h`, `7d`, or a plain number of seconds.
///
/// # Errors
///
/// A message saying what is accepted.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration: write e.g. 500ms, 30s, 5m, 1h, 7d"))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 0.001,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        other => {
            return Err(format!(
                "{text:?} has an unknown unit {other:?}: use ms, s, m, h or d"
            ))
        }
    };
    Duration::try_from_secs_f64(value * scale).map_err(|_| format!("{text:?} is out of range"))
}

/// Writes a duration the way [`parse_duration`] reads it.
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms % 86_400_000 == 0 && ms > 0 {
        format!("{}d", ms / 86_400_000)
    } else if ms % 3_600_000 == 0 && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Parses a size in bytes: `2097152`, `512KiB`, `2MiB`, `1GiB`.
///
/// # Errors
///
/// A message saying what is accepted.
pub fn parse_byte_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: usize = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size: write e.g. 2097152, 512KiB or 2MiB"))?;
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1024,
        "MiB" => 1024 * 1024,
        "GiB" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "{text:?} has an unknown unit {other:?}: use KiB, MiB or GiB"
            ))
        }
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Parses a queue of the built-in worker: `NAME` (concurrency 10) or `NAME=CONCURRENCY`.
///
/// # Errors
///
/// A message naming what is wrong.
pub fn parse_queue(spec: &str) -> Result<(String, usize), String> {
    let (name, concurrency) = match spec.split_once('=') {
        Some((name, concurrency)) => {
            let concurrency = concurrency.trim().parse::<usize>().map_err(|_| {
                format!(
                    "{spec:?}: the concurrency after '=' must be a whole number, e.g. default=10"
                )
            })?;
            (name.trim(), concurrency)
        }
        None => (spec.trim(), WORKER_CONCURRENCY_DEFAULT),
    };
    stoker::core::validate_queue(name).map_err(|err| format!("{spec:?}: {err}"))?;
    if concurrency == 0 {
        return Err(format!("{spec:?}: the concurrency must be at least 1"));
    }
    Ok((name.to_owned(), concurrency))
}

/// Parses a listen address: `HOST:PORT` with an IP address or `localhost` as host.
///
/// # Errors
///
/// A message saying what is accepted.
pub fn parse_bind(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
        }
    }
    Err(format!(
        "{text:?} is not an address to listen on: write HOST:PORT with an IP address, e.g. \
         127.0.0.1:{PORT_DEFAULT}, 0.0.0.0:{PORT_DEFAULT} or [::1]:{PORT_DEFAULT}"
    ))
}

/// A retention from a flag: a duration, or `forever` to keep those jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(pub Option<Duration>);

impl FromStr for Retention {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "forever" | "off" | "never" => Ok(Retention(None)),
            other => parse_duration(other)
                .map(|duration| Retention(Some(duration)))
                .map_err(|message| format!("{message}, or forever")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The file
// ---------------------------------------------------------------------------------------------

/// Known keys per section, for "did you mean" hints; a test checks each is in the example
/// file and accepted. `worker.queues` takes any queue name.
const KEYS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "database_url",
            "database_schema",
            "database_acquire_timeout",
            "database_async_ack_commit",
            "bind",
            "api_token",
            "api_token_file",
            "max_body_bytes",
            "log_format",
            "http",
            "worker",
            "pull",
            "stager",
            "rescuer",
            "pruner",
            "stats",
            "history",
            "tokens",
            "cron",
            "bulk",
            // --- stream alerts ---
            "alert",
            // --- stream flow ---
            "limit",
            // --- stream tenancy ---
            "token_cache_ttl",
            // --- stream crypt ---
            "encryption",
            "redact",
        ],
    ),
    (
        "http",
        &[
            "header_read_timeout",
            "body_read_timeout",
            "idle_timeout",
            "max_connections",
        ],
    ),
    ("worker", &["queues", "poll_interval", "shutdown_grace"]),
    ("pull", &["lease", "max_lease", "max_wait", "poll_interval"]),
    ("stager", &["interval"]),
    ("bulk", &["interval"]),
    ("rescuer", &["interval", "stale_after"]),
    (
        "pruner",
        &[
            "interval",
            "completed_retention",
            "cancelled_retention",
            "discarded_retention",
            "keep_last",
            "worker_retention",
            // --- stream counts ---
            "queues",
            // --- stream tenancy ---
            "audit_retention",
        ],
    ),
    // --- stream counts ---
    // `[pruner.queues.NAME]`: any queue name, each with these keys.
    (
        "pruner.queues",
        &[
            "completed_retention",
            "completed_keep_last",
            "cancelled_retention",
            "cancelled_keep_last",
            "discarded_retention",
            "discarded_keep_last",
        ],
    ),
    ("stats", &["sample_interval"]),
    (
        "history",
        &[
            "enabled",
            "flush_interval",
            "minute_retention",
            "hour_retention",
            "day_retention",
        ],
    ),
    (
        "tokens",
        &[
            "name",
            "token",
            "token_env",
            "token_file",
            "scopes",
            "tenant",
        ],
    ),
    (
        "cron",
        &[
            "name",
            "expr",
            "tz",
            "kind",
            "queue",
            "args",
            "priority",
            "max_attempts",
            "tenant",
            "catch_up",
            "catch_up_window",
            "catch_up_max",
            "overlap",
            "enabled",
        ],
    ),
    // --- stream alerts ---
    (
        "alert",
        &[
            "name",
            "metric",
            "queue",
            "kind",
            "tenant",
            "threshold",
            "resolve_threshold",
            "window",
            "for",
            "resolve_after",
            "baseline",
            "url",
            "headers",
            "format",
            "enabled",
        ],
    ),
    // --- stream flow ---
    (
        "limit",
        &[
            "name",
            "queue",
            "kind",
            "key",
            "rate",
            "burst",
            "concurrency",
            "fair",
            "weights",
            "quota",
            "quota_burst",
        ],
    ),
    // --- stream crypt ---
    ("encryption", &["key_file", "all", "kinds", "queues"]),
    ("redact", &["kind", "args", "result", "hide_args"]),
];

fn section_label(section: &str) -> String {
    match section {
        "" => "the top level".to_owned(),
        "tokens" => "[[tokens]]".to_owned(),
        "cron" => "[[cron]]".to_owned(),
        // --- stream alerts ---
        "alert" => "[[alert]]".to_owned(),
        // --- stream flow ---
        "limit" => "[[limit]]".to_owned(),
        // --- stream crypt ---
        "redact" => "[[redact]]".to_owned(),
        other => format!("[{other}]"),
    }
}

fn check_keys(table: &toml::Table, origin: &str) -> Result<(), ConfigError> {
    check_section(table, "", origin)?;
    for (section, _) in KEYS.iter().skip(1) {
        match table.get(*section) {
            Some(toml::Value::Table(inner)) => check_section(inner, section, origin)?,
            Some(toml::Value::Array(items))
                if matches!(*section, "tokens" | "cron" | "alert" | "limit" | "redact") =>
            {
                for item in items {
                    if let toml::Value::Table(inner) = item {
                        check_section(inner, section, origin)?;
                    }
                }
            }
            _ => {}
        }
    }
    // --- stream counts ---
    if let Some(toml::Value::Table(queues)) =
        table.get("pruner").and_then(|pruner| pruner.get("queues"))
    {
        for inner in queues.values() {
            if let toml::Value::Table(inner) = inner {
                check_section(inner, "pruner.queues", origin)?;
            }
        }
    }
    Ok(())
}

fn check_section(table: &toml::Table, section: &str, origin: &str) -> Result<(), ConfigError> {
    let known = KEYS
        .iter()
        .find(|(name, _)| *name == section)
        .map(|(_, keys)| *keys)
        .unwrap_or_default();
    for key in table.keys() {
        if known.contains(&key.as_str()) {
            continue;
        }
        let hint = did_you_mean(key, known)
            .map(|best| format!("did you mean `{best}`?"))
            .or_else(|| {
                // The right key in the wrong section.
                KEYS.iter()
                    .find(|(other, keys)| *other != section && keys.contains(&key.as_str()))
                    .map(|(other, _)| format!("did you mean `{key}` in {}?", section_label(other)))
            })
            .or_else(|| Some(format!("expected one of: {}", known.join(", "))));
        return Err(ConfigError::UnknownKey {
            origin: origin.to_owned(),
            section: section_label(section),
            key: key.clone(),
            hint,
        });
    }
    Ok(())
}

/// The known word closest to `word`, if it is close enough to be a typo.
pub(crate) fn did_you_mean<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|candidate| (edit_distance(word, candidate), *candidate))
        .filter(|(distance, candidate)| {
            *distance <= 2.max(candidate.len() / 3) && *distance < candidate.len()
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// The Levenshtein distance between two strings, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            current[j + 1] = (previous[j] + cost)
                .min(previous[j + 1] + 1)
                .min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// The parser's message with the line and column it points at.
fn toml_message(err: &toml::de::Error, text: &str) -> String {
    let message = err.message().trim_end().to_owned();
    match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let line_start = before.rfind('\n').map_or(0, |at| at + 1);
            let column = before.len() - line_start + 1;
            let source = text[line_start..].lines().next().unwrap_or_default().trim();
            format!("line {line}, column {column} (`{source}`): {message}")
        }
        None => message,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    database_url: Option<String>,
    database_schema: Option<String>,
    database_acquire_timeout: Option<FileDuration>,
    database_async_ack_commit: Option<bool>,
    bind: Option<String>,
    api_token: Option<String>,
    api_token_file: Option<PathBuf>,
    max_body_bytes: Option<FileSize>,
    log_format: Option<FileLogFormat>,
    #[serde(default)]
    http: FileHttp,
    #[serde(default)]
    worker: FileWorker,
    #[serde(default)]
    pull: FilePull,
    #[serde(default)]
    stager: FileStager,
    #[serde(default)]
    rescuer: FileRescuer,
    #[serde(default)]
    pruner: FilePruner,
    #[serde(default)]
    stats: FileStats,
    #[serde(default)]
    history: FileHistory,
    #[serde(default)]
    tokens: Vec<FileToken>,
    #[serde(default)]
    cron: Vec<FileCron>,
    #[serde(default)]
    bulk: FileBulk,
    // --- stream alerts ---
    #[serde(default)]
    alert: Vec<FileAlert>,
    // --- stream flow ---
    #[serde(default)]
    limit: Vec<FileLimit>,
    // --- stream tenancy ---
    token_cache_ttl: Option<FileDuration>,
    // --- stream crypt ---
    #[serde(default)]
    encryption: Option<FileEncryption>,
    #[serde(default)]
    redact: Vec<FileRedact>,
}

// --- stream flow ---
/// A `[[limit]]` table: a flow-control limit (issue 16).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimit {
    name: String,
    queue: Option<String>,
    kind: Option<String>,
    key: Option<String>,
    /// `COUNT/PERIOD`, e.g. `"100/60s"`.
    rate: Option<String>,
    burst: Option<u32>,
    concurrency: Option<u32>,
    /// Fair queuing across the queue's tenants.
    fair: Option<bool>,
    /// Tenant weights under fair queuing, `{ tenant = weight }`.
    weights: Option<std::collections::BTreeMap<String, u32>>,
    /// Enqueue quota per key, `COUNT/PERIOD`.
    quota: Option<String>,
    quota_burst: Option<u32>,
}

/// A `[[limit]]` table's `COUNT/PERIOD` setting (`rate` or `quota`) with its burst setting.
fn parse_limit_rate(
    text: &Option<String>,
    burst: Option<u32>,
    name: &str,
    burst_name: &str,
    setting: &dyn Fn(&str) -> String,
) -> Result<Option<stoker::Rate>, ConfigError> {
    match text {
        Some(text) => {
            let (count, period) = text.split_once('/').ok_or_else(|| {
                ConfigError::invalid(
                    &setting(name),
                    format!("{text:?}: expected COUNT/PERIOD, e.g. \"100/60s\""),
                )
            })?;
            let count: u32 = count.trim().parse().map_err(|_| {
                ConfigError::invalid(&setting(name), "the count must be a whole number")
            })?;
            let period = parse_duration(period.trim())
                .map_err(|err| ConfigError::invalid(&setting(name), err))?;
            Ok(Some(stoker::Rate {
                count,
                period_ms: u64::try_from(period.as_millis()).unwrap_or(u64::MAX),
                burst: burst.unwrap_or(1),
            }))
        }
        None if burst.is_some() => Err(ConfigError::invalid(
            &setting(burst_name),
            format!("a {burst_name} needs a {name}"),
        )),
        None => Ok(None),
    }
}

impl FileLimit {
    /// The limit, validated; errors name the table and the key.
    fn spec(self) -> Result<stoker::LimitSpec, ConfigError> {
        let setting = |key: &str| format!("[[limit]] {:?} {key}", self.name);
        let key = match &self.key {
            Some(key) => stoker::LimitKey::parse(key)
                .map_err(|err| ConfigError::invalid(&setting("key"), err.reason))?,
            None => stoker::LimitKey::Global,
        };
        let rate = parse_limit_rate(&self.rate, self.burst, "rate", "burst", &setting)?;
        let quota = parse_limit_rate(
            &self.quota,
            self.quota_burst,
            "quota",
            "quota_burst",
            &setting,
        )?;
        let spec = stoker::LimitSpec {
            name: self.name.clone(),
            queue: self.queue.clone(),
            kind: self.kind.clone(),
            key,
            rate,
            concurrency: self.concurrency,
            fair: match (self.fair, &self.weights) {
                (Some(true), weights) => Some(stoker::Fair {
                    weights: weights.clone().unwrap_or_default(),
                }),
                (_, Some(_)) => {
                    return Err(ConfigError::invalid(
                        &setting("weights"),
                        "weights need fair = true",
                    ))
                }
                (_, None) => None,
            },
            quota,
        };
        spec.validate()
            .map_err(|err| ConfigError::invalid(&setting(&err.field), err.reason))?;
        Ok(spec)
    }
}

// --- stream crypt ---
/// The `[encryption]` table (issue 17).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEncryption {
    key_file: Option<PathBuf>,
    #[serde(default)]
    all: bool,
    #[serde(default)]
    kinds: Vec<String>,
    #[serde(default)]
    queues: Vec<String>,
}

/// A `[[redact]]` table (issue 17): one kind's redaction for tokens below admin.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRedact {
    kind: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    result: Vec<String>,
    #[serde(default)]
    hide_args: bool,
}

impl FileConfig {
    /// Applies `[encryption]` and `[[redact]]`, validated.
    fn apply_crypt(
        encryption: Option<FileEncryption>,
        redact: Vec<FileRedact>,
        config: &mut Config,
    ) -> Result<(), ConfigError> {
        if let Some(file) = encryption {
            for (index, kind) in file.kinds.iter().enumerate() {
                stoker::core::validate_kind(kind).map_err(|err| {
                    ConfigError::invalid(&format!("encryption.kinds[{index}]"), err.reason)
                })?;
            }
            for (index, queue) in file.queues.iter().enumerate() {
                stoker::core::validate_queue(queue).map_err(|err| {
                    ConfigError::invalid(&format!("encryption.queues[{index}]"), err.reason)
                })?;
            }
            config.encryption.key_file = file.key_file;
            config.encryption.all = file.all;
            config.encryption.kinds = file.kinds;
            config.encryption.queues = file.queues;
        }
        let mut redaction = stoker::Redaction::new();
        for entry in redact {
            stoker::core::validate_kind(&entry.kind).map_err(|err| {
                ConfigError::invalid(&format!("[[redact]] {:?} kind", entry.kind), err.reason)
            })?;
            if redaction.get(&entry.kind).is_some() {
                return Err(ConfigError::invalid(
                    "redact",
                    format!("kind {:?} is given twice", entry.kind),
                ));
            }
            let rule = stoker::KindRedaction {
                args: entry.args,
                result: entry.result,
                hide_args: entry.hide_args,
            };
            redaction = redaction.kind(entry.kind, rule);
        }
        redaction
            .validate()
            .map_err(|err| ConfigError::invalid(&err.field, err.reason))?;
        config.redaction = redaction;
        Ok(())
    }
}

// --- stream alerts ---
/// An `[[alert]]` table: an alert rule (issue 13).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAlert {
    name: String,
    metric: String,
    queue: Option<String>,
    kind: Option<String>,
    tenant: Option<String>,
    threshold: Option<f64>,
    resolve_threshold: Option<f64>,
    window: Option<FileDuration>,
    #[serde(rename = "for")]
    for_: Option<FileDuration>,
    resolve_after: Option<FileDuration>,
    baseline: Option<String>,
    url: String,
    headers: Option<BTreeMap<String, String>>,
    format: Option<String>,
    enabled: Option<bool>,
}

impl FileAlert {
    /// The rule, validated; errors name the table and the key.
    fn rule(self) -> Result<stoker::alerts::AlertRule, ConfigError> {
        use stoker::alerts::{AlertBaseline, AlertFormat, AlertMetric, AlertRule};
        let setting = |key: &str| format!("[[alert]] {:?} {key}", self.name);
        let metric = AlertMetric::parse(&self.metric)
            .map_err(|err| ConfigError::invalid(&setting("metric"), err.reason))?;
        let threshold = self
            .threshold
            .or_else(|| metric.default_threshold())
            .ok_or_else(|| {
                ConfigError::invalid(&setting("threshold"), format!("is required for {metric}"))
            })?;
        let mut rule = AlertRule::new(&self.name, metric, threshold, &self.url);
        rule.scope.queue = self.queue.clone();
        rule.scope.kind = self.kind.clone();
        rule.scope.tenant = self.tenant.clone();
        rule.resolve_threshold = self.resolve_threshold;
        if let Some(FileDuration(window)) = self.window {
            rule.window_seconds = window.as_secs();
        }
        if let Some(FileDuration(hold)) = self.for_ {
            rule.for_seconds = hold.as_secs();
        }
        if let Some(FileDuration(hold)) = self.resolve_after {
            rule.resolve_seconds = hold.as_secs();
        }
        rule.baseline = match self.baseline.as_deref() {
            None => None,
            Some("day") => Some(AlertBaseline::Day),
            Some("week") => Some(AlertBaseline::Week),
            Some(other) => {
                return Err(ConfigError::invalid(
                    &setting("baseline"),
                    format!("{other:?} is not day or week"),
                ))
            }
        };
        if let Some(headers) = &self.headers {
            rule.headers = headers.clone();
        }
        rule.format = match self.format.as_deref() {
            None | Some("stoker") => AlertFormat::Stoker,
            Some("slack") => AlertFormat::Slack,
            Some(other) => {
                return Err(ConfigError::invalid(
                    &setting("format"),
                    format!("{other:?} is not stoker or slack"),
                ))
            }
        };
        if let Some(enabled) = self.enabled {
            rule.enabled = enabled;
        }
        rule.validate().map_err(|err| {
            // The file names the scope's keys and the holds as it spells them.
            let key = match err.field.as_str() {
                "scope.queue" => "queue",
                "scope.kind" => "kind",
                "scope.tenant" => "tenant",
                "window_seconds" => "window",
                "for_seconds" => "for",
                "resolve_seconds" => "resolve_after",
                other => other,
            };
            ConfigError::invalid(&setting(key), err.reason)
        })?;
        Ok(rule)
    }
}

/// A `[[cron]]` table: a recurring schedule (issue 15).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCron {
    name: String,
    expr: String,
    tz: Option<String>,
    kind: String,
    queue: Option<String>,
    args: Option<toml::Table>,
    priority: Option<i16>,
    max_attempts: Option<i32>,
    tenant: Option<String>,
    catch_up: Option<String>,
    catch_up_window: Option<FileDuration>,
    catch_up_max: Option<u32>,
    overlap: Option<String>,
    enabled: Option<bool>,
}

impl FileCron {
    /// The schedule, validated; errors name the table and the key.
    fn schedule(self) -> Result<stoker::cron::CronSchedule, ConfigError> {
        use stoker::cron::{CatchUp, CronSchedule, Overlap};
        let setting = |key: &str| format!("[[cron]] {:?} {key}", self.name);
        let args = match &self.args {
            Some(table) => serde_json::to_value(table)
                .map_err(|err| ConfigError::invalid(&setting("args"), err.to_string()))?,
            None => serde_json::Value::Object(Default::default()),
        };
        let mut schedule = CronSchedule::new(&self.name, &self.expr, &self.kind, args);
        if let Some(tz) = &self.tz {
            schedule.tz = tz.clone();
        }
        if let Some(queue) = &self.queue {
            schedule.queue = queue.clone();
        }
        if let Some(priority) = self.priority {
            schedule.priority = stoker::Priority(priority);
        }
        if let Some(max_attempts) = self.max_attempts {
            schedule.max_attempts = max_attempts;
        }
        schedule.tenant = self.tenant.clone();
        if let Some(catch_up) = &self.catch_up {
            schedule.catch_up = CatchUp::parse(catch_up)
                .map_err(|err| ConfigError::invalid(&setting("catch_up"), err.reason))?;
        }
        if let Some(FileDuration(window)) = self.catch_up_window {
            schedule.catch_up_window_seconds = u32::try_from(window.as_secs())
                .map_err(|_| ConfigError::invalid(&setting("catch_up_window"), "too long"))?;
        }
        if let Some(max) = self.catch_up_max {
            schedule.catch_up_max = max;
        }
        if let Some(overlap) = &self.overlap {
            schedule.overlap = Overlap::parse(overlap)
                .map_err(|err| ConfigError::invalid(&setting("overlap"), err.reason))?;
        }
        if let Some(enabled) = self.enabled {
            schedule.enabled = enabled;
        }
        schedule
            .validate(stoker::MAX_ARGS_BYTES_DEFAULT)
            .map_err(|err| {
                // The file spells the window as a duration.
                let key = match err.field.as_str() {
                    "catch_up_window_seconds" => "catch_up_window",
                    other => other,
                };
                ConfigError::invalid(&setting(key), err.reason)
            })?;
        Ok(schedule)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    header_read_timeout: Option<FileDuration>,
    body_read_timeout: Option<FileDuration>,
    idle_timeout: Option<FileDuration>,
    max_connections: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWorker {
    queues: Option<BTreeMap<String, usize>>,
    poll_interval: Option<FileDuration>,
    shutdown_grace: Option<FileDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePull {
    lease: Option<FileDuration>,
    max_lease: Option<FileDuration>,
    max_wait: Option<FileDuration>,
    poll_interval: Option<FileDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStager {
    interval: Option<FileDuration>,
}

/// `[bulk]`: the bulk runner (issue 13).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBulk {
    interval: Option<FileDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRescuer {
    interval: Option<FileDuration>,
    stale_after: Option<FileDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePruner {
    interval: Option<FileDuration>,
    completed_retention: Option<FileRetention>,
    cancelled_retention: Option<FileRetention>,
    discarded_retention: Option<FileRetention>,
    keep_last: Option<u32>,
    worker_retention: Option<FileDuration>,
    // --- stream counts ---
    #[serde(default)]
    queues: BTreeMap<String, FileQueueRetention>,
    // --- stream tenancy ---
    audit_retention: Option<FileRetention>,
}

// --- stream counts ---
/// `[pruner.queues.NAME]`: one queue's retention per finished state.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileQueueRetention {
    completed_retention: Option<FileRetention>,
    completed_keep_last: Option<u32>,
    cancelled_retention: Option<FileRetention>,
    cancelled_keep_last: Option<u32>,
    discarded_retention: Option<FileRetention>,
    discarded_keep_last: Option<u32>,
}

impl FileQueueRetention {
    /// The pruner's rules for queue `name`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] for a name that is not a valid queue name.
    fn retention(self, name: &str) -> Result<stoker::maintenance::QueueRetention, ConfigError> {
        use stoker::maintenance::{QueueRetention, StateRetention};
        stoker::core::validate_queue(name).map_err(|invalid| {
            ConfigError::invalid(
                &format!("pruner.queues.{name}"),
                format!("not a queue name: {}", invalid.reason),
            )
        })?;
        let rule = |age: Option<FileRetention>, keep_last| StateRetention {
            max_age: age.and_then(|FileRetention(age)| age),
            keep_last,
        };
        Ok(QueueRetention {
            completed: rule(self.completed_retention, self.completed_keep_last),
            cancelled: rule(self.cancelled_retention, self.cancelled_keep_last),
            discarded: rule(self.discarded_retention, self.discarded_keep_last),
        })
    }
}

/// `[history]` (issue 13).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHistory {
    enabled: Option<bool>,
    flush_interval: Option<FileDuration>,
    minute_retention: Option<FileDuration>,
    hour_retention: Option<FileDuration>,
    day_retention: Option<FileDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStats {
    sample_interval: Option<FileDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToken {
    name: String,
    token: Option<String>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    scopes: Vec<Scope>,
    tenant: Option<String>,
}

/// A duration in the file: a string such as `30s`, or a number of seconds.
#[derive(Debug, Clone, Copy)]
struct FileDuration(Duration);

impl<'de> Deserialize<'de> for FileDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Fraction(f64),
            Text(String),
        }
        let duration = match Raw::deserialize(deserializer)? {
            Raw::Seconds(secs) => Duration::from_secs(secs),
            Raw::Fraction(secs) => {
                Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)?
            }
            Raw::Text(text) => parse_duration(&text).map_err(serde::de::Error::custom)?,
        };
        Ok(FileDuration(duration))
    }
}

/// A log format in the file: `"text"` or `"json"`.
#[derive(Debug, Clone, Copy)]
struct FileLogFormat(LogFormat);

impl<'de> Deserialize<'de> for FileLogFormat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse()
            .map(FileLogFormat)
            .map_err(serde::de::Error::custom)
    }
}

/// A retention in the file: a duration, or `"forever"`.
#[derive(Debug, Clone, Copy)]
struct FileRetention(Option<Duration>);

impl<'de> Deserialize<'de> for FileRetention {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Seconds(secs) => Ok(FileRetention(Some(Duration::from_secs(secs)))),
            Raw::Text(text) => text
                .parse::<Retention>()
                .map(|Retention(retention)| FileRetention(retention))
                .map_err(serde::de::Error::custom),
        }
    }
}

/// A size in the file: a number of bytes, or a string such as `2MiB`.
#[derive(Debug, Clone, Copy)]
struct FileSize(usize);

impl<'de> Deserialize<'de> for FileSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(usize),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Bytes(bytes) => Ok(FileSize(bytes)),
            Raw::Text(text) => parse_byte_size(&text)
                .map(FileSize)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl FileConfig {
    fn apply(self, config: &mut Config) -> Result<(), ConfigError> {
        if let Some(url) = self.database_url {
            config.database_url = url;
        }
        if let Some(schema) = self.database_schema {
            config.database_schema = schema;
        }
        if let Some(on) = self.database_async_ack_commit {
            config.database_async_ack_commit = on;
        }
        if let Some(FileLogFormat(format)) = self.log_format {
            config.log_format = format;
        }
        if let Some(max) = self.http.max_connections {
            config.http.max_connections = max;
        }
        if let Some(bind) = self.bind {
            config.bind = parse_bind(&bind)
                .map_err(|message| ConfigError::invalid("--bind / STOKER_BIND / bind", message))?;
        }
        if let Some(FileSize(bytes)) = self.max_body_bytes {
            config.max_body_bytes = bytes;
        }
        match (self.api_token, self.api_token_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    API_TOKEN_FILE_SETTING,
                    "give the admin token once: api_token or api_token_file, not both",
                ))
            }
            (Some(secret), None) => config.set_admin_token(secret),
            (None, Some(path)) => {
                config.set_admin_token(read_token_file(&path, API_TOKEN_FILE_SETTING)?);
            }
            (None, None) => {}
        }
        for token in self.tokens {
            if token.name == "admin" {
                return Err(ConfigError::invalid(
                    "tokens",
                    "the name \"admin\" is reserved for api_token; name the token otherwise",
                ));
            }
            let setting = format!("tokens (token {:?})", token.name);
            let secret = match (token.token, token.token_env, token.token_file) {
                (Some(secret), None, None) => secret,
                (None, Some(variable), None) => std::env::var(&variable).map_err(|_| {
                    ConfigError::invalid(
                        &setting,
                        format!("its token_env names {variable:?}, which is not set"),
                    )
                })?,
                (None, None, Some(path)) => read_token_file(&path, &setting)?,
                _ => {
                    return Err(ConfigError::invalid(
                        &setting,
                        "give exactly one of token = \"...\", token_env = \"VARIABLE\" or \
                         token_file = \"PATH\"",
                    ))
                }
            };
            config.tokens.push(ApiToken {
                name: token.name,
                secret,
                scopes: token.scopes.into_iter().collect(),
                tenant: token.tenant,
            });
        }
        if let Some(queues) = self.worker.queues {
            config.worker.queues = queues;
        }
        let set = |slot: &mut Duration, value: Option<FileDuration>| {
            if let Some(FileDuration(value)) = value {
                *slot = value;
            }
        };
        set(
            &mut config.database_acquire_timeout,
            self.database_acquire_timeout,
        );
        // --- stream tenancy ---
        set(&mut config.token_cache_ttl, self.token_cache_ttl);
        set(
            &mut config.http.header_read_timeout,
            self.http.header_read_timeout,
        );
        set(
            &mut config.http.body_read_timeout,
            self.http.body_read_timeout,
        );
        set(&mut config.http.idle_timeout, self.http.idle_timeout);
        set(&mut config.worker.poll_interval, self.worker.poll_interval);
        set(
            &mut config.worker.shutdown_grace,
            self.worker.shutdown_grace,
        );
        set(&mut config.pull.lease, self.pull.lease);
        set(&mut config.pull.max_lease, self.pull.max_lease);
        set(&mut config.pull.max_wait, self.pull.max_wait);
        set(&mut config.pull.poll_interval, self.pull.poll_interval);
        set(&mut config.stager.interval, self.stager.interval);
        set(&mut config.bulk.interval, self.bulk.interval);
        set(&mut config.rescuer.interval, self.rescuer.interval);
        set(&mut config.rescuer.stale_after, self.rescuer.stale_after);
        set(&mut config.pruner.interval, self.pruner.interval);
        set(
            &mut config.pruner.worker_retention,
            self.pruner.worker_retention,
        );
        set(
            &mut config.stats.sample_interval,
            self.stats.sample_interval,
        );
        // History (issue 13).
        if let Some(enabled) = self.history.enabled {
            config.history.enabled = enabled;
        }
        set(
            &mut config.history.flush_interval,
            self.history.flush_interval,
        );
        let retention = &mut config.history.keeper.retention;
        set(&mut retention.minute, self.history.minute_retention);
        set(&mut retention.hour, self.history.hour_retention);
        set(&mut retention.day, self.history.day_retention);
        if let Some(FileRetention(retention)) = self.pruner.completed_retention {
            config.pruner.completed_retention = retention;
        }
        if let Some(FileRetention(retention)) = self.pruner.cancelled_retention {
            config.pruner.cancelled_retention = retention;
        }
        if let Some(FileRetention(retention)) = self.pruner.discarded_retention {
            config.pruner.discarded_retention = retention;
        }
        if let Some(keep_last) = self.pruner.keep_last {
            config.pruner.keep_last = Some(keep_last);
        }
        // --- stream tenancy ---
        if let Some(FileRetention(retention)) = self.pruner.audit_retention {
            config.pruner.audit_retention = retention;
        }
        // --- stream counts ---
        // A file's [pruner.queues.NAME] tables replace any earlier ones of the same name.
        for (name, table) in self.pruner.queues {
            let retention = table.retention(&name)?;
            config.pruner.queues.insert(name, retention);
        }
        // Recurring schedules (issue 15): a file's [[cron]] tables replace any earlier ones.
        if !self.cron.is_empty() {
            let mut schedules: Vec<stoker::cron::CronSchedule> = Vec::new();
            for table in self.cron {
                let schedule = table.schedule()?;
                if schedules.iter().any(|s| s.name == schedule.name) {
                    return Err(ConfigError::invalid(
                        &format!("[[cron]] {:?} name", schedule.name),
                        "two [[cron]] tables have this name; names must be distinct",
                    ));
                }
                schedules.push(schedule);
            }
            config.cron = schedules;
        }
        // --- stream alerts ---
        // Alert rules (issue 13): a file's [[alert]] tables replace any earlier ones.
        if !self.alert.is_empty() {
            let mut rules: Vec<stoker::alerts::AlertRule> = Vec::new();
            for table in self.alert {
                let rule = table.rule()?;
                if rules.iter().any(|r| r.name == rule.name) {
                    return Err(ConfigError::invalid(
                        &format!("[[alert]] {:?} name", rule.name),
                        "two [[alert]] tables have this name; names must be distinct",
                    ));
                }
                rules.push(rule);
            }
            config.alerts = rules;
        }
        // --- stream flow ---
        // Limits (issue 16): a file's [[limit]] tables replace any earlier ones.
        if !self.limit.is_empty() {
            let mut limits: Vec<stoker::LimitSpec> = Vec::new();
            for table in self.limit {
                let spec = table.spec()?;
                if limits.iter().any(|l| l.name == spec.name) {
                    return Err(ConfigError::invalid(
                        &format!("[[limit]] {:?} name", spec.name),
                        "two [[limit]] tables have this name; names must be distinct",
                    ));
                }
                limits.push(spec);
            }
            config.limits = limits;
        }
        // --- stream crypt ---
        FileConfig::apply_crypt(self.encryption, self.redact, config)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("12"), Ok(Duration::from_secs(12)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(format_duration(Duration::from_secs(7 * 86400)), "7d");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn parses_sizes_queues_and_addresses() {
        assert_eq!(parse_byte_size("2MiB"), Ok(2 * 1024 * 1024));
        assert_eq!(parse_byte_size("4096"), Ok(4096));
        assert!(parse_byte_size("2MB").is_err());
        assert_eq!(parse_queue("mailers=5"), Ok(("mailers".into(), 5)));
        assert_eq!(parse_queue("default"), Ok(("default".into(), 10)));
        assert!(parse_queue("bad queue=1").is_err());
        assert!(parse_queue("q=0").is_err());
        assert_eq!(parse_bind("localhost:80").unwrap().port(), 80);
        assert!(parse_bind("[::1]:7700").unwrap().ip().is_loopback());
        assert!(parse_bind("example.com:80").is_err());
    }

    /// The example file with every commented-out setting put back: `# key = ...` lines and the
    /// `# [[tokens]]` table.
    fn example_uncommented() -> String {
        EXAMPLE_FILE
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with("[[")
                        // --- stream counts ---
                        || rest.starts_with("[pruner.queues.")
                        || rest
                            .split_once(" = ")
                            .is_some_and(|(key, _)| !key.is_empty() && !key.contains(' ')) =>
                {
                    rest
                }
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn every_known_key_is_in_the_example_file_and_accepted() {
        let full = example_uncommented();
        let table: toml::Table = toml::from_str(&full).expect("the uncommented example is TOML");
        check_keys(&table, "example").expect("every key of the example is known");
        let _: FileConfig = toml::from_str(&full).expect("every key of the example is accepted");
        for (section, keys) in KEYS {
            let in_section = if section.is_empty() {
                Some(&table)
            } else if *section == "pruner.queues" {
                // --- stream counts ---
                table
                    .get("pruner")
                    .and_then(|pruner| pruner.get("queues"))
                    .and_then(|queues| queues.as_table())
                    .and_then(|queues| queues.values().next())
                    .and_then(|queue| queue.as_table())
            } else {
                match table.get(*section) {
                    Some(toml::Value::Table(inner)) => Some(inner),
                    Some(toml::Value::Array(items)) => items.first().and_then(|v| v.as_table()),
                    _ => None,
                }
            };
            let in_section =
                in_section.unwrap_or_else(|| panic!("[{section}] is not in the example file"));
            for key in *keys {
                // `token` and `token_file` are the alternatives named beside `token_env`.
                let documented = in_section.contains_key(*key)
                    || (*section == "tokens" && EXAMPLE_FILE.contains(&format!("or {key} = ")));
                assert!(
                    documented,
                    "`{key}` of [{section}] is not in the example file"
                );
            }
        }
    }

    // --- stream counts ---
    #[test]
    fn pruner_queue_tables_become_queue_retention() {
        let mut config = Config::default();
        config
            .apply_toml(
                r#"
[pruner.queues.emails]
completed_keep_last = 100
discarded_retention = "7d"
"#,
                "test",
            )
            .expect("valid");
        let emails = config.pruner.queues["emails"];
        assert_eq!(emails.completed.keep_last, Some(100));
        assert_eq!(emails.completed.max_age, None);
        assert_eq!(
            emails.discarded.max_age,
            Some(Duration::from_secs(7 * 86_400))
        );
        assert!(emails.cancelled.keep_last.is_none() && emails.cancelled.max_age.is_none());

        let typo = Config::default()
            .apply_toml("[pruner.queues.emails]\ncompleted_keep_lst = 1\n", "test")
            .expect_err("a typo");
        assert!(
            typo.to_string()
                .contains("did you mean `completed_keep_last`"),
            "{typo}"
        );
        let bad_name = Config::default()
            .apply_toml(
                "[pruner.queues.\"no spaces\"]\ncompleted_keep_last = 1\n",
                "test",
            )
            .expect_err("a bad queue name");
        assert!(
            bad_name.to_string().contains("pruner.queues.no spaces"),
            "{bad_name}"
        );
    }

    #[test]
    fn the_example_file_is_the_defaults() {
        let mut config = Config::default();
        config
            .apply_toml(EXAMPLE_FILE, "example")
            .expect("the example file is valid");
        assert_eq!(config, Config::default());
    }

    // --- stream alerts ---
    #[test]
    fn alert_tables_become_rules() {
        let mut config = Config::default();
        config
            .apply_toml(
                r#"
[[alert]]
name = "mail-backlog"
metric = "queue_depth"
queue = "mail"
threshold = 1000
for = "2m"
url = "https://hooks.example.com/ops"
format = "slack"

[[alert]]
name = "dead-render"
metric = "discarded"
kind = "render"
window = "10m"
url = "https://hooks.example.com/ops"
"#,
                "test",
            )
            .unwrap();
        assert_eq!(config.alerts.len(), 2);
        let backlog = &config.alerts[0];
        assert_eq!(backlog.scope.queue.as_deref(), Some("mail"));
        assert_eq!((backlog.threshold, backlog.for_seconds), (1000.0, 120));
        assert_eq!(backlog.format, stoker::alerts::AlertFormat::Slack);
        assert_eq!(config.alerts[1].threshold, 0.0);
        assert_eq!(config.alerts[1].window_seconds, 600);

        let bad = |body: &str| {
            let mut config = Config::default();
            let err = config
                .apply_toml(
                    &format!("[[alert]]\nname = \"a\"\nurl = \"http://x.test/h\"\n{body}"),
                    "test",
                )
                .unwrap_err()
                .to_string();
            assert!(config.alerts.is_empty(), "nothing is taken from a bad file");
            err
        };
        assert!(bad("metric = \"cpu\"").contains("[[alert]] \"a\" metric"));
        let err = bad("metric = \"no_worker\"");
        assert!(err.contains("[[alert]] \"a\" queue"), "{err}");
        let err = bad("metric = \"failure_rate\"\nthreshold = 0.5\nwindow = \"10s\"");
        assert!(err.contains("[[alert]] \"a\" window"), "{err}");
        let err = bad("metric = \"queue_depth\"\nthreshold = 1\nsevrity = \"high\"");
        assert!(err.contains("sevrity"), "{err}");
    }

    #[test]
    fn cron_tables_become_schedules() {
        let mut config = Config::default();
        config
            .apply_toml(
                r#"
[[cron]]
name = "nightly"
expr = "0 3 * * *"
tz = "Europe/London"
kind = "cleanup"
args = { older_than_days = 30 }
catch_up = "all"
catch_up_window = "6h"
catch_up_max = 3
overlap = "skip"

[[cron]]
name = "sync"
expr = "*/5 * * * *"
kind = "sync"
"#,
                "test",
            )
            .expect("valid schedules");
        assert_eq!(config.cron.len(), 2);
        let nightly = &config.cron[0];
        assert_eq!(nightly.tz, "Europe/London");
        assert_eq!(nightly.args, serde_json::json!({"older_than_days": 30}));
        assert_eq!(nightly.catch_up, stoker::cron::CatchUp::All);
        assert_eq!(nightly.catch_up_window_seconds, 6 * 3600);
        assert_eq!(nightly.overlap, stoker::cron::Overlap::Skip);
        assert_eq!(config.cron[1].tz, "UTC");
    }

    #[test]
    fn bad_cron_tables_name_the_key() {
        let bad = |body: &str| {
            let mut config = Config::default();
            let err = config
                .apply_toml(
                    &format!("[[cron]]\nname = \"n\"\nkind = \"k\"\n{body}"),
                    "test",
                )
                .expect_err("refused");
            assert!(config.cron.is_empty(), "nothing is taken from a bad file");
            err.to_string()
        };
        assert!(bad("expr = \"61 * * * *\"").contains("[[cron]] \"n\" expr"));
        assert!(bad("expr = \"* * * * *\"\ntz = \"Mars/Base\"").contains("tz"));
        assert!(bad("expr = \"* * * * *\"\ncatch_up = \"some\"").contains("catch_up"));
        assert!(bad("expr = \"* * * * *\"\ncatch_up_window = \"30d\"").contains("catch_up_window"));
        let err =
            bad("expr = \"* * * * *\"\n[[cron]]\nname = \"n\"\nkind = \"k\"\nexpr = \"@daily\"");
        assert!(err.contains("distinct"), "{err}");
        let err = bad("expr = \"* * * * *\"\nschedule = \"x\"");
        assert!(err.contains("[[cron]]"), "{err}");
    }

    #[test]
    fn suggests_the_closest_key() {
        assert_eq!(did_you_mean("bnd", &["bind", "database_url"]), Some("bind"));
        assert_eq!(did_you_mean("intervl", &["interval"]), Some("interval"));
        assert_eq!(did_you_mean("zzzzzzzz", &["bind"]), None);
    }
}
