-- The latest trading day our own runs completed, per market (etl_exchange_days).
SELECT market_code, complete_through::text FROM etl_exchange_days ORDER BY market_code
