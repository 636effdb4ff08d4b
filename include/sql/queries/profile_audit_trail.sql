-- The audit trail of one profile: every campaign run that targeted it, what happened and when,
-- and which LINE request accepted the messages.
--
-- Named placeholders (each written with a colon before its name in the query below):
--   profile_id   the CDP's profile id
-- Portable: SQLite and PostgreSQL (see run_outcomes.sql for how to bind the placeholders).
-- To search by LINE user id instead, compare log.line_user_id (not log.profile_id) with the placeholder.
--
-- accepted_request_id is the x-line-request-id of the request LINE accepted (for a retried send
-- answered 409, the original request's id): the proof of delivery to quote to LINE.
SELECT
    log.created_at,
    log.campaign_id,
    log.run_id,
    log.status,
    COALESCE(log.reason, '') AS reason,
    log.line_user_id,
    log.is_test,
    log.http_status,
    log.line_request_id,
    log.accepted_request_id,
    log.retry_key,
    log.attempts,
    log.sent_at,
    log.updated_at,
    log.line_message,
    summary.state AS run_state
FROM line_delivery_log AS log
LEFT JOIN line_campaign_summary AS summary
    ON summary.campaign_id = log.campaign_id AND summary.run_id = log.run_id
WHERE log.profile_id = :profile_id
ORDER BY log.created_at, log.campaign_id, log.run_id
