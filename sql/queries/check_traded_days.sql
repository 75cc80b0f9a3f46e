-- etl check: of the given weekdays beyond the holiday table, those on which an ETF
-- of each market has a stored row (its trading day: the calendar date in
-- Asia/Shanghai). An unknown weekday no ETF of an exchange traded on is a closure
-- of that exchange (etl/calendar.py). EXISTS stops at the first row: one short
-- range probe of the primary key (trade_date, symbol) per day and market, and none
-- at all on a day with no row.
-- $1 days (date[]), $2 market codes (text[]).
SELECT m.market_code, d.day
FROM unnest($1::date[]) AS d(day)
CROSS JOIN unnest($2::text[]) AS m(market_code)
WHERE EXISTS (
    SELECT 1
    FROM stock_daily_data AS r
    JOIN stock_info AS i ON i.symbol = r.symbol
    WHERE r.trade_date >= d.day - interval '8 hours'
      AND r.trade_date < d.day + interval '16 hours'
      AND i.is_etf = 'Y'
      AND i.market_code = m.market_code
)
ORDER BY m.market_code, d.day
