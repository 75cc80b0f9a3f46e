-- price_change always refers to the previous stored trading day. When a batch
-- fills days before a symbol's watermark (a gap, with --full), the stored row
-- right after each filled stretch gains a nearer previous day: its change is
-- recomputed against that day's close. Only where it holds a change that no
-- longer matches: a change left empty by another writer stays empty.
-- etl_stage_sync holds the batch's symbols with their first and latest trade
-- date; it runs before sync_dates moves the watermark. Rows of this transaction
-- are the ones whose created_at is the transaction's LOCALTIMESTAMP. On an
-- ex-date (etl_corporate_actions) the previous close is taken in new shares. The
-- rule is etl_base_in_new_shares and etl_change_pct (sql/migrations/0009), whose
-- Python twin is etl/corporate.py: a pct beyond NUMERIC(8,4) is stored NULL.
UPDATE stock_daily_data AS t
SET price_change = x.change,
    price_change_pct = x.pct,
    updated_at = LOCALTIMESTAMP
FROM (
    SELECT w.symbol, w.trade_date, w.close_price - w.base AS change,
           etl_change_pct(w.close_price, w.base) AS pct
    FROM etl_stage_sync AS s
    JOIN stock_info AS i ON i.symbol = s.symbol
    CROSS JOIN LATERAL (
        SELECT d.symbol, d.trade_date, d.close_price, d.price_change,
               d.created_at,
               etl_base_in_new_shares(lag(d.close_price) OVER (ORDER BY d.trade_date), a.ratio)
                   AS base,
               lag(d.created_at) OVER (ORDER BY d.trade_date) AS prev_created
        FROM stock_daily_data AS d
        LEFT JOIN etl_corporate_actions AS a
               ON a.symbol = d.symbol AND a.ex_date = (d.trade_date + interval '8 hours')::date
        WHERE d.symbol = s.symbol
          AND d.trade_date >= s.min_date - interval '8 hours'
    ) AS w
    WHERE s.min_date <= date_trunc('day', i.last_sync_date + interval '8 hours')
      AND w.prev_created = LOCALTIMESTAMP
      AND w.created_at IS DISTINCT FROM LOCALTIMESTAMP
      AND w.price_change IS NOT NULL
) AS x
WHERE t.symbol = x.symbol
  AND t.trade_date = x.trade_date
  AND (t.price_change, t.price_change_pct) IS DISTINCT FROM (x.change, x.pct)
