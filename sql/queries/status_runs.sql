-- The latest runs from the ledger, typed: timestamps, numbers, NULL where nothing is known.
SELECT run_id, command, status,
       started_at AS started,
       round(extract(epoch FROM finished_at - started_at)::numeric, 1)::float8 AS seconds,
       (counts ->> 'rows_inserted')::bigint AS rows_inserted,
       nullif(left(error, 120), '') AS error
FROM etl_runs
ORDER BY started_at DESC
LIMIT 10
