-- New daily rows from the batch's staging table. Rows whose trading day is
-- stored already, at whatever clock time another writer gave it (see
-- existing_keys.sql), are skipped; ON CONFLICT guards the exact key. It never
-- updates. Every NOT NULL column is supplied: the production table has no defaults.
INSERT INTO stock_daily_data (
    trade_date, symbol, stock_name, close_price, open_price, high_price, low_price,
    volume, turnover, price_change, price_change_pct, premium_rate, market_code,
    created_at, updated_at
)
SELECT
    s.trade_date, s.symbol, s.stock_name, s.close_price, s.open_price, s.high_price,
    s.low_price, s.volume, s.turnover, s.price_change, s.price_change_pct, s.premium_rate,
    s.market_code, LOCALTIMESTAMP, LOCALTIMESTAMP
FROM etl_stage_daily AS s
WHERE NOT EXISTS (
    SELECT 1
    FROM stock_daily_data AS t
    WHERE t.symbol = s.symbol
      AND t.trade_date >= s.trade_date - INTERVAL '8 hours'
      AND t.trade_date < s.trade_date + INTERVAL '16 hours'
)
ON CONFLICT (trade_date, symbol) DO NOTHING
