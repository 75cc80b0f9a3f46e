-- ETFs per market: how many active and inactive, the latest trading day stored,
-- and how many active ETFs are behind that day. last_sync_date is read as a
-- trading day (its calendar date in Asia/Shanghai): the existing system's code
-- stores it at 16:00 of the day before from a UTC session.
WITH etf AS (
    SELECT market_code, is_active,
           date_trunc('day', last_sync_date + interval '8 hours') AS last_day
    FROM stock_info
    WHERE is_etf = 'Y'
), latest AS (
    SELECT market_code, max(last_day) AS latest_trade_date FROM etf GROUP BY market_code
)
SELECT e.market_code,
       count(*) FILTER (WHERE e.is_active = 'Y')::bigint AS active,
       count(*) FILTER (WHERE e.is_active = 'N') AS inactive,
       l.latest_trade_date::date AS latest_trade_date,
       count(*) FILTER (WHERE e.is_active = 'Y'
                        AND (e.last_day IS NULL OR e.last_day < l.latest_trade_date)) AS behind
FROM etf AS e
JOIN latest AS l USING (market_code)
GROUP BY e.market_code, l.latest_trade_date
ORDER BY e.market_code
