-- The change of the stored row on each ex-date staged in etl_stage_recompute
-- (symbol, ex_date) from the ratio in etl_corporate_actions, as etl/corporate.py
-- defines it: against the previous stored close in new shares,
-- round(previous close / ratio, 4). Where no action is recorded for the day (one
-- just dropped) the change is the raw one again (ratio 1). A row with no stored
-- row before it keeps its values.
UPDATE stock_daily_data AS t
SET price_change = x.change,
    price_change_pct = x.pct,
    updated_at = LOCALTIMESTAMP
FROM (
    SELECT d.symbol, d.trade_date, d.close_price - p.base AS change,
           CASE WHEN p.base > 0
                 AND abs(round((d.close_price - p.base) * 100 / p.base, 4)) < 10000
                THEN round((d.close_price - p.base) * 100 / p.base, 4) END AS pct
    FROM etl_stage_recompute AS s
    LEFT JOIN etl_corporate_actions AS a ON a.symbol = s.symbol AND a.ex_date = s.ex_date
    JOIN stock_daily_data AS d
      ON d.symbol = s.symbol
     AND d.trade_date >= s.ex_date - interval '8 hours'
     AND d.trade_date < s.ex_date + interval '16 hours'
    CROSS JOIN LATERAL (
        SELECT round(q.close_price / coalesce(a.ratio, 1), 4) AS base
        FROM stock_daily_data AS q
        WHERE q.symbol = d.symbol AND q.trade_date < d.trade_date
        ORDER BY q.trade_date DESC
        LIMIT 1
    ) AS p
) AS x
WHERE t.symbol = x.symbol
  AND t.trade_date = x.trade_date
  AND (t.price_change, t.price_change_pct) IS DISTINCT FROM (x.change, x.pct)
