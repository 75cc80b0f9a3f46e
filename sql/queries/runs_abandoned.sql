-- Runs still 'running' while we hold the sync lock ended without finishing
-- (killed, machine lost): say so rather than leave them running forever.
UPDATE etl_runs
SET status = 'failed', finished_at = now(),
    error = 'ended without finishing (process killed or connection lost); a new sync completes its work'
WHERE status = 'running' AND run_id <> $1
