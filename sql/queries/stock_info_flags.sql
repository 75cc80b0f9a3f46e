-- What the ETF-list diff compares against: every row, stocks included, so a
-- stock that turns out to be an ETF is recognised.
SELECT symbol, stock_name, stock_type, is_active, is_etf
FROM stock_info
