-- Per active ETF: its name, and the last stored row before a bound (the
-- watermark of an incremental run, or the close before --start-date with
-- --full), for the first price_change of the fetch. One index probe per
-- symbol through idx_symbol_date; never one query per symbol.
-- {before} is a fixed SQL expression chosen by the caller: 'infinity' or a date.
SELECT i.symbol,
       i.stock_name,
       i.market_code,
       i.stock_code,
       i.is_active,
       last.trade_date AS prev_date,
       last.close_price AS prev_close
FROM stock_info AS i
LEFT JOIN LATERAL (
    SELECT d.trade_date, d.close_price
    FROM stock_daily_data AS d
    WHERE d.symbol = i.symbol
      AND d.trade_date < {before}
    ORDER BY d.trade_date DESC
    LIMIT 1
) AS last ON TRUE
WHERE i.is_etf = 'Y'
ORDER BY i.symbol
