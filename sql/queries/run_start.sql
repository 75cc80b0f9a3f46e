-- A run's row in the ledger, written when it starts.
INSERT INTO etl_runs (run_id, command, started_at, status, snapshot, host, pid)
VALUES ($1, $2, now(), 'running', $3, $4, $5)
