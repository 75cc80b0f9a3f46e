-- The ETF's latest stored trading day when a run of ours recorded that it asked it
-- up to complete_through. While the stored watermark is still that day, the days
-- after it up to complete_through are days the source had no row for the ETF
-- (a suspension): the nightly takes it as current (etl/plan.py). Rows deleted or
-- written since by anyone else make the two differ, and the ETF is fetched from
-- its own watermark again. NULL (a record from before this column): not taken.
ALTER TABLE etl_etf_days ADD COLUMN IF NOT EXISTS watermark DATE;
