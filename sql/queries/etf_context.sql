-- Per ETF: its name, whether its history is known complete, and the last stored
-- row before a bound (the watermark of an incremental run, or the close before
-- --start-date with --full), for the first price_change of the fetch. One index
-- probe per symbol through idx_symbol_date; never one query per symbol.
-- A row's trading day is its calendar date in Asia/Shanghai: rows written from a
-- UTC session through a +08:00 value sit at 16:00 of the day before. "Trading
-- day before D" is therefore trade_date < D - 8 hours, which keeps the index.
-- prev_date is that trading day at midnight, whatever the stored clock time.
-- {before} is a fixed SQL expression chosen by the caller: 'infinity' or a date.
-- asked_through: the day a run of ours last asked it up to (etl_etf_days), while
-- its watermark is still the one that run left: the days between had no row at
-- the source (suspended), so the ETF is not behind.
SELECT i.symbol,
       i.stock_name,
       i.market_code,
       i.stock_code,
       i.is_active,
       h.symbol IS NOT NULL AS history_complete,
       date_trunc('day', last.trade_date + interval '8 hours') AS prev_date,
       last.close_price AS prev_close,
       CASE WHEN asked.watermark = (last.trade_date + interval '8 hours')::date
            THEN asked.complete_through END AS asked_through
FROM stock_info AS i
LEFT JOIN etl_etf_history AS h ON h.symbol = i.symbol
LEFT JOIN etl_etf_days AS asked ON asked.symbol = i.symbol
LEFT JOIN LATERAL (
    SELECT d.trade_date, d.close_price
    FROM stock_daily_data AS d
    WHERE d.symbol = i.symbol
      AND d.trade_date < {before} - interval '8 hours'
    ORDER BY d.trade_date DESC
    LIMIT 1
) AS last ON TRUE
WHERE i.is_etf = 'Y'
ORDER BY i.symbol
