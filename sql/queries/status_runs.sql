-- The latest runs from the ledger.
SELECT run_id, command, status,
       to_char(started_at, 'YYYY-MM-DD HH24:MI:SS') AS started,
       round(extract(epoch FROM finished_at - started_at)::numeric, 1)::float8 AS seconds,
       coalesce(counts ->> 'rows_inserted', '') AS rows_inserted,
       coalesce(left(error, 120), '') AS error
FROM etl_runs
ORDER BY started_at DESC
LIMIT 10
