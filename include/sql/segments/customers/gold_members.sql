-- Opted-in customers of the gold loyalty tier in Japan.
SELECT
    profile_id,
    line_user_id
FROM profiles
WHERE opted_in = 1
  AND loyalty_tier = 'gold'
  AND country = 'JP'
ORDER BY profile_id
