"""Render every LINE campaign file in include/campaigns/ into an Airflow DAG named line_campaign__<id>.

(Airflow's DAG discovery looks for the words "airflow" and "dag" in a file: this docstring has both.)
"""

from line_oa.integration.dag_factory import build_campaign_dags

campaign_dags, campaign_errors = build_campaign_dags()
globals().update(campaign_dags)
