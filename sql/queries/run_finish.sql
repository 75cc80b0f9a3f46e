-- A run's outcome. counts is the summary as JSON text.
UPDATE etl_runs
SET finished_at = now(), status = $2, counts = $3::jsonb, error = $4
WHERE run_id = $1
