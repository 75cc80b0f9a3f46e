-- etl check: findings the source confirmed real, for the chosen ETFs ($1 text[]).
SELECT symbol, finding, first_day, last_day
FROM etl_check_confirmed
WHERE symbol = ANY($1::text[])
ORDER BY symbol, finding, first_day
