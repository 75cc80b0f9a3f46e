-- Per market, the earliest day through which a run of ours asked each active
-- ETF (etl_etf_days), and whether some active ETF has no such day yet.
SELECT i.market_code::text,
       min(c.complete_through)::text AS oldest,
       bool_or(c.symbol IS NULL) AS unrecorded
FROM stock_info AS i
LEFT JOIN etl_etf_days AS c ON c.symbol = i.symbol
WHERE i.is_etf = 'Y' AND i.is_active = 'Y'
GROUP BY i.market_code
ORDER BY i.market_code
