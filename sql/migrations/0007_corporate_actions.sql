-- Share splits, merges and conversions of ETFs (see etl/corporate.py), kept in the
-- tool's own table beside the existing system's. ratio is new shares per old share:
-- 2 for a 2-for-1 split, 0.1 for a 10-to-1 merge. source 'detected' is an estimate
-- from the prices; 'official' comes from the fund's announcement and replaces it.
CREATE TABLE IF NOT EXISTS etl_corporate_actions (
    symbol         VARCHAR(20) NOT NULL,
    ex_date        DATE        NOT NULL,  -- the first trading day at the new price
    ratio          NUMERIC     NOT NULL CHECK (ratio > 0),
    source         TEXT        NOT NULL CHECK (source IN ('detected', 'official')),
    detected_ratio NUMERIC,               -- the estimate, kept when an official ratio replaces it
    note           TEXT,
    recorded_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (symbol, ex_date)
);

-- The product of NUMERICs, exact (exp(sum(ln(x))) would go through float).
-- Created only where missing, like the view below: a rerun must write nothing.
DO $$
BEGIN
    IF to_regprocedure('etl_product(numeric)') IS NULL THEN
        CREATE AGGREGATE etl_product(NUMERIC) (SFUNC = numeric_mul, STYPE = NUMERIC, INITCOND = '1');
    END IF;
END
$$;

-- Backward-adjusted daily prices (后复权, "hfq"): the first price of an ETF stays
-- as traded, and every later price is multiplied by adj_factor, the product of the
-- ratios of all actions on or before its trading day. Recording a new action never
-- changes the adjusted prices before it. For forward-adjusted prices (前复权, the
-- latest price as traded) divide by the symbol's latest adj_factor.
DO $$
BEGIN
    IF to_regclass('etf_daily_adjusted') IS NULL THEN
        EXECUTE $view$
CREATE VIEW etf_daily_adjusted AS
WITH factors AS (
    SELECT symbol,
           ex_date,
           lead(ex_date, 1, 'infinity'::date) OVER w AS until,
           etl_product(ratio) OVER w AS factor
    FROM etl_corporate_actions
    WINDOW w AS (PARTITION BY symbol ORDER BY ex_date)
)
SELECT d.symbol,
       (d.trade_date + interval '8 hours')::date AS trade_day,
       d.trade_date,
       coalesce(f.factor, 1) AS adj_factor,
       d.open_price * coalesce(f.factor, 1) AS adj_open,
       d.high_price * coalesce(f.factor, 1) AS adj_high,
       d.low_price * coalesce(f.factor, 1) AS adj_low,
       d.close_price * coalesce(f.factor, 1) AS adj_close,
       d.open_price,
       d.high_price,
       d.low_price,
       d.close_price,
       d.volume,
       d.turnover
FROM stock_daily_data AS d
JOIN stock_info AS i ON i.symbol = d.symbol AND i.is_etf = 'Y'
LEFT JOIN factors AS f
       ON f.symbol = d.symbol
      AND (d.trade_date + interval '8 hours')::date >= f.ex_date
      AND (d.trade_date + interval '8 hours')::date < f.until
        $view$;
    END IF;
END
$$;

-- What `etl check --repair` asked the source about and found real: trading days the
-- API has no row for (a suspension: finding 'hole'), or stored values the API gives
-- the same (finding = the suspect reason, e.g. 'zero_volume'). `etl check` does not
-- report a finding again that lies inside one of these ranges.
CREATE TABLE IF NOT EXISTS etl_check_confirmed (
    symbol       VARCHAR(20) NOT NULL,
    finding      TEXT        NOT NULL,
    first_day    DATE        NOT NULL,
    last_day     DATE        NOT NULL CHECK (last_day >= first_day),
    confirmed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (symbol, finding, first_day)
);
