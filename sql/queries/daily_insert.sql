-- New daily rows from the batch's staging table. ON CONFLICT guards against rows
-- that arrived between the anti-join and this statement; it never updates.
-- Every NOT NULL column is supplied: the production table has no defaults.
INSERT INTO stock_daily_data (
    trade_date, symbol, stock_name, close_price, open_price, high_price, low_price,
    volume, turnover, price_change, price_change_pct, premium_rate, market_code,
    created_at, updated_at
)
SELECT
    trade_date, symbol, stock_name, close_price, open_price, high_price, low_price,
    volume, turnover, price_change, price_change_pct, premium_rate, market_code,
    LOCALTIMESTAMP, LOCALTIMESTAMP
FROM etl_stage_daily
ON CONFLICT (trade_date, symbol) DO NOTHING
