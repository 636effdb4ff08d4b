-- LINE's statistics per aggregation unit on PostgreSQL, beside the delivery log. One fetch of
-- GET /v2/bot/insight/message/event/aggregation is identified by its fetch key (campaign_id, unit,
-- date_from, date_to, as_of_day) and stored as rows: one 'overview', one 'message' per seq, one 'click' per (seq, url).
-- Re-collecting the same fetch key replaces its values (upsert), so it never adds rows.
-- NULL is a value LINE withheld for privacy (fewer than 20 users), never zero.
CREATE TABLE IF NOT EXISTS line_insight_statistics (
    campaign_id         TEXT    NOT NULL,
    unit                TEXT    NOT NULL,
    date_from           TEXT    NOT NULL,  -- yyyyMMdd, UTC+9
    date_to             TEXT    NOT NULL,  -- yyyyMMdd, UTC+9
    as_of_day           TEXT    NOT NULL,  -- yyyy-MM-dd (UTC+9) the collection ran for
    kind                TEXT    NOT NULL CHECK (kind IN ('overview', 'message', 'click')),
    seq                 INTEGER NOT NULL DEFAULT 0,
    url                 TEXT    NOT NULL DEFAULT '',
    unique_impression   INTEGER,
    unique_click        INTEGER,
    unique_media_played INTEGER,
    impression          INTEGER,
    click               INTEGER,
    fetched_at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (campaign_id, unit, date_from, date_to, as_of_day, kind, seq, url)
);
-- The aggregation unit each real run of a campaign sends under, recorded by its validate task, so that
-- the collection asks LINE for the unit the requests carried even if the campaign file changed since.
CREATE TABLE IF NOT EXISTS line_insight_unit (
    campaign_id TEXT    NOT NULL,
    run_id      TEXT    NOT NULL,
    unit        TEXT    NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (campaign_id, run_id)
);
