-- Stored trading days for the anti-join: per symbol of the batch, only within
-- that symbol's own first and last day (etl_stage_windows: symbol, first_day,
-- last_day), through idx_symbol_date. The trading day of a stored row is its
-- date in Asia/Shanghai: the existing system's code writes +08:00-aware values
-- into the naive column, which a UTC session stores at 16:00 of the day before.
SELECT d.symbol::text AS symbol, (d.trade_date + INTERVAL '8 hours')::date AS day
FROM etl_stage_windows AS w
JOIN stock_daily_data AS d
  ON d.symbol = w.symbol
 AND d.trade_date >= w.first_day - INTERVAL '8 hours'
 AND d.trade_date < w.last_day + INTERVAL '16 hours'
