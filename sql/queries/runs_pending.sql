-- Price runs that ended without finishing (killed, connection lost, database
-- gone) since the last price run that finished: their snapshots may hold
-- answers not loaded yet. $1 is the run asking, which holds the sync lock.
-- A run whose snapshot an `etl replay` has since loaded into this database
-- (ok or partial) is done: the replay's own row names it (counts.replayed_run).
SELECT p.run_id, p.snapshot
FROM etl_runs AS p
WHERE p.command IN ('sync', 'sync-prices')
  AND p.status NOT IN ('ok', 'partial')
  AND p.run_id <> $1
  AND p.snapshot IS NOT NULL
  AND p.started_at > COALESCE(
      (SELECT max(started_at)
       FROM etl_runs
       WHERE command IN ('sync', 'sync-prices') AND status IN ('ok', 'partial')),
      '-infinity')
  AND NOT EXISTS (
      SELECT 1
      FROM etl_runs AS r
      WHERE r.command = 'replay'
        AND r.status IN ('ok', 'partial')
        AND r.counts ->> 'replayed_run' = p.run_id)
ORDER BY p.started_at
