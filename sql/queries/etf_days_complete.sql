-- A run asked these ETFs up to these days: $1 the symbols (text[]), $2 their days
-- (date[], in the same order), $3 the run. A day never moves back: a later --end-date run
-- keeps it.
INSERT INTO etl_etf_days (symbol, complete_through, run_id, updated_at)
SELECT x.symbol, x.day, $3, now()
FROM unnest($1::text[], $2::date[]) AS x(symbol, day)
ON CONFLICT (symbol) DO UPDATE
SET complete_through = EXCLUDED.complete_through,
    run_id = EXCLUDED.run_id,
    updated_at = EXCLUDED.updated_at
WHERE etl_etf_days.complete_through < EXCLUDED.complete_through
