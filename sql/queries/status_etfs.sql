-- ETFs per market: how many active and inactive, the latest trade date stored,
-- and how many active ETFs are behind that date.
WITH etf AS (
    SELECT market_code, is_active, last_sync_date FROM stock_info WHERE is_etf = 'Y'
), latest AS (
    SELECT market_code, max(last_sync_date) AS latest_trade_date FROM etf GROUP BY market_code
)
SELECT e.market_code,
       count(*) FILTER (WHERE e.is_active = 'Y')::bigint AS active,
       count(*) FILTER (WHERE e.is_active = 'N') AS inactive,
       l.latest_trade_date::date AS latest_trade_date,
       count(*) FILTER (WHERE e.is_active = 'Y'
                        AND (e.last_sync_date IS NULL OR e.last_sync_date < l.latest_trade_date)) AS behind
FROM etf AS e
JOIN latest AS l USING (market_code)
GROUP BY e.market_code, l.latest_trade_date
ORDER BY e.market_code
