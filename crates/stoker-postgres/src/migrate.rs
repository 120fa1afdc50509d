//! The embedded migrations and the migrator that applies them.
//!
//! Deliberately not `sqlx::migrate!`: the migrator must put its bookkeeping table in the
//! store's schema, serialize concurrent starts per schema, and run each file with the schema as
//! `search_path` so the files need no qualification.

use sqlx::{Connection, Executor, PgPool};
use stoker_core::{StoreError, StoreResult};

use crate::error::{sqlstate, store_error};

/// One embedded migration.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

/// Every migration this build knows of, in order.
const MIGRATIONS: &[Migration] = &[
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
        name: "running_index",
        sql: include_str!("../migrations/0004_running_index.sql"),
    },
    Migration {
        version: 5,
        name: "fence",
        sql: include_str!("../migrations/0005_fence.sql"),
    },
    Migration {
        version: 6,
        name: "cron",
        sql: include_str!("../migrations/0006_cron.sql"),
    },
    // History (issue 13).
    Migration {
        version: 7,
        name: "history",
        sql: include_str!("../migrations/0007_history.sql"),
    },
    // Failure groups, bulk operations and job logs (issue 13).
    Migration {
        version: 8,
        name: "failures",
        sql: include_str!("../migrations/0008_failures.sql"),
    },
    // --- stream alerts ---
    Migration {
        version: 9,
        name: "alerts",
        sql: include_str!("../migrations/0009_alerts.sql"),
    },
    // --- stream counts ---
    // Counters for every state, per tenant, as delta rows folded later (issue 13).
    Migration {
        version: 10,
        name: "counts",
        sql: include_str!("../migrations/0010_counts.sql"),
    },
    // --- stream search ---
    Migration {
        version: 11,
        name: "search",
        sql: include_str!("../migrations/0011_search.sql"),
    },
    // --- stream tokens ---
    Migration {
        version: 12,
        name: "tokens",
        sql: include_str!("../migrations/0012_tokens.sql"),
    },
    // --- stream flow ---
    Migration {
        version: 13,
        name: "flow",
        sql: include_str!("../migrations/0013_flow.sql"),
    },
    // --- stream wf ---
    // Workflows: dependencies, the blocked state and the edge-resolving trigger (issue 18).
    Migration {
        version: 14,
        name: "workflows",
        sql: include_str!("../migrations/0014_workflows.sql"),
    },
    // --- stream tenancy ---
    Migration {
        version: 15,
        name: "audit",
        sql: include_str!("../migrations/0015_audit.sql"),
    },
    // --- stream ops ---
    // Failure-group counts by the hour (issue 13, item 3).
    Migration {
        version: 16,
        name: "ops",
        sql: include_str!("../migrations/0016_ops.sql"),
    },
    // --- stream tenant ---
    // Failure groups per tenant (issue 17).
    Migration {
        version: 17,
        name: "tenant_failures",
        sql: include_str!("../migrations/0017_tenant_failures.sql"),
    },
    // --- stream flow ---
    // Fair queuing across tenants: the per-tenant index and virtual times (issue 16).
    Migration {
        version: 18,
        name: "fair",
        sql: include_str!("../migrations/0018_fair.sql"),
    },
    // --- stream workflows ---
    // Batches: counters kept with their jobs' states, and a callback released once (issue 18).
    Migration {
        version: 19,
        name: "batches",
        sql: include_str!("../migrations/0019_batches.sql"),
    },
    // --- stream history ---
    // Job-completion callbacks (issue 13, item 8).
    Migration {
        version: 20,
        name: "on_finish",
        sql: include_str!("../migrations/0020_on_finish.sql"),
    },
    // --- stream dash ---
    // Queue depths from the counters, and the oldest due job by index (issue 14).
    Migration {
        version: 21,
        name: "depths",
        sql: include_str!("../migrations/0021_depths.sql"),
    },
    // --- stream workflows ---
    // Parents that wait for their children (issue 18).
    Migration {
        version: 23,
        name: "children",
        sql: include_str!("../migrations/0023_children.sql"),
    },
    // --- stream flow ---
    // A freed concurrency slot wakes its queue's workers (issue 16).
    Migration {
        version: 24,
        name: "flow_wake",
        sql: include_str!("../migrations/0024_flow_wake.sql"),
    },
    // --- stream history ---
    // A completion callback counts in the history's `enqueued` (issue 13).
    Migration {
        version: 25,
        name: "on_finish_history",
        sql: include_str!("../migrations/0025_on_finish_history.sql"),
    },
    // --- stream perf ---
    // The batch and on_finish triggers watch `finished_at`, so claims skip them (issue 20).
    Migration {
        version: 26,
        name: "finish_triggers",
        sql: include_str!("../migrations/0026_finish_triggers.sql"),
    },
    // --- integration ---
    // The workflow triggers watch `finished_at` too, so claims skip them (issue 20).
    Migration {
        version: 27,
        name: "workflow_triggers",
        sql: include_str!("../migrations/0027_workflow_triggers.sql"),
    },
];

