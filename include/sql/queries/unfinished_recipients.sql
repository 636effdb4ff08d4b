-- Recipients of one run that are not final yet: what a resumed run (clear the failed push tasks)
-- will send again, with the retry key each was first sent with.
--
-- Named placeholders (each written with a colon before its name in the query below):
--   campaign_id   the campaign's id
--   run_id        the DAG run id
-- Portable: SQLite and PostgreSQL (see run_outcomes.sql for how to bind the placeholders).
--
-- pending: never sent. sending: a request may have left; LINE answers 409 to a resend with the same key
-- if it had accepted it, so the resend cannot deliver twice. LINE forgets keys after 24 hours: a row
-- still `sending` after that is reported as failed / outcome_unknown instead of being sent blindly
-- (compare updated_at with now). failed with a resumable reason (quota_exceeded, auth_failed,
-- retries_exhausted, stopped, killed, log_write_failed, log_stalled, claim_lost: the list is
-- line_oa.vocabulary.RESUMABLE_REASONS): sent again on resume, with the same retry key.
SELECT
    chunk_index,
    status,
    COALESCE(reason, '') AS reason,
    profile_id,
    line_user_id,
    attempts,
    retry_key,
    updated_at
FROM line_delivery_log
-- the run's rows, found through its key (the log's index)
WHERE run_key = (
    SELECT run_key FROM line_delivery_run WHERE campaign_id = :campaign_id AND run_id = :run_id
)
  AND (
      status IN ('pending', 'sending')
      OR (status = 'failed' AND reason IN (
          'quota_exceeded', 'auth_failed', 'retries_exhausted', 'stopped',
          'killed', 'log_write_failed', 'log_stalled', 'claim_lost'
      ))
  )
ORDER BY chunk_index, profile_id
