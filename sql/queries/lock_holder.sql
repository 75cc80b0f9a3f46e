-- The newest unfinished run: who holds the sync lock, for the message to the second one.
SELECT run_id, command, to_char(started_at, 'YYYY-MM-DD HH24:MI:SS TZ'), host, pid
FROM etl_runs
WHERE status = 'running'
ORDER BY started_at DESC
LIMIT 1
