-- The context of a repair (etl/repair.py): per ETF in etl_stage_repair (symbol,
-- first_day), its name and the last stored row before first_day, whose close the
-- change of the first day filled refers to. A row's trading day is its calendar
-- date in Asia/Shanghai, hence the 8 hours (see etf_context.sql).
SELECT i.symbol,
       i.stock_name,
       date_trunc('day', last.trade_date + interval '8 hours') AS prev_date,
       last.close_price::text AS prev_close
FROM etl_stage_repair AS r
JOIN stock_info AS i ON i.symbol = r.symbol
LEFT JOIN LATERAL (
    SELECT d.trade_date, d.close_price
    FROM stock_daily_data AS d
    WHERE d.symbol = r.symbol
      AND d.trade_date < r.first_day - interval '8 hours'
    ORDER BY d.trade_date DESC
    LIMIT 1
) AS last ON TRUE
ORDER BY i.symbol
