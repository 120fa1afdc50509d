-- Stoker's PostgreSQL schema, version 26: the batch and on_finish row triggers cost a drain
-- that uses neither about nothing (issue 20, stream perf).
--
-- A row trigger's WHEN is cheap to evaluate but not to set up: PostgreSQL reads the condition
-- back from its stored text and plans it afresh in every statement that reaches it, before the
-- first row is tested. Counted with callgrind in a single-user backend (100 claims of 50 and
-- their acknowledgements), the two triggers of versions 19 and 20 cost 2.75% of the drain's
-- instructions for jobs that carry neither a batch nor a callback, nearly all of it that
-- set-up (the text of the three finished states, once per WHEN, is most of it).
--
-- So both triggers now watch `finished_at` instead of `state`. Every statement that moves a job
-- into a finished state or out of one writes `finished_at` (it is set on the way in and cleared
-- on the way out), and a claim never does, so a claim no longer sets up either condition. And
-- the batch trigger's condition no longer names the states: its function moves each counter by
-- the difference between the old and the new state, which is nothing for a change between two
-- unfinished states, so it may run for any change of a member's state. It still runs only for
-- batch members (a test of one column), and for them only where a statement writes
-- `finished_at`: acknowledgements, cancels, retries. The functions are unchanged. Measured the
-- same way, the two triggers now cost 0.95% of that drain.
--
-- What changes for SQL written by hand: an UPDATE that moves a job into or out of a finished
-- state fires these triggers only if it also sets `finished_at`, as Stoker's own statements
-- (and SQLite's triggers, which watch the same column) always did.

DROP TRIGGER stoker_jobs_batch_count ON stoker_jobs;

CREATE TRIGGER stoker_jobs_batch_count
AFTER UPDATE OF finished_at ON stoker_jobs
FOR EACH ROW
WHEN (NEW.batch_id IS NOT NULL AND OLD.state IS DISTINCT FROM NEW.state)
EXECUTE FUNCTION stoker_jobs_batch_count();

DROP TRIGGER stoker_jobs_on_finish ON stoker_jobs;

CREATE TRIGGER stoker_jobs_on_finish
AFTER UPDATE OF finished_at ON stoker_jobs
FOR EACH ROW
WHEN (NEW.metadata ? 'on_finish'
      AND NEW.state IN ('completed', 'discarded', 'cancelled')
      AND OLD.state IS DISTINCT FROM NEW.state)
EXECUTE FUNCTION stoker_jobs_on_finish();
