-- Trading days an active ETF misses behind its own watermark: it has a stored row
-- before the day and one after it, none on it. Another writer (the existing
-- system) that stores a later day moves the watermark past a day our run missed;
-- the nightly asks such a day again (etl/plan.py). $1, $2, $3 (text[], date[],
-- boolean[], in step) list the (market, day, recent) triples to look at: the days
-- the calendar does not rule out, recent among the last few (looked at for an ETF no run
-- of ours has asked yet). An ETF is looked at only after the day a run of ours
-- last asked it up to (etl_etf_days): a hole up to there is a suspension.
-- traded says whether any ETF of the market has a row on the day: proof that
-- it was a trading day. A row's trading day is its date in Asia/Shanghai (see
-- existing_keys.sql). Each probe goes through an index (idx_symbol_date, or the
-- primary key for a whole day), never one query per symbol. Per hole, prev_date
-- and prev_close are the last stored row before it, for the change of the row
-- that fills it.
WITH asked AS MATERIALIZED (
    SELECT a.market_code, a.day, a.recent, EXISTS (
               SELECT 1 FROM stock_daily_data AS t
               WHERE t.trade_date >= a.day - interval '8 hours'
                 AND t.trade_date < a.day + interval '16 hours'
                 AND t.market_code = a.market_code) AS traded
    FROM unnest($1::text[], $2::date[], $3::boolean[]) AS a(market_code, day, recent)
),
holes AS (
    SELECT i.symbol, i.market_code, a.day, a.traded
    FROM asked AS a
    JOIN stock_info AS i
      ON i.market_code = a.market_code AND i.is_etf = 'Y' AND i.is_active = 'Y'
    LEFT JOIN etl_etf_days AS c ON c.symbol = i.symbol
    WHERE (a.day > c.complete_through OR (c.complete_through IS NULL AND a.recent))
      AND EXISTS (
              SELECT 1 FROM stock_daily_data AS d
              WHERE d.symbol = i.symbol AND d.trade_date >= a.day + interval '16 hours')
      AND EXISTS (
              SELECT 1 FROM stock_daily_data AS d
              WHERE d.symbol = i.symbol AND d.trade_date < a.day - interval '8 hours')
      AND NOT EXISTS (
              SELECT 1 FROM stock_daily_data AS d
              WHERE d.symbol = i.symbol
                AND d.trade_date >= a.day - interval '8 hours'
                AND d.trade_date < a.day + interval '16 hours')
)
SELECT h.symbol::text,
       h.market_code::text,
       h.day::text,
       h.traded,
       date_trunc('day', p.trade_date + interval '8 hours')::text AS prev_date,
       p.close_price::text AS prev_close
FROM holes AS h
CROSS JOIN LATERAL (
    SELECT d.trade_date, d.close_price
    FROM stock_daily_data AS d
    WHERE d.symbol = h.symbol AND d.trade_date < h.day - interval '8 hours'
    ORDER BY d.trade_date DESC
    LIMIT 1
) AS p
ORDER BY h.symbol, h.day
