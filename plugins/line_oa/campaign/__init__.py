"""The campaign definition: the file's model, LINE's message rules, UTM tagging, loading and pre-launch problems. Imports nothing from delivery or Airflow."""
