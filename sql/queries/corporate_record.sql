-- Share splits detected in a batch (etl_stage_actions: symbol, ex_date, ratio, the
-- estimate of etl/corporate.py) into etl_corporate_actions as source 'detected'.
-- An action recorded earlier wins, an official ratio above all: a rerun or a
-- refetch of the ex-date writes nothing. With $1 true (a load), only for ex-date
-- rows this transaction inserted or corrected (updated_at is its LOCALTIMESTAMP):
-- a stored row the load skipped keeps the change it has, so no action may claim it.
INSERT INTO etl_corporate_actions (symbol, ex_date, ratio, source, detected_ratio, recorded_at)
SELECT s.symbol, s.ex_date, s.ratio, 'detected', s.ratio, now()
FROM etl_stage_actions AS s
WHERE NOT $1::boolean
   OR EXISTS (
        SELECT 1
        FROM stock_daily_data AS d
        WHERE d.symbol = s.symbol
          AND d.trade_date >= s.ex_date - interval '8 hours'
          AND d.trade_date < s.ex_date + interval '16 hours'
          AND d.updated_at = LOCALTIMESTAMP
   )
ON CONFLICT (symbol, ex_date) DO NOTHING
