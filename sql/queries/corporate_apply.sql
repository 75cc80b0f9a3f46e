-- An ex-date row this transaction wrote got its change against the previous close
-- divided by the estimated ratio (etl_stage_actions.ratio). Where
-- etl_corporate_actions holds another ratio for that day (an official one,
-- recorded earlier), the change is recomputed from it, as etl/corporate.py
-- defines it: the previous close in new shares is round(previous close / ratio, 4).
-- Rows of this transaction are the ones whose updated_at is its LOCALTIMESTAMP
-- (inserted or overwritten); a part without actions never runs this.
UPDATE stock_daily_data AS t
SET price_change = x.change,
    price_change_pct = x.pct
FROM (
    SELECT d.symbol, d.trade_date, d.close_price - p.base AS change,
           CASE WHEN p.base > 0
                 AND abs(round((d.close_price - p.base) * 100 / p.base, 4)) < 10000
                THEN round((d.close_price - p.base) * 100 / p.base, 4) END AS pct
    FROM etl_stage_actions AS s
    JOIN etl_corporate_actions AS a ON a.symbol = s.symbol AND a.ex_date = s.ex_date
    JOIN stock_daily_data AS d
      ON d.symbol = s.symbol
     AND d.trade_date >= s.ex_date - interval '8 hours'
     AND d.trade_date < s.ex_date + interval '16 hours'
    CROSS JOIN LATERAL (
        SELECT round(q.close_price / a.ratio, 4) AS base
        FROM stock_daily_data AS q
        WHERE q.symbol = d.symbol AND q.trade_date < d.trade_date
        ORDER BY q.trade_date DESC
        LIMIT 1
    ) AS p
    WHERE a.ratio <> s.ratio
      AND d.updated_at = LOCALTIMESTAMP
) AS x
WHERE t.symbol = x.symbol
  AND t.trade_date = x.trade_date
  AND (t.price_change, t.price_change_pct) IS DISTINCT FROM (x.change, x.pct)
