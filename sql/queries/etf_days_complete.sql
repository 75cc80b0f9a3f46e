-- A run asked these ETFs up to these days: $1 is 'SH.510050:2024-04-01,...'
-- (symbols checked against the symbol pattern and ISO dates, written by
-- etl/history.py), $2 the run. A day never moves back: a later --end-date run
-- keeps it.
INSERT INTO etl_etf_days (symbol, complete_through, run_id, updated_at)
SELECT split_part(x, ':', 1), split_part(x, ':', 2)::date, $2, now()
FROM unnest(string_to_array($1, ',')) AS x
ON CONFLICT (symbol) DO UPDATE
SET complete_through = EXCLUDED.complete_through,
    run_id = EXCLUDED.run_id,
    updated_at = EXCLUDED.updated_at
WHERE etl_etf_days.complete_through < EXCLUDED.complete_through
