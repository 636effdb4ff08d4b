-- Failed recipients of one run, grouped by reason, LINE's HTTP status and message.
--
-- Named placeholders (each written with a colon before its name in the query below):
--   campaign_id   the campaign's id
--   run_id        the DAG run id
-- Portable: SQLite and PostgreSQL (see run_outcomes.sql for how to bind the placeholders).
--
-- example_request_id is one x-line-request-id of the group: quote it to LINE support.
-- docs/operations.md, "Failure reasons", says what each reason means and what to do.
SELECT
    reason,
    http_status,
    COALESCE(line_message, '') AS line_message,
    COUNT(*) AS recipients,
    MAX(attempts) AS most_attempts,
    MIN(line_request_id) AS example_request_id,
    MIN(updated_at) AS first_seen,
    MAX(updated_at) AS last_seen
FROM line_delivery_log
-- the run's rows, found through its key (the log's index)
WHERE run_key = (
    SELECT run_key FROM line_delivery_run WHERE campaign_id = :campaign_id AND run_id = :run_id
)
  AND status = 'failed'
GROUP BY reason, http_status, COALESCE(line_message, '')
ORDER BY recipients DESC, reason
