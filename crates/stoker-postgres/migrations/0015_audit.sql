-- Stoker's PostgreSQL schema, version 15: the audit log (issue 17, item 3).
--
-- One row per management action (cancel, retry, delete, pause, bulk operation, schedule and
-- token changes...), by whom (`actor`, the stored token's id if any), through which face
-- (`via`: api, dashboard, cli or library), for which tenant, on what (`target`, or `filter`
-- for a bulk action) and how many jobs it affected, from which address. Append-only: the code
-- has no UPDATE path, and rows leave only by age (`audit_prune`).
CREATE TABLE stoker_audit (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL,
    actor text NOT NULL,
    token_id text,
    via text NOT NULL,
    tenant text,
    action text NOT NULL,
    target text,
    filter jsonb,
    affected bigint,
    source text
);
-- Pruning by age, and the time filters.
CREATE INDEX stoker_audit_at_idx ON stoker_audit (at);
-- A tenant's own log, newest first.
CREATE INDEX stoker_audit_tenant_idx ON stoker_audit (tenant, id);
