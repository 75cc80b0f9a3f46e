-- What `etl record-action` needs before it writes: the symbol's ETF marker and
-- its stored row on the ex-date ($2, a trading day: rows of the existing system
-- sit at 16:00 of the day before), with the action recorded for that day.
SELECT i.is_etf,
       d.trade_date,
       d.close_price::text,
       d.price_change::text,
       d.price_change_pct::text,
       a.ratio::text,
       a.source,
       a.detected_ratio::text,
       a.note
FROM stock_info AS i
LEFT JOIN stock_daily_data AS d
       ON d.symbol = i.symbol
      AND d.trade_date >= $2::date - interval '8 hours'
      AND d.trade_date < $2::date + interval '16 hours'
LEFT JOIN etl_corporate_actions AS a
       ON a.symbol = i.symbol AND a.ex_date = $2::date
WHERE i.symbol = $1
