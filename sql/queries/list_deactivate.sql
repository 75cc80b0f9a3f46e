-- ETFs missing from a list fetched in full are retired, never deleted.
-- The is_etf filter keeps stock rows out of reach whatever is staged.
UPDATE stock_info AS i
SET is_active = 'N', updated_at = LOCALTIMESTAMP
FROM etl_stage_list AS s
WHERE s.action = 'deactivate'
  AND i.symbol = s.symbol
  AND i.is_etf = 'Y'
  AND i.is_active = 'Y'
