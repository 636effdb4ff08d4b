# The Airflow image of the compose stack: Airflow 3.3.2 with this project's pinned requirements and
# the line_oa package (its provider entry point gives the UI the "LINE Official Account" connection
# type). dags/, plugins/ and include/ are copied in for a self-contained image and mounted over by
# docker-compose.yaml during development.
FROM apache/airflow:3.3.2-python3.11

# requirements.txt pins apache-airflow==3.3.2, so pip keeps the image's Airflow.
COPY --chown=airflow:0 requirements.txt /opt/line-oa/requirements.txt
RUN pip install --no-cache-dir -r /opt/line-oa/requirements.txt

# The package lives where Airflow looks for it: line_oa resolves include/ as <root>/include, so the
# project root is AIRFLOW_HOME (/opt/airflow) and the editable install points at /opt/airflow/plugins.
COPY --chown=airflow:0 pyproject.toml README.md /opt/airflow/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 include/ /opt/airflow/include/
RUN pip install --no-cache-dir --no-deps -e /opt/airflow \
    && python -c "import line_oa.integration.hooks, line_simulator"
