-- A run asked these ETFs up to these days: $1 the symbols (text[]), $2 their days
-- (date[], in the same order), $3 the run. A day never moves back: a later --end-date run
-- keeps it. With it goes each ETF's latest stored trading day right now (its
-- watermark, one index probe per symbol), so a later run can tell a suspension
-- from rows gone since (see 0010_etf_days_watermark.sql).
INSERT INTO etl_etf_days (symbol, complete_through, watermark, run_id, updated_at)
SELECT x.symbol, x.day, last.day, $3, now()
FROM unnest($1::text[], $2::date[]) AS x(symbol, day)
LEFT JOIN LATERAL (
    SELECT (d.trade_date + interval '8 hours')::date AS day
    FROM stock_daily_data AS d
    WHERE d.symbol = x.symbol
    ORDER BY d.trade_date DESC
    LIMIT 1
) AS last ON TRUE
ON CONFLICT (symbol) DO UPDATE
SET complete_through = EXCLUDED.complete_through,
    watermark = EXCLUDED.watermark,
    run_id = EXCLUDED.run_id,
    updated_at = EXCLUDED.updated_at
WHERE etl_etf_days.complete_through <= EXCLUDED.complete_through
