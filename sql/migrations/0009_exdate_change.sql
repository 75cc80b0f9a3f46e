-- The change of a row against its previous close, defined once for the SQL that
-- recomputes it (sql/queries/corporate_recompute.sql, daily_rechain.sql); the
-- Python twin is etl/corporate.py (adjusted_prev_close, change_pct), which
-- normalize uses. tests/test_exdate_rule.py holds the two to the same Decimals.
--
-- LANGUAGE sql, IMMUTABLE, one SELECT, not STRICT: PostgreSQL inlines such a call
-- into the query as the expression itself, so a bulk UPDATE pays no function call.
--
-- Each function is created where missing or where its body differs, so a rerun of
-- this file writes nothing to the catalog.

-- The previous close in new shares on an ex-date (a split, merge or conversion of
-- ``ratio`` new shares per old share): round(prev / ratio, 4), halves away from
-- zero as numeric round() does. ratio NULL (no action that day): prev itself.
-- NULL where it does not fit a price's NUMERIC(10,4) (a merge of a price near the
-- column's limit): the change is then unknown, rather than an UPDATE failing on it.
DO $$
DECLARE
    body CONSTANT text := 'SELECT CASE WHEN abs(round(prev / coalesce(ratio, 1), 4)) < 1000000 '
        'THEN round(prev / coalesce(ratio, 1), 4) END';
BEGIN
    IF (SELECT prosrc FROM pg_proc
         WHERE oid = to_regprocedure('etl_base_in_new_shares(numeric,numeric)'))
       IS DISTINCT FROM body THEN
        EXECUTE format(
            'CREATE OR REPLACE FUNCTION etl_base_in_new_shares(prev numeric, ratio numeric) '
            'RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE AS %L', body);
    END IF;
END
$$;

-- price_change_pct: the change in percent of ``base``, to 4 decimals (halves away
-- from zero), NULL where base is not above 0 or where it does not fit the column's
-- NUMERIC(8,4) (|pct| of 10,000 and more after rounding): a row stored with its pct
-- NULL, never a load failing on a numeric overflow.
DO $$
DECLARE
    body CONSTANT text := 'SELECT CASE WHEN base > 0 '
        'AND abs(round((close - base) * 100 / base, 4)) < 10000 '
        'THEN round((close - base) * 100 / base, 4) END';
BEGIN
    IF (SELECT prosrc FROM pg_proc
         WHERE oid = to_regprocedure('etl_change_pct(numeric,numeric)'))
       IS DISTINCT FROM body THEN
        EXECUTE format(
            'CREATE OR REPLACE FUNCTION etl_change_pct(close numeric, base numeric) '
            'RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE AS %L', body);
    END IF;
END
$$;
