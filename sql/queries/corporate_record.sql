-- Share splits detected in a batch (etl_stage_actions: symbol, ex_date, ratio, the
-- estimate of etl/corporate.py) into etl_corporate_actions as source 'detected'.
-- An action recorded earlier wins, an official ratio above all: a rerun or a
-- refetch of the ex-date writes nothing.
INSERT INTO etl_corporate_actions (symbol, ex_date, ratio, source, detected_ratio, recorded_at)
SELECT s.symbol, s.ex_date, s.ratio, 'detected', s.ratio, now()
FROM etl_stage_actions AS s
ON CONFLICT (symbol, ex_date) DO NOTHING
