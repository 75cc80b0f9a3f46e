-- ETFs with their market and state, for etl.queries.etfs().
SELECT symbol, stock_code, market_code, stock_name, is_active, last_sync_date
FROM stock_info
WHERE is_etf = 'Y'
ORDER BY symbol
