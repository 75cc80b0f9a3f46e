-- --overwrite: correct stored rows whose values differ from what was fetched.
UPDATE stock_daily_data AS t
SET stock_name = s.stock_name,
    close_price = s.close_price,
    open_price = s.open_price,
    high_price = s.high_price,
    low_price = s.low_price,
    volume = s.volume,
    turnover = s.turnover,
    price_change = s.price_change,
    price_change_pct = s.price_change_pct,
    updated_at = LOCALTIMESTAMP
FROM etl_stage_daily AS s
WHERE t.trade_date = s.trade_date
  AND t.symbol = s.symbol
  AND (t.stock_name, t.close_price, t.open_price, t.high_price, t.low_price, t.volume,
       t.turnover, t.price_change, t.price_change_pct)
      IS DISTINCT FROM
      (s.stock_name, s.close_price::NUMERIC(10, 4), s.open_price::NUMERIC(10, 4),
       s.high_price::NUMERIC(10, 4), s.low_price::NUMERIC(10, 4), s.volume::BIGINT,
       s.turnover::NUMERIC(20, 2), s.price_change::NUMERIC(10, 4),
       s.price_change_pct::NUMERIC(8, 4))
