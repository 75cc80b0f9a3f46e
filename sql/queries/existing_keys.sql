-- Stored keys for the anti-join, limited to the batch's symbols and date window.
-- {symbols} and the dates are literals built from values validated against
-- strict patterns just before (connectorx takes no bind parameters).
SELECT symbol, trade_date
FROM stock_daily_data
WHERE symbol = ANY ({symbols})
  AND trade_date BETWEEN {first} AND {last}
