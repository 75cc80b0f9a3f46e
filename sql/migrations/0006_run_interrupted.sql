-- A run stopped by SIGINT or SIGTERM loads what had arrived and is recorded as
-- 'interrupted': neither failed nor finished. The constraint is the one 0004
-- declared inline (PostgreSQL names it etl_runs_status_check).
ALTER TABLE etl_runs DROP CONSTRAINT IF EXISTS etl_runs_status_check;
ALTER TABLE etl_runs ADD CONSTRAINT etl_runs_status_check
    CHECK (status IN ('running', 'ok', 'partial', 'failed', 'interrupted'));
