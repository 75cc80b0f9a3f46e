-- Indexes for ETF lookups. IF NOT EXISTS: production may already have them under these
-- names (an existing index of that name is kept as it is).
SET LOCAL lock_timeout = '10s';

CREATE INDEX IF NOT EXISTS idx_is_etf ON stock_info (is_etf);
CREATE INDEX IF NOT EXISTS idx_etf_market ON stock_info (market_code, is_etf);

-- Production keeps stock_daily_data as a TimescaleDB hypertable. Only where the
-- extension is installed (there is no timescaledb package in Debian, nor in the embedded
-- server); if_not_exists makes it a no-op on an existing hypertable, migrate_data moves
-- rows of a plain table into chunks. The two-argument form works on TimescaleDB 2.x old
-- and new. EXECUTE keeps the call from being resolved where the function does not exist.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        EXECUTE 'SELECT create_hypertable(''stock_daily_data'', ''trade_date'', '
             || 'if_not_exists => TRUE, migrate_data => TRUE)';
    END IF;
END
$$;
