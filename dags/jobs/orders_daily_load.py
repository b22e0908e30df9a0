# Airflow DAG loader, written by `python -m etlkit.jobs scaffold`: the job is the .json file of the same name.
from etlkit.jobs.dag import load_job_dag

dag = load_job_dag(__file__)
