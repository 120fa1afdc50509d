-- Stoker's SQLite schema, version 7: a fencing token that never repeats, and per-job backoff.
--
-- `fence` counts a job's claims: every claim adds one and nothing else changes it. Until now
-- the attempt number was the fencing token, but a snooze or a hand-back gives the attempt
-- back, so the next claim carried the same token as the one before it and a late
-- acknowledgement from the earlier holder was applied to the later claim. Acknowledgements,
-- progress reports and lease extensions now carry the fence instead. Existing jobs start at
-- 0: only its growth from here on matters.
--
-- `backoff` is a job's own retry backoff, given at enqueue, as JSON
-- (`{"base_seconds", "factor", "max_seconds", "jitter"}`), or null for its kind's.
--
-- Neither is in any index: a claim writes `fence` on the row it already rewrites.

ALTER TABLE stoker_jobs ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;
ALTER TABLE stoker_jobs ADD COLUMN backoff TEXT;
