"""Airflow integration: provider info, the LINE hook, the push operator, the DAG factory and the task bodies."""
