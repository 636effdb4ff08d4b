"""The campaign pages in the Airflow UI: a LINE campaigns page, a Campaign tab per DAG, a Delivery tab per run."""
