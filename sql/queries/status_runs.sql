-- The latest runs from the ledger, typed: timestamps, numbers, NULL where nothing is known.
-- A run still 'running' whose process holds no sync lock any more (killed,
-- machine lost) shows as 'dead': the next sync completes its work. $1 is the
-- sync lock's advisory key (etl.ledger.SYNC_LOCK_KEY); pg_locks shows a bigint key
-- as its high (classid) and low (objid) 32 bits.
SELECT run_id, command,
       CASE
           WHEN status = 'running' AND NOT EXISTS (
               SELECT 1
               FROM pg_locks
               WHERE locktype = 'advisory' AND granted AND objsubid = 1
                 AND (classid::bigint << 32) + objid::bigint = $1::bigint
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
           ) THEN 'dead'
           ELSE status
       END AS status,
       started_at AS started,
       round(extract(epoch FROM finished_at - started_at)::numeric, 1)::float8 AS seconds,
       (counts ->> 'rows_inserted')::bigint AS rows_inserted,
       nullif(left(error, 120), '') AS error
FROM etl_runs
ORDER BY started_at DESC
LIMIT 10
