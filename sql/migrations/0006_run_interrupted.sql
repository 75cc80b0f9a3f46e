-- A run stopped by SIGINT or SIGTERM loads what had arrived and is recorded as
-- 'interrupted': neither failed nor finished. The constraint is the one 0004
-- declared inline (PostgreSQL names it etl_runs_status_check); it is replaced
-- only where it does not allow the new status yet, so a rerun changes nothing.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1
        FROM pg_constraint
        WHERE conrelid = 'etl_runs'::regclass
          AND conname = 'etl_runs_status_check'
          AND pg_get_constraintdef(oid) LIKE '%interrupted%'
    ) THEN
        ALTER TABLE etl_runs DROP CONSTRAINT IF EXISTS etl_runs_status_check;
        ALTER TABLE etl_runs ADD CONSTRAINT etl_runs_status_check
            CHECK (status IN ('running', 'ok', 'partial', 'failed', 'interrupted'));
    END IF;
END
$$;
