-- Per ETF, the latest trading day a run of ours asked it up to and got an answer:
-- an ordinary run, with its exchange's latest day known from /daily/latest. Days
-- after it are looked at again by the next run where the ETF misses a day behind
-- a watermark another writer moved (etl/plan.py); days up to it are not, so a
-- suspension costs nothing twice, and an ETF whose fetch keeps failing widens
-- the days looked at for itself only.
CREATE TABLE IF NOT EXISTS etl_etf_days (
    symbol           VARCHAR(20) PRIMARY KEY,
    complete_through DATE NOT NULL,
    run_id           TEXT NOT NULL,            -- the run that asked it
    updated_at       TIMESTAMPTZ NOT NULL
);
