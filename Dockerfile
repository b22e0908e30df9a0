# The Airflow image every Airflow service of docker-compose.yaml runs: the pinned official
# image extended with the project's locked requirements (no constraints file needed).
FROM apache/airflow:3.3.2-python3.11
COPY requirements.txt /opt/etlkit/requirements.txt
RUN pip install --no-cache-dir -r /opt/etlkit/requirements.txt
