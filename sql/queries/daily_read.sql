-- ETF daily rows for etl.read.daily(): exact types, filtered by parameters.
-- $1 symbols (text[], empty = all) · $2, $3 first and last trading day
-- ('-infinity' / 'infinity' = open) · $4 market codes (text[], empty = all).
-- The trading day of a stored row is its calendar date in Asia/Shanghai (rows of the
-- older writer sit at 16:00 of the day before on a UTC session): day D holds the
-- rows with D - 8 h <= trade_date < D + 16 h. NUMERIC goes out as text so that the
-- reader keeps every digit; it is cast back to the column's exact Decimal there.
SELECT d.trade_date, d.symbol, d.stock_name,
       d.close_price::text AS close_price, d.open_price::text AS open_price,
       d.high_price::text AS high_price, d.low_price::text AS low_price,
       d.volume, d.turnover::text AS turnover,
       d.price_change::text AS price_change, d.price_change_pct::text AS price_change_pct,
       d.premium_rate::text AS premium_rate, d.market_code,
       d.created_at, d.updated_at
FROM stock_daily_data AS d
JOIN stock_info AS i USING (symbol)
WHERE i.is_etf = 'Y'
  AND (cardinality($1::text[]) = 0 OR d.symbol = ANY ($1::text[]))
  AND d.trade_date >= $2::text::date - interval '8 hours'
  AND d.trade_date < $3::text::date + interval '16 hours'
  AND (cardinality($4::text[]) = 0 OR d.market_code = ANY ($4::text[]))
ORDER BY d.symbol, d.trade_date
