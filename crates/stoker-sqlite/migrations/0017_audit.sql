-- Stoker's SQLite schema, version 17: the audit log (issue 17, item 3).
--
-- One row per management action (cancel, retry, delete, pause, bulk operation, schedule and
-- token changes...), by whom (`actor`, the stored token's id if any), through which face
-- (`via`: api, dashboard, cli or library), for which tenant, on what (`target`, or `filter`,
-- JSON, for a bulk action) and how many jobs it affected, from which address. Times are
-- microseconds since the epoch, as elsewhere. Append-only: the code has no UPDATE path, and
-- rows leave only by age (`audit_prune`).
CREATE TABLE stoker_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    token_id TEXT,
    via TEXT NOT NULL,
    tenant TEXT,
    action TEXT NOT NULL,
    target TEXT,
    filter TEXT,
    affected INTEGER,
    source TEXT
);
CREATE INDEX stoker_audit_at_idx ON stoker_audit (at);
CREATE INDEX stoker_audit_tenant_idx ON stoker_audit (tenant, id);
