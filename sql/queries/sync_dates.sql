-- Bookkeeping in the same transaction as the batch: the latest stored trading day
-- per symbol, and when the symbol was first fetched. Untouched when unchanged.
-- etl_stage_sync holds the batch's symbols with their latest trade date (midnight).
-- last_sync_date is kept as a trading day at midnight: a value another writer left
-- at 16:00 of the day before (a +08:00 value through a UTC session) counts as the
-- next day, as every other trading-day comparison of the tool does.
UPDATE stock_info AS i
SET last_sync_date = GREATEST(date_trunc('day', i.last_sync_date + interval '8 hours'), s.max_date),
    first_fetch_time = COALESCE(i.first_fetch_time, LOCALTIMESTAMP),
    updated_at = LOCALTIMESTAMP
FROM etl_stage_sync AS s
WHERE i.symbol = s.symbol
  AND (i.last_sync_date IS NULL
       OR date_trunc('day', i.last_sync_date + interval '8 hours') < s.max_date
       OR i.first_fetch_time IS NULL)
