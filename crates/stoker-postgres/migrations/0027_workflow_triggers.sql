-- Stoker's PostgreSQL schema, version 27: the workflow triggers watch `finished_at`, as the
-- batch and on_finish triggers do since version 26 and SQLite's always have (issue 20).
--
-- A row trigger's WHEN is set up (read back from its stored text and planned) in every
-- statement that writes a column the trigger watches, before the first row is tested. Both
-- triggers below watched `state`, which every claim writes, so every claim of every queue paid
-- for two conditions that only a finishing job can meet. Every statement that moves a job into
-- or out of a finished state writes `finished_at`, and no claim does, so the conditions are now
-- set up only where a job can be finishing. The conditions and functions are unchanged.

DROP TRIGGER stoker_jobs_resolve_deps ON stoker_jobs;

CREATE TRIGGER stoker_jobs_resolve_deps
AFTER UPDATE OF finished_at ON stoker_jobs
FOR EACH ROW
WHEN (NEW.has_dependents
      AND NEW.state IN ('completed', 'discarded', 'cancelled')
      AND OLD.state IS DISTINCT FROM NEW.state)
EXECUTE FUNCTION stoker_jobs_resolve_deps();

DROP TRIGGER stoker_jobs_resolve_child ON stoker_jobs;

CREATE TRIGGER stoker_jobs_resolve_child
AFTER UPDATE OF finished_at ON stoker_jobs
FOR EACH ROW
WHEN (NEW.await_policy IS NOT NULL
      AND NEW.state IN ('completed', 'discarded', 'cancelled')
      AND OLD.state IS DISTINCT FROM NEW.state
      AND (NEW.state = 'completed' OR NEW.await_policy <> 'hold'))
EXECUTE FUNCTION stoker_jobs_resolve_child();
