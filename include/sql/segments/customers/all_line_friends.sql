-- Every opted-in customer. Profiles without a LINE user id are kept on purpose: the campaign
-- records them in the delivery log as excluded (missing_recipient_id) instead of hiding them.
SELECT
    profile_id,
    line_user_id
FROM profiles
WHERE opted_in = 1
ORDER BY profile_id
