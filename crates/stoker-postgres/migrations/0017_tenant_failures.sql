-- Stoker's PostgreSQL schema, version 17: failure groups per tenant (issue 17).
--
-- A failed job of a tenant joins a group of its tenant's own: the tenant is part of the
-- fingerprint (a job without a tenant keeps the fingerprint it always had), and the group's
-- row says whose it is, so a tenant lists its own groups through this index and never
-- another tenant's. A nullable column: adding it rewrites nothing. Groups recorded before
-- this version have no tenant: they stay visible to clients spanning every tenant only.
ALTER TABLE stoker_failure_groups ADD COLUMN tenant text;

CREATE INDEX stoker_failure_groups_tenant_idx ON stoker_failure_groups (tenant, last_seen)
    WHERE tenant IS NOT NULL;
