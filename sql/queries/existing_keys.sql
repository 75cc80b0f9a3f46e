-- Stored trading days for the anti-join: per symbol of the batch, only within
-- that symbol's own first and last day, through idx_symbol_date. The windows
-- come as three parallel array parameters ($1 symbols, $2 first days, $3 last
-- days): one round trip, no staging table to create per part. The trading day
-- of a stored row is its date in Asia/Shanghai: the existing system's code
-- writes +08:00-aware values into the naive column, which a UTC session stores
-- at 16:00 of the day before.
SELECT d.symbol::text AS symbol, (d.trade_date + INTERVAL '8 hours')::date AS day
FROM unnest($1::text[], $2::date[], $3::date[]) AS w(symbol, first_day, last_day)
JOIN stock_daily_data AS d
  ON d.symbol = w.symbol
 AND d.trade_date >= w.first_day - INTERVAL '8 hours'
 AND d.trade_date < w.last_day + INTERVAL '16 hours'
