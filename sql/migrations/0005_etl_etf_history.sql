-- What the tool itself needs to know about an ETF's history, kept apart from the
-- existing system's tables: an inactive (delisted) ETF whose whole history has
-- been fetched once is listed here and not asked again every night. The row
-- matters only while the ETF is inactive: active ETFs are synced every run.
CREATE TABLE IF NOT EXISTS etl_etf_history (
    symbol         VARCHAR(20) PRIMARY KEY,
    complete_at    TIMESTAMPTZ NOT NULL,  -- when the fetch that completed it ran
    last_trade_day DATE           -- its latest stored trading day then
);
