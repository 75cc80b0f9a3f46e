-- The detected actions a load may have moved the ground under: those of the batch's
-- symbols (etl_stage_sync: symbol, min_date, max_date) on or after the first day
-- the batch holds, whose previous stored row is not after its last day. With the
-- ex-date row and the stored row before it (its trading day, as etl/corporate.py
-- estimates again from them). An action with no stored row before it is left as
-- it is: nothing there to measure a jump against. Usually none: an index probe
-- per symbol.
SELECT a.symbol,
       a.ex_date,
       a.ratio::text AS ratio,
       i.stock_name,
       (p.trade_date + interval '8 hours')::date AS prev_day,
       p.close_price::text AS prev_close,
       d.open_price::text AS open_price,
       d.high_price::text AS high_price,
       d.low_price::text AS low_price
FROM etl_stage_sync AS s
JOIN etl_corporate_actions AS a
  ON a.symbol = s.symbol
 AND a.source = 'detected'
 AND a.ex_date >= (s.min_date + interval '8 hours')::date
JOIN stock_info AS i ON i.symbol = a.symbol
JOIN LATERAL (
    SELECT q.trade_date, q.open_price, q.high_price, q.low_price
    FROM stock_daily_data AS q
    WHERE q.symbol = a.symbol
      AND q.trade_date >= a.ex_date - interval '8 hours'
      AND q.trade_date < a.ex_date + interval '16 hours'
    LIMIT 1
) AS d ON TRUE
JOIN LATERAL (
    SELECT q.trade_date, q.close_price
    FROM stock_daily_data AS q
    WHERE q.symbol = a.symbol AND q.trade_date < d.trade_date
    ORDER BY q.trade_date DESC
    LIMIT 1
) AS p ON TRUE
WHERE p.trade_date < s.max_date + interval '16 hours'
