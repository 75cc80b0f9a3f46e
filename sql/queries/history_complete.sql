-- Inactive ETFs whose whole history a run has just fetched: not asked again
-- every night (see migration 0005). $1 is the symbols (text[]).
INSERT INTO etl_etf_history (symbol, complete_at, last_trade_day)
SELECT i.symbol, now(), (i.last_sync_date + interval '8 hours')::date
FROM stock_info AS i
WHERE i.symbol = ANY ($1::text[])
  AND i.is_etf = 'Y'
  AND i.is_active = 'N'
ON CONFLICT (symbol) DO UPDATE
SET complete_at = EXCLUDED.complete_at,
    last_trade_day = EXCLUDED.last_trade_day
