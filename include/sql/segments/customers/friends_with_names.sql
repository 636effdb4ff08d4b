-- Every opted-in customer with the columns personalized messages may read ({{ profile.first_name }},
-- {{ profile.loyalty_tier }}). A column a placeholder names must be one this query returns.
SELECT
    profile_id,
    line_user_id,
    first_name,
    loyalty_tier
FROM profiles
WHERE opted_in = 1
ORDER BY profile_id
