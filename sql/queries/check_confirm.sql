-- Findings the source confirmed during a repair (etl_stage_confirmed), into
-- etl_check_confirmed. A range starting on the same day for the same finding
-- keeps the longer end.
INSERT INTO etl_check_confirmed (symbol, finding, first_day, last_day, confirmed_at)
SELECT symbol, finding, first_day, last_day, confirmed_at
FROM etl_stage_confirmed
ON CONFLICT (symbol, finding, first_day) DO UPDATE
SET last_day = greatest(etl_check_confirmed.last_day, EXCLUDED.last_day),
    confirmed_at = EXCLUDED.confirmed_at
