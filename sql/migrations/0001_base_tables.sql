-- The two tables of the existing stock system, as it had them before ETFs.
-- IF NOT EXISTS: on a production database they are already there (with rows), and a
-- fresh database must end up on the same path as an existing one.
--
-- No server-side defaults on created_at, updated_at, volume, turnover and is_active:
-- the production tables were created by SQLAlchemy models whose defaults live in
-- Python, so the live columns have none. A fresh database is made equally strict, so
-- a loader that forgets a NOT NULL column fails in tests, not in production.

CREATE TABLE IF NOT EXISTS stock_info (
    symbol           VARCHAR(20)  PRIMARY KEY,   -- e.g. SH.510050
    stock_name       VARCHAR(100) NOT NULL,
    stock_code       VARCHAR(10)  NOT NULL,      -- e.g. 510050
    market_code      VARCHAR(10)  NOT NULL,      -- SH (XSHG) or SZ (XSHE)
    stock_type       VARCHAR(20),                -- ETF for ETFs
    industry         VARCHAR(100),
    sector           VARCHAR(100),
    list_date        TIMESTAMP,
    delist_date      TIMESTAMP,
    is_active        VARCHAR(1)   NOT NULL,      -- 'Y' / 'N', set by the writer
    last_sync_date   TIMESTAMP,                  -- latest trade date stored for the symbol
    first_fetch_time TIMESTAMP,
    created_at       TIMESTAMP    NOT NULL,
    updated_at       TIMESTAMP    NOT NULL
);

-- trade_date is the China trading date at midnight, naive (no time zone).
CREATE TABLE IF NOT EXISTS stock_daily_data (
    trade_date       TIMESTAMP     NOT NULL,
    symbol           VARCHAR(20)   NOT NULL,
    stock_name       VARCHAR(100)  NOT NULL,
    close_price      NUMERIC(10,4) NOT NULL,
    open_price       NUMERIC(10,4),
    high_price       NUMERIC(10,4),
    low_price        NUMERIC(10,4),
    volume           BIGINT        NOT NULL,
    turnover         NUMERIC(20,2) NOT NULL,
    price_change     NUMERIC(10,4),
    price_change_pct NUMERIC(8,4),
    premium_rate     NUMERIC(8,4),
    market_code      VARCHAR(10)   NOT NULL,
    created_at       TIMESTAMP     NOT NULL,
    updated_at       TIMESTAMP     NOT NULL,
    PRIMARY KEY (trade_date, symbol)
);

-- Per-symbol history scans (anti-join against existing keys, last_sync_date).
CREATE INDEX IF NOT EXISTS idx_symbol_date ON stock_daily_data (symbol, trade_date);
