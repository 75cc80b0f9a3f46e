-- Per exchange, the latest trading day the tool's own runs have completed: an
-- ordinary run that asked every active ETF of the exchange up to the day
-- /daily/latest named, with nothing failed. Days after it are looked at again by
-- the next run for ETFs that miss a day behind a watermark another writer moved
-- (etl/plan.py); days up to it are not, so a suspension costs nothing twice.
CREATE TABLE IF NOT EXISTS etl_exchange_days (
    market_code      VARCHAR(10) PRIMARY KEY,  -- 'SH' (XSHG) or 'SZ' (XSHE)
    complete_through DATE NOT NULL,
    run_id           TEXT NOT NULL,            -- the run that completed it
    updated_at       TIMESTAMPTZ NOT NULL
);
