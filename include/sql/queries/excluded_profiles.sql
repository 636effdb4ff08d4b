-- Who was excluded from one run and why: one row per profile that was never sent to.
--
-- Named placeholders (each written with a colon before its name in the query below):
--   campaign_id   the campaign's id
--   run_id        the DAG run id
-- Portable: SQLite and PostgreSQL (see run_outcomes.sql for how to bind the placeholders).
--
-- Reasons: missing_recipient_id (no LINE user id in the CDP), duplicate_recipient (another profile of
-- the segment has the same LINE user id and got the messages), over_max_recipients (beyond the run's
-- max_recipients), suppressed (on a suppression list). Malformed ids are failed rows (invalid_recipient_id): see failures_by_reason.sql.
SELECT
    reason,
    profile_id,
    line_user_id,
    is_test,
    created_at
FROM line_delivery_log
-- the run's rows, found through its key (the log's index)
WHERE run_key = (
    SELECT run_key FROM line_delivery_run WHERE campaign_id = :campaign_id AND run_id = :run_id
)
  AND status = 'excluded'
ORDER BY reason, profile_id
