#!/bin/bash
# One-shot: the repo's generated demo data into the demo database, the SFTP inbox and the jobs landing area.
set -euo pipefail
cd /opt/airflow
python -m dev.visits_data /inbox --files 3 --rows 2000
python -m dev.sierra_data sierra --items 10000
python -m dev.movies_data --dbname movies --films 1000
python -m dev.jobs_data /opt/airflow/data/jobs
touch /opt/airflow/data/.seeded
