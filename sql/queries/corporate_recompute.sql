-- The change of the stored row on each ex-date staged in etl_stage_recompute
-- (symbol, ex_date) from the ratio in etl_corporate_actions: against the previous
-- stored close in new shares. The rule is etl_base_in_new_shares and etl_change_pct
-- (sql/migrations/0009), whose Python twin is etl/corporate.py. Where no action is
-- recorded for the day (one just dropped) the change is the raw one again (ratio
-- NULL). A row with no stored row before it keeps its values.
-- With $1 true (a load), only rows this transaction wrote (updated_at is its
-- LOCALTIMESTAMP): an ex-date whose recorded ratio (an official one, recorded
-- earlier) differs from the batch's estimate gets its change from the recorded
-- one, and a stored row of another writer the load skipped keeps what it has.
UPDATE stock_daily_data AS t
SET price_change = x.change,
    price_change_pct = x.pct,
    updated_at = LOCALTIMESTAMP
FROM (
    SELECT d.symbol, d.trade_date, d.close_price - p.base AS change,
           etl_change_pct(d.close_price, p.base) AS pct
    FROM etl_stage_recompute AS s
    LEFT JOIN etl_corporate_actions AS a ON a.symbol = s.symbol AND a.ex_date = s.ex_date
    JOIN stock_daily_data AS d
      ON d.symbol = s.symbol
     AND d.trade_date >= s.ex_date - interval '8 hours'
     AND d.trade_date < s.ex_date + interval '16 hours'
    CROSS JOIN LATERAL (
        SELECT etl_base_in_new_shares(q.close_price, a.ratio) AS base
        FROM stock_daily_data AS q
        WHERE q.symbol = d.symbol AND q.trade_date < d.trade_date
        ORDER BY q.trade_date DESC
        LIMIT 1
    ) AS p
    WHERE NOT $1::boolean OR d.updated_at = LOCALTIMESTAMP
) AS x
WHERE t.symbol = x.symbol
  AND t.trade_date = x.trade_date
  AND (t.price_change, t.price_change_pct) IS DISTINCT FROM (x.change, x.pct)
