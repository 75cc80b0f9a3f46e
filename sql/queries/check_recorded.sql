-- etl check: recorded share splits, merges and conversions of the chosen ETFs ($1 text[]).
SELECT symbol, ex_date, ratio::text AS ratio, source
FROM etl_corporate_actions
WHERE symbol = ANY($1::text[])
ORDER BY symbol, ex_date
