-- Bookkeeping in the same transaction as the batch: the latest stored trade date
-- per symbol, and when the symbol was first fetched. Untouched when unchanged.
-- etl_stage_sync holds the batch's symbols with their latest trade date.
UPDATE stock_info AS i
SET last_sync_date = GREATEST(i.last_sync_date, s.max_date),
    first_fetch_time = COALESCE(i.first_fetch_time, LOCALTIMESTAMP),
    updated_at = LOCALTIMESTAMP
FROM etl_stage_sync AS s
WHERE i.symbol = s.symbol
  AND (i.last_sync_date IS NULL OR i.last_sync_date < s.max_date OR i.first_fetch_time IS NULL)
