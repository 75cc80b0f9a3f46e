-- The official ratio of an action from the fund's announcement ($1 symbol,
-- $2 ex-date, $3 ratio, $4 note or empty). It replaces a detected estimate, which stays
-- in detected_ratio; with none detected it is inserted. A note given replaces
-- the one stored.
INSERT INTO etl_corporate_actions AS a (symbol, ex_date, ratio, source, detected_ratio, note, recorded_at)
VALUES ($1, $2::date, $3::numeric, 'official', NULL, NULLIF($4, ''), now())
ON CONFLICT (symbol, ex_date) DO UPDATE
SET ratio = EXCLUDED.ratio,
    source = 'official',
    detected_ratio = coalesce(a.detected_ratio, CASE WHEN a.source = 'detected' THEN a.ratio END),
    note = coalesce(EXCLUDED.note, a.note),
    recorded_at = EXCLUDED.recorded_at
