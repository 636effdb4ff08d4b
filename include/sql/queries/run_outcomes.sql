-- Outcome counts of one run: how many profiles ended in each status and reason.
--
-- Named placeholders (each written with a colon before its name in the query below):
--   campaign_id   the campaign's id (the `id` of its file, e.g. welcome_back)
--   run_id        the DAG run id (e.g. manual__2026-12-01T09:00:00+00:00)
-- Portable: the delivery log on SQLite or PostgreSQL. Bind the placeholders with SQLAlchemy `text()`,
-- Python's sqlite3 (named style), or psql: psql -v campaign_id="'welcome_back'" -v run_id="'manual__...'"
-- -f include/sql/queries/run_outcomes.sql
--
-- Statuses: excluded (never sent: see reason), pending / sending (not final yet: the run is resumable),
-- sent, failed (see reason). is_test = 1 marks test sends, which the campaign's counts leave out.
SELECT
    status,
    COALESCE(reason, '') AS reason,
    is_test,
    COUNT(*) AS profiles
FROM line_delivery_log
-- the run's rows, found through its key (the log's index)
WHERE run_key = (
    SELECT run_key FROM line_delivery_run WHERE campaign_id = :campaign_id AND run_id = :run_id
)
GROUP BY status, COALESCE(reason, ''), is_test
ORDER BY status, profiles DESC, reason