/// Brings the schema up to date in one transaction.
///
/// A transaction-scoped advisory lock keyed by the schema name serializes concurrent callers:
/// the first applies what is missing, the others then find nothing to do. If any migration
/// fails, the transaction rolls back and the schema is left as it was.
pub(crate) async fn migrate(pool: &PgPool, schema: &str) -> StoreResult<()> {
    let mut conn = pool.acquire().await.map_err(store_error)?;
    let mut tx = conn.begin().await.map_err(store_error)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(lock_key(schema))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
    // The schema name was validated, so quoting it this way is safe.
    let prepare = format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\"; \
         SET LOCAL search_path TO \"{schema}\"; \
         CREATE TABLE IF NOT EXISTS stoker_migrations ( \
             version    bigint      PRIMARY KEY, \
             name       text        NOT NULL, \
             applied_at timestamptz NOT NULL DEFAULT now() \
         );"
    );
    // Executor::execute rather than RawSql::execute, whose future is not provably Send.
    (&mut *tx)
        .execute(sqlx::raw_sql(&prepare))
        .await
        .map_err(store_error)?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM stoker_migrations")
        .fetch_all(&mut *tx)
        .await
        .map_err(store_error)?;
    for migration in MIGRATIONS {
        if applied.contains(&migration.version) {
            continue;
        }
        tracing::info!(
            schema,
            version = migration.version,
            name = migration.name,
            "applying migration"
        );
        (&mut *tx)
            .execute(sqlx::raw_sql(migration.sql))
            .await
            .map_err(|err| match store_error(err) {
                busy @ StoreError::Busy { .. } => busy,
                other => StoreError::Migration {
                    version: migration.version,
                    message: format!("{}: {other}", migration.name),
                },
            })?;
        sqlx::query("INSERT INTO stoker_migrations (version, name) VALUES ($1, $2)")
            .bind(migration.version)
            .bind(migration.name)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
    }
    tx.commit().await.map_err(store_error)
}

/// Whether every migration this build knows of is applied, given the statement listing the
/// applied versions. A missing schema or bookkeeping table means none is.
pub(crate) async fn current(pool: &PgPool, applied_sql: &str) -> StoreResult<bool> {
    let applied: Vec<i64> = match sqlx::query_scalar(applied_sql).fetch_all(pool).await {
        Ok(applied) => applied,
        // undefined_table, invalid_schema_name
        Err(err) if matches!(sqlstate(&err).as_deref(), Some("42P01" | "3F000")) => {
            return Ok(false)
        }
        Err(err) => return Err(store_error(err)),
    };
    Ok(MIGRATIONS
        .iter()
        .all(|migration| applied.contains(&migration.version)))
}

/// The advisory lock key for migrating `schema`: a stable 64-bit hash of the name, so every
/// process (whatever its build) agrees on it.
fn lock_key(schema: &str) -> i64 {
    // Reinterpreting the bits: any i64 is a fine key.
    crate::builder::fnv1a(format!("stoker.migrate.{schema}").as_bytes()) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_in_order() {
        // Strictly increasing from 1; streams developed in parallel own disjoint numbers, so
        // a branch may hold a gap until the others are merged.
        assert_eq!(MIGRATIONS[0].version, 1);
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version, "{}", pair[1].name);
        }
    }

    #[test]
    fn lock_keys_differ_per_schema() {
        assert_ne!(lock_key("public"), lock_key("other"));
        assert_eq!(lock_key("public"), lock_key("public"));
    }
}
