-- Every summarized run, newest first: state and counts as the summarize task wrote them.
--
-- Named placeholders (each written with a colon before its name in the query below):
--   campaign_id   a campaign's id, or NULL for every campaign
-- Portable: SQLite and PostgreSQL (see run_outcomes.sql for how to bind the placeholders;
-- in psql: -v campaign_id=NULL for every campaign).
--
-- state: Finished (every eligible recipient has a final outcome) or Suspended (the run stopped before
-- that: resume it by clearing the failed push tasks). Test sends are not summarized here.
-- summary_json holds the whole summary (excluded and failed counts by reason, report path).
SELECT
    campaign_id,
    run_id,
    state,
    dry_run,
    targeted,
    excluded,
    sent,
    failed,
    not_sent,
    messages_billed,
    requests,
    retries,
    started_at,
    finished_at
FROM line_campaign_summary
WHERE (:campaign_id IS NULL OR campaign_id = :campaign_id)
ORDER BY finished_at DESC, campaign_id
