"""The users of the campaign pages' tests, apart from the auth manager that decides for them
(``restricted_auth``), whose import loads Airflow's API server: collecting the tests must not."""

OUTSIDER = "outsider"
OUTSIDER_MAY_READ = "line_campaign__e2e_pages"
