-- etl check: every ETF with its name (which gives its daily limit), market, state,
-- listing dates and its first and last stored trading day (the calendar date in
-- Asia/Shanghai), two index probes per ETF
-- through idx_symbol_date. All ETFs, not only the chosen ones: an exchange's latest
-- stored trading day is the latest day any of its ETFs has.
SELECT i.symbol,
       i.stock_name,
       i.market_code,
       i.is_active,
       i.list_date::date AS list_date,
       i.delist_date::date AS delist_date,
       (first.trade_date + interval '8 hours')::date AS first_day,
       (last.trade_date + interval '8 hours')::date AS last_day
FROM stock_info AS i
LEFT JOIN LATERAL (
    SELECT min(d.trade_date) AS trade_date FROM stock_daily_data AS d WHERE d.symbol = i.symbol
) AS first ON TRUE
LEFT JOIN LATERAL (
    SELECT max(d.trade_date) AS trade_date FROM stock_daily_data AS d WHERE d.symbol = i.symbol
) AS last ON TRUE
WHERE i.is_etf = 'Y'
ORDER BY i.symbol
