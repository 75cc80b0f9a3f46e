-- --overwrite: correct stored rows whose source fields (open, high, low, close,
-- volume) differ from what was fetched. A stored row is matched by trading day
-- (its calendar date in Asia/Shanghai), so a row another writer left at 16:00 of
-- the day before is corrected in place and keeps its timestamp and name.
-- Derived columns follow the source: turnover and the change are recomputed for
-- a row whose source fields changed, and the change of the next row when the
-- close it refers to changed. Nothing else is touched, so rows that differ only
-- in how another writer rounded turnover, or left the change empty, stay as they are.
WITH s AS (
    SELECT symbol,
           trade_date,
           lag(trade_date) OVER (PARTITION BY symbol ORDER BY trade_date) AS prev_day,
           open_price::NUMERIC(10, 4) AS open_price,
           high_price::NUMERIC(10, 4) AS high_price,
           low_price::NUMERIC(10, 4) AS low_price,
           close_price::NUMERIC(10, 4) AS close_price,
           volume::BIGINT AS volume,
           turnover::NUMERIC(20, 2) AS turnover,
           price_change::NUMERIC(10, 4) AS price_change,
           price_change_pct::NUMERIC(8, 4) AS price_change_pct
    FROM etl_stage_daily
), pair AS (
    SELECT s.*,
           t.trade_date AS stored_date,
           (t.open_price, t.high_price, t.low_price, t.close_price, t.volume)
               IS DISTINCT FROM
               (s.open_price, s.high_price, s.low_price, s.close_price, s.volume) AS source_changed,
           t.close_price IS DISTINCT FROM s.close_price AS close_changed,
           (t.price_change, t.price_change_pct)
               IS DISTINCT FROM (s.price_change, s.price_change_pct) AS change_differs
    FROM s
    JOIN stock_daily_data AS t
      ON t.symbol = s.symbol
     AND t.trade_date >= s.trade_date - interval '8 hours'
     AND t.trade_date < s.trade_date + interval '16 hours'
), todo AS (
    SELECT p.*
    FROM pair AS p
    WHERE p.source_changed
       OR (p.change_differs
           AND EXISTS (SELECT 1 FROM pair AS q
                       WHERE q.symbol = p.symbol AND q.trade_date = p.prev_day AND q.close_changed))
)
UPDATE stock_daily_data AS t
SET open_price = CASE WHEN x.source_changed THEN x.open_price ELSE t.open_price END,
    high_price = CASE WHEN x.source_changed THEN x.high_price ELSE t.high_price END,
    low_price = CASE WHEN x.source_changed THEN x.low_price ELSE t.low_price END,
    close_price = CASE WHEN x.source_changed THEN x.close_price ELSE t.close_price END,
    volume = CASE WHEN x.source_changed THEN x.volume ELSE t.volume END,
    turnover = CASE WHEN x.source_changed THEN x.turnover ELSE t.turnover END,
    price_change = x.price_change,
    price_change_pct = x.price_change_pct,
    updated_at = LOCALTIMESTAMP
FROM todo AS x
WHERE t.symbol = x.symbol
  AND t.trade_date = x.stored_date
