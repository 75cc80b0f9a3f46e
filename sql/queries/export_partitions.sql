-- One row per export partition (exchange, year of the trading day) of the ETF daily
-- rows, with a fingerprint of its content: a partition is written again only when
-- one of these figures changed.
SELECT d.market_code,
       extract(year FROM d.trade_date + interval '8 hours')::integer AS year,
       count(*)::bigint AS rows,
       coalesce(max(d.created_at)::text, '') AS max_created_at,
       coalesce(max(d.updated_at)::text, '') AS max_updated_at,
       coalesce(sum(d.close_price)::text, '') AS sum_close,
       coalesce(sum(d.volume)::text, '') AS sum_volume
FROM stock_daily_data AS d
JOIN stock_info AS i USING (symbol)
WHERE i.is_etf = 'Y'
GROUP BY 1, 2
ORDER BY 1, 2
