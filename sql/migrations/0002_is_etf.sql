-- stock_info.is_etf VARCHAR(1) NOT NULL DEFAULT 'N' CHECK (is_etf IN ('Y','N')),
-- whatever state the column is in:
--   * absent: added with its default; PostgreSQL 11+ keeps that default in the catalog,
--     so existing rows read 'N' without the table being rewritten;
--   * added by the old hand migration: VARCHAR(1) DEFAULT 'N', nullable, no CHECK;
--   * created by the newer ORM model: VARCHAR(1) NOT NULL, no default, no CHECK.
-- Existing NULLs become 'N'; every other value is kept. Each step runs only when the
-- catalog says it is needed, so on a database already in shape nothing is changed.

-- Fail fast rather than queue behind a long transaction on a busy stock_info (and make
-- every later query on it queue behind us). Rerunning the migration is safe.
SET LOCAL lock_timeout = '10s';

DO $$
DECLARE
    col record;
    chk record;
    has_check boolean;
    bad text;
    clash text;
BEGIN
    SELECT a.attnotnull,
           format_type(a.atttypid, a.atttypmod) AS type,
           pg_get_expr(d.adbin, d.adrelid) AS default_expr
      INTO col
      FROM pg_attribute a
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attrelid = 'stock_info'::regclass
       AND a.attname = 'is_etf'
       AND NOT a.attisdropped;

    -- The CHECK is recognised by what it says, not by its name: a CHECK on is_etf alone
    -- whose definition names exactly the literals 'Y' and 'N' and does not negate them.
    SELECT c.conname, c.convalidated
      INTO chk
      FROM pg_constraint c
     WHERE c.conrelid = 'stock_info'::regclass
       AND c.contype = 'c'
       AND c.conkey = ARRAY[(SELECT attnum FROM pg_attribute
                              WHERE attrelid = 'stock_info'::regclass AND attname = 'is_etf'
                                AND NOT attisdropped)]
       AND pg_get_expr(c.conbin, c.conrelid) !~* '(<>|!=|\mNOT\M)'
       AND (SELECT array_agg(DISTINCT m[1] ORDER BY m[1])
              FROM regexp_matches(pg_get_expr(c.conbin, c.conrelid), '''([^'']*)''', 'g') AS m)
           = ARRAY['N', 'Y']
     ORDER BY c.convalidated DESC
     LIMIT 1;
    has_check := FOUND;

    IF col.type IS NOT NULL AND col.type <> 'character varying(1)' THEN
        RAISE EXCEPTION 'stock_info.is_etf has type %, expected character varying(1)', col.type
            USING HINT = 'convert the column by hand, then rerun the migration';
    END IF;

    IF col.type IS NOT NULL
       AND col.attnotnull
       AND col.default_expr = '''N''::character varying'
       AND has_check AND chk.convalidated THEN
        RETURN;  -- already in shape: change nothing
    END IF;

    -- Take the strongest lock the steps below need up front (bounded by lock_timeout)
    -- instead of upgrading from the UPDATE's row lock halfway through.
    LOCK TABLE stock_info IN ACCESS EXCLUSIVE MODE;

    IF col.type IS NULL THEN
        ALTER TABLE stock_info ADD COLUMN is_etf VARCHAR(1) NOT NULL DEFAULT 'N';
    ELSE
        IF col.default_expr IS DISTINCT FROM '''N''::character varying' THEN
            ALTER TABLE stock_info ALTER COLUMN is_etf SET DEFAULT 'N';
        END IF;
        IF NOT col.attnotnull THEN
            UPDATE stock_info SET is_etf = 'N' WHERE is_etf IS NULL;
            ALTER TABLE stock_info ALTER COLUMN is_etf SET NOT NULL;
        END IF;
    END IF;

    IF has_check AND chk.convalidated THEN
        RETURN;
    END IF;

    SELECT string_agg(DISTINCT quote_literal(is_etf), ', ') INTO bad
      FROM stock_info WHERE is_etf NOT IN ('Y', 'N');
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'stock_info.is_etf holds values other than Y and N: %', bad
            USING HINT = 'set them to Y or N, then rerun the migration';
    END IF;

    IF has_check THEN  -- present but NOT VALID: validate it rather than add a twin
        EXECUTE format('ALTER TABLE stock_info VALIDATE CONSTRAINT %I', chk.conname);
        RETURN;
    END IF;

    SELECT pg_get_constraintdef(oid) INTO clash
      FROM pg_constraint
     WHERE conrelid = 'stock_info'::regclass AND conname = 'stock_info_is_etf_check';
    IF clash IS NOT NULL THEN
        RAISE EXCEPTION 'constraint stock_info_is_etf_check exists as %, expected CHECK (is_etf IN (''Y'', ''N''))', clash
            USING HINT = 'drop or fix that constraint, then rerun the migration';
    END IF;

    -- Not split into NOT VALID + VALIDATE: this file is one transaction, which holds the
    -- ACCESS EXCLUSIVE lock until commit either way. stock_info lists a few thousand
    -- securities, so the check's scan takes milliseconds.
    ALTER TABLE stock_info
        ADD CONSTRAINT stock_info_is_etf_check CHECK (is_etf IN ('Y', 'N'));
END
$$;
