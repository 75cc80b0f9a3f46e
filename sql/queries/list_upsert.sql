-- New ETFs are inserted; known symbols (ETFs, or stocks that turn out to be ETFs)
-- take the list's name and flags. created_at, first_fetch_time and
-- last_sync_date are kept. Only rows the transform found changed are staged.
INSERT INTO stock_info (
    symbol, stock_name, stock_code, market_code, stock_type, is_active, is_etf,
    created_at, updated_at
)
SELECT symbol, stock_name, stock_code, market_code, stock_type, is_active, is_etf,
       LOCALTIMESTAMP, LOCALTIMESTAMP
FROM etl_stage_list
WHERE action = 'upsert'
ON CONFLICT (symbol) DO UPDATE
SET stock_name = EXCLUDED.stock_name,
    stock_type = EXCLUDED.stock_type,
    is_active = EXCLUDED.is_active,
    is_etf = EXCLUDED.is_etf,
    updated_at = EXCLUDED.updated_at
