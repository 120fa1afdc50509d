//! The embedded schema migrations and the tiny migrator that applies them.

use chrono::Utc;
use sqlx::{Connection, Executor, SqliteConnection};
use stoker_core::{StoreError, StoreResult};

use crate::error::db_error;
use crate::row::micros;

/// One schema change, applied once and recorded in `stoker_migrations`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    /// Applied in increasing order.
    pub(crate) version: i64,
    /// A short name for the record and for errors.
    pub(crate) name: &'static str,
    /// The statements.
    pub(crate) sql: &'static str,
}

/// Every migration this build knows of, oldest first.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "lease",
        sql: include_str!("../migrations/0002_lease.sql"),
    },
    Migration {
        version: 3,
        name: "schedule",
        sql: include_str!("../migrations/0003_schedule.sql"),
    },
    Migration {
        version: 4,
        name: "counts",
        sql: include_str!("../migrations/0004_counts.sql"),
    },
    Migration {
        version: 5,
        name: "finished_index",
        sql: include_str!("../migrations/0005_finished_index.sql"),
    },
    Migration {
        version: 6,
        name: "running_index",
        sql: include_str!("../migrations/0006_running_index.sql"),
    },
    Migration {
        version: 7,
        name: "fence",
        sql: include_str!("../migrations/0007_fence.sql"),
    },
    Migration {
        version: 8,
        name: "cron",
        sql: include_str!("../migrations/0008_cron.sql"),
    },
    // History (issue 13).
    Migration {
        version: 9,
        name: "history",
        sql: include_str!("../migrations/0009_history.sql"),
    },
    // Failure groups, bulk operations and job logs (issue 13).
    Migration {
        version: 10,
        name: "failures",
        sql: include_str!("../migrations/0010_failures.sql"),
    },
    // --- stream alerts ---
    Migration {
        version: 11,
        name: "alerts",
        sql: include_str!("../migrations/0011_alerts.sql"),
    },
    // --- stream counts ---
    // The finished counts per tenant (issue 13).
    Migration {
        version: 12,
        name: "counts",
        sql: include_str!("../migrations/0012_counts.sql"),
    },
    // --- stream search ---
    Migration {
        version: 13,
        name: "search",
        sql: include_str!("../migrations/0013_search.sql"),
    },
    // --- stream tokens ---
    Migration {
        version: 14,
        name: "tokens",
        sql: include_str!("../migrations/0014_tokens.sql"),
    },
    // --- stream flow ---
    Migration {
        version: 15,
        name: "flow",
        sql: include_str!("../migrations/0015_flow.sql"),
    },
    // --- stream wf ---
    // Workflows: dependencies, the blocked state and the edge-resolving trigger (issue 18).
    Migration {
        version: 16,
        name: "workflows",
        sql: include_str!("../migrations/0016_workflows.sql"),
    },
    // --- stream tenancy ---
    Migration {
        version: 17,
        name: "audit",
        sql: include_str!("../migrations/0017_audit.sql"),
    },
    // --- stream ops ---
    // Failure-group counts by the hour (issue 13, item 3).
    Migration {
        version: 18,
        name: "ops",
        sql: include_str!("../migrations/0018_ops.sql"),
    },
    // --- stream tenant ---
    // Failure groups per tenant (issue 17).
    Migration {
        version: 19,
        name: "tenant_failures",
        sql: include_str!("../migrations/0019_tenant_failures.sql"),
    },
    // --- stream flow ---
    // Fair queuing across tenants: the per-tenant index and virtual times (issue 16).
    Migration {
        version: 20,
        name: "fair",
        sql: include_str!("../migrations/0020_fair.sql"),
    },
    // --- stream workflows ---
    // Batches: counters kept with their jobs' states, and a callback released once (issue 18).
    Migration {
        version: 21,
        name: "batches",
        sql: include_str!("../migrations/0021_batches.sql"),
    },
    // --- stream history ---
    // Job-completion callbacks (issue 13, item 8).
    Migration {
        version: 22,
        name: "on_finish",
        sql: include_str!("../migrations/0022_on_finish.sql"),
    },
    // --- stream dash ---
    // The waiting jobs' counts and queue depths from one covering index (issue 14).
    Migration {
        version: 23,
        name: "waiting_index",
        sql: include_str!("../migrations/0023_waiting_index.sql"),
    },
    // --- stream workflows ---
    // Parents that wait for their children (issue 18).
    Migration {
        version: 25,
        name: "children",
        sql: include_str!("../migrations/0025_children.sql"),
    },
    // --- stream flow ---
    // Concurrency slots released by the acknowledgement, not a per-row trigger (issue 16).
    Migration {
        version: 26,
        name: "flow_release",
        sql: include_str!("../migrations/0026_flow_release.sql"),
    },
    // --- stream history ---
    // A completion callback counts in the history's `enqueued` (issue 13).
    Migration {
        version: 27,
        name: "on_finish_history",
        sql: include_str!("../migrations/0027_on_finish_history.sql"),
    },
];

/// The newest version this build knows of.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |migration| migration.version)
}

const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS stoker_migrations (
    version    INTEGER PRIMARY KEY NOT NULL,
    name       TEXT    NOT NULL,
    applied_at INTEGER NOT NULL
) STRICT";

/// Applies every missing migration in order, in one `BEGIN IMMEDIATE` transaction.
///
/// The transaction takes SQLite's write lock before it reads which versions are applied, so
/// processes that migrate at once run one after another (waiting up to the busy timeout) and
/// the later ones find nothing left to do.
pub(crate) async fn migrate(conn: &mut SqliteConnection) -> StoreResult<()> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)?;
    sqlx::query(CREATE_MIGRATIONS_TABLE)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM stoker_migrations")
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
    let mut changed = false;
    for migration in MIGRATIONS {
        if applied.contains(&migration.version) {
            continue;
        }
        // `Executor::execute` rather than `RawSql::execute`, whose future is not `Send` for
        // every lifetime (which `async_trait` needs).
        (&mut *tx)
            .execute(sqlx::raw_sql(migration.sql))
            .await
            .map_err(|error| StoreError::Migration {
                version: migration.version,
                message: format!("{} ({}): {error}", migration.name, migration.version),
            })?;
        // When it was applied is a record for people, not a scheduling decision, so the wall
        // clock is fine here.
        sqlx::query("INSERT INTO stoker_migrations (version, name, applied_at) VALUES (?, ?, ?)")
            .bind(migration.version)
            .bind(migration.name)
            .bind(micros(Utc::now()))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied stoker migration"
        );
        changed = true;
    }
    tx.commit().await.map_err(db_error)?;
    if !changed {
        tracing::debug!("stoker schema already current");
    }
    Ok(())
}

/// Whether the newest embedded migration has been applied.
pub(crate) async fn is_current(conn: &mut SqliteConnection) -> StoreResult<bool> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (
            SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'stoker_migrations')",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(db_error)?;
    if !exists {
        return Ok(false);
    }
    let applied: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM stoker_migrations")
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(applied.unwrap_or(0) >= latest_version())
}
