-- Ledger of ETL runs: one row per sync/replay, inserted as 'running' at the start and
-- closed with its outcome, counts (JSON) and the snapshot directory it wrote or read.
CREATE TABLE IF NOT EXISTS etl_runs (
    run_id      TEXT PRIMARY KEY,
    command     TEXT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    status      TEXT NOT NULL CHECK (status IN ('running', 'ok', 'partial', 'failed')),
    counts      JSONB NOT NULL DEFAULT '{}',
    snapshot    TEXT,
    error       TEXT,
    host        TEXT,
    pid         INTEGER
);

-- "latest runs" listings.
CREATE INDEX IF NOT EXISTS idx_etl_runs_started_at ON etl_runs (started_at);
