-- Detected actions estimated again (etl_stage_reestimate: symbol, ex_date, ratio,
-- the new estimate of etl/corporate.py, or NULL where the jump is gone): gone ones
-- are dropped, the others take the new estimate. Official ratios are never touched.
WITH dropped AS (
    DELETE FROM etl_corporate_actions AS a
    USING etl_stage_reestimate AS s
    WHERE a.symbol = s.symbol AND a.ex_date = s.ex_date
      AND a.source = 'detected' AND s.ratio IS NULL
    RETURNING a.symbol
)
UPDATE etl_corporate_actions AS a
SET ratio = s.ratio::numeric,
    detected_ratio = s.ratio::numeric,
    recorded_at = now()
FROM etl_stage_reestimate AS s
WHERE a.symbol = s.symbol AND a.ex_date = s.ex_date
  AND a.source = 'detected' AND s.ratio IS NOT NULL
