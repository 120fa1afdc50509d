//! A fresh, empty store for every run, so no run measures another's leftovers.

use std::path::PathBuf;
use std::sync::Arc;

use stoker::postgres::PgStore;
use stoker::sqlite::SqliteStore;
use stoker::Store;

use super::BenchError;

/// Where the runs' stores live.
pub(crate) enum Target {
    /// A directory of SQLite files, one per run.
    Sqlite {
        dir: PathBuf,
        /// Keeps a temporary directory alive for the whole benchmark.
        _temp: Option<tempfile::TempDir>,
    },
    /// A PostgreSQL database, one schema per run.
    Postgres {
        url: String,
        /// Whether acknowledgements skip the wait for the WAL flush (`--async-ack-commit`).
        async_ack_commit: bool,
    },
}

impl Target {
    pub(crate) fn from_url(
        url: Option<&str>,
        async_ack_commit: bool,
    ) -> Result<Target, BenchError> {
        let postgres = url
            .is_some_and(|url| url.starts_with("postgres://") || url.starts_with("postgresql://"));
        if async_ack_commit && !postgres {
            return Err(BenchError::Usage(
                "--async-ack-commit is PostgreSQL only: give a postgres:// --database-url".into(),
            ));
        }
        match url {
            None => {
                let temp = tempfile::Builder::new().prefix("stoker-bench-").tempdir()?;
                Ok(Target::Sqlite {
                    dir: temp.path().to_owned(),
                    _temp: Some(temp),
                })
            }
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Target::Postgres {
                    url: url.to_owned(),
                    async_ack_commit,
                })
            }
            Some(url) if url.starts_with("sqlite:") => {
                let path = url
                    .trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:");
                let parent = PathBuf::from(path)
                    .parent()
                    .filter(|parent| !parent.as_os_str().is_empty())
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("."));
                let temp = tempfile::Builder::new()
                    .prefix("stoker-bench-")
                    .tempdir_in(parent)?;
                Ok(Target::Sqlite {
                    dir: temp.path().to_owned(),
                    _temp: Some(temp),
                })
            }
            Some(other) => Err(BenchError::Usage(format!(
                "--database-url must be sqlite://PATH or postgres://…, got {other:?}"
            ))),
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Target::Sqlite { .. } => "sqlite",
            Target::Postgres { .. } => "postgres",
        }
    }

    /// A new, migrated, empty store.
    pub(crate) async fn fresh(&self) -> Result<Fresh, BenchError> {
        let nonce = format!(
            "{}_{:08x}",
            chrono::Utc::now().timestamp(),
            rand::random::<u32>()
        );
        match self {
            Target::Sqlite { dir, .. } => {
                let path = dir.join(format!("run-{nonce}.sqlite3"));
                let store = SqliteStore::open(&path).await?;
                store.migrate().await?;
                Ok(Fresh {
                    url: format!("sqlite://{}", path.display()),
                    schema: None,
                    async_ack_commit: false,
                    kind: FreshKind::Sqlite(store.clone(), path),
                    store: Arc::new(store),
                })
            }
            Target::Postgres {
                url,
                async_ack_commit,
            } => {
                let schema = format!("stoker_bench_{nonce}");
                let store = PgStore::builder(url)
                    .schema(&schema)
                    .max_connections(16)
                    .async_ack_commit(*async_ack_commit)
                    .build()
                    .await?;
                store.migrate().await?;
                Ok(Fresh {
                    url: url.clone(),
                    schema: Some(schema),
                    async_ack_commit: *async_ack_commit,
                    kind: FreshKind::Postgres(store.clone()),
                    store: Arc::new(store),
                })
            }
        }
    }
}

pub(crate) enum FreshKind {
    Sqlite(SqliteStore, PathBuf),
    Postgres(PgStore),
}

/// One run's store, and what child processes need to open it too.
pub(crate) struct Fresh {
    pub(crate) store: Arc<dyn Store>,
    /// The database URL, for child processes.
    pub(crate) url: String,
    /// The PostgreSQL schema, for child processes.
    pub(crate) schema: Option<String>,
    /// Whether PostgreSQL acknowledgements skip the wait for the flush, for child processes.
    pub(crate) async_ack_commit: bool,
    pub(crate) kind: FreshKind,
}

impl Fresh {
    /// The PostgreSQL store, for the figures only PostgreSQL has.
    pub(crate) fn postgres(&self) -> Option<&PgStore> {
        match &self.kind {
            FreshKind::Postgres(store) => Some(store),
            FreshKind::Sqlite(..) => None,
        }
    }

    /// Deletes the run's data: the schema, or the file.
    pub(crate) async fn remove(self) -> Result<(), BenchError> {
        match self.kind {
            FreshKind::Postgres(store) => {
                let schema = self.schema.expect("a PostgreSQL run has a schema");
                sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .execute(store.pool())
                    .await?;
            }
            FreshKind::Sqlite(store, path) => {
                store.close().await;
                drop(self.store);
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--async-ack-commit` is a PostgreSQL setting: with a SQLite target (given or the
    /// default) the bench refuses it, naming it, rather than measuring something else.
    #[test]
    fn async_ack_commit_needs_postgres() {
        for url in [None, Some("sqlite://bench.sqlite3")] {
            match Target::from_url(url, true) {
                Err(BenchError::Usage(message)) => {
                    assert!(message.contains("--async-ack-commit"), "{message}");
                }
                Err(other) => panic!("{url:?}: {other}"),
                Ok(target) => panic!("{url:?}: accepted on {}", target.name()),
            }
        }
        match Target::from_url(Some("postgres://db/stoker"), true) {
            Ok(Target::Postgres {
                async_ack_commit, ..
            }) => assert!(async_ack_commit),
            Ok(target) => panic!("not PostgreSQL: {}", target.name()),
            Err(err) => panic!("{err}"),
        }
    }
}
