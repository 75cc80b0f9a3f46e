-- ETFs per market: how many active and inactive, the latest trading day stored,
-- and how many active ETFs are behind that day. Read from the stored rows, as a
-- trading day (the calendar date in Asia/Shanghai): the existing system's code
-- writes rows at 16:00 of the day before from a UTC session, and its ETF path
-- never sets last_sync_date. One index probe per ETF through idx_symbol_date.
WITH etf AS (
    SELECT i.market_code, i.is_active,
           date_trunc('day', last.trade_date + interval '8 hours') AS last_day
    FROM stock_info AS i
    LEFT JOIN LATERAL (
        SELECT max(d.trade_date) AS trade_date
        FROM stock_daily_data AS d
        WHERE d.symbol = i.symbol
    ) AS last ON TRUE
    WHERE i.is_etf = 'Y'
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
