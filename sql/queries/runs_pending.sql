-- Price runs that ended without finishing (killed, connection lost, database
-- gone) since the last price run that finished: their snapshots may hold
-- answers not loaded yet. $1 is the run asking, which holds the sync lock.
SELECT run_id, snapshot
FROM etl_runs
WHERE command IN ('sync', 'sync-prices')
  AND status NOT IN ('ok', 'partial')
  AND run_id <> $1
  AND snapshot IS NOT NULL
  AND started_at > COALESCE(
      (SELECT max(started_at)
       FROM etl_runs
       WHERE command IN ('sync', 'sync-prices') AND status IN ('ok', 'partial')),
      '-infinity')
ORDER BY started_at
