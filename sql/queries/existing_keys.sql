-- Stored trading days for the anti-join: per symbol of the batch, only within
-- that symbol's own first and last day, through idx_symbol_date. The windows
-- come as three parallel array parameters ($1 symbols, $2 first days, $3 last
-- days): one round trip, no staging table to create per part. The trading day
-- of a stored row is its date in Asia/Shanghai: the existing system's code
-- writes +08:00-aware values into the naive column, which a UTC session stores
-- at 16:00 of the day before.
-- One index range scan per window: the LATERAL subquery with OFFSET 0, which the
-- planner cannot flatten into a join. As a join, on a table not yet analyzed (a
-- backfill, a replay into a new database) it hashes the windows and reads the
-- whole table, a parallel scan of millions of rows for every part.
SELECT w.symbol, (d.trade_date + INTERVAL '8 hours')::date AS day
FROM unnest($1::text[], $2::date[], $3::date[]) AS w(symbol, first_day, last_day)
CROSS JOIN LATERAL (
    SELECT q.trade_date
    FROM stock_daily_data AS q
    WHERE q.symbol = w.symbol
      AND q.trade_date >= w.first_day - INTERVAL '8 hours'
      AND q.trade_date < w.last_day + INTERVAL '16 hours'
    OFFSET 0
) AS d
