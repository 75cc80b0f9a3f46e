-- etl check: the stored rows of the chosen ETFs that may be a finding, in one pass.
-- Per ETF (LATERAL), its rows come in trade_date order from idx_symbol_date, so the
-- window sorts nothing (a window partitioned by symbol over all ETFs sorted millions
-- of rows on disk). A row comes back when
--   * the gap to the ETF's previous stored row could hold a trading day (anything
--     but one day, or three days from a Friday to a Monday): etl/check.py counts
--     the trading days in it against the calendar;
--   * its volume is 0 (streaks are found in Python, by prev_ts);
--   * its OHLC is inconsistent: a null open/high/low, high below open, close or
--     low, low above open or close, a price <= 0;
--   * its trade_date is not at midnight, or is one of the closed days passed in
--     (weekends and known holidays, at midnight);
--   * its open lies outside [floor, ceiling] x the previous stored close
--     (etl/corporate.py's CANDIDATE_FLOOR / CANDIDATE_CEILING, the narrowest
--     daily limit, passed in): etl/corporate.py decides whether it is an ex-date.
-- $1 symbols (text[]), $2 closed days (timestamp[]), $3 floor, $4 ceiling. They are
-- read once from a materialized CTE: a cast of a parameter would run per row.
WITH params AS MATERIALIZED (
    SELECT $1::text[] AS symbols, $2::timestamp[] AS closed,
           $3::numeric AS floor, $4::numeric AS ceiling
), chosen AS MATERIALIZED (
    SELECT DISTINCT unnest(symbols) AS symbol FROM params
), closed AS MATERIALIZED (
    SELECT unnest(closed) AS ts FROM params
)
SELECT c.symbol,
       r.trade_date,
       r.prev_ts,
       r.prev_close::text AS prev_close,
       r.open_price::text AS open_price,
       r.high_price::text AS high_price,
       r.low_price::text AS low_price,
       r.volume = 0 AS zero_volume,
       r.bad_ohlc
FROM chosen AS c
CROSS JOIN params AS p
CROSS JOIN LATERAL (
    SELECT d.trade_date, d.open_price, d.high_price, d.low_price, d.volume,
           lag(d.trade_date) OVER w AS prev_ts,
           lag(d.close_price) OVER w AS prev_close,
           -- low <= open, close <= high in a consistent row, so low <= 0 covers them all
           (d.open_price IS NULL OR d.high_price IS NULL OR d.low_price IS NULL
            OR d.high_price < greatest(d.open_price, d.close_price, d.low_price)
            OR d.low_price > least(d.open_price, d.close_price)
            OR d.low_price <= 0) AS bad_ohlc,
           d.trade_date IN (SELECT ts FROM closed) AS on_closed_day
    FROM stock_daily_data AS d
    WHERE d.symbol = c.symbol
    WINDOW w AS (ORDER BY d.trade_date)
) AS r
WHERE r.volume = 0 OR r.bad_ohlc OR r.on_closed_day
   OR (r.trade_date - r.prev_ts <> interval '1 day'
       AND (r.trade_date - r.prev_ts <> interval '3 days'
            OR extract(isodow FROM r.trade_date) <> 1))
   OR r.trade_date <> date_trunc('day', r.trade_date)
   OR r.open_price < p.floor * r.prev_close
   OR r.open_price > p.ceiling * r.prev_close
