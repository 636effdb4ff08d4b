"""The line_campaign_insights DAG: LINE's impressions and clicks of recent campaigns, collected daily.

(Airflow's DAG discovery looks for the words "airflow" and "dag" in a file: this docstring has both.)
"""

from line_oa.integration.insights_dag import build_insights_dag

insights_dag = build_insights_dag()
