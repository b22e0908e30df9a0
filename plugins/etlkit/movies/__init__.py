"""Movies PostgreSQL → Elasticsearch: Airflow-free logic (index body, SQL, transform, bulk, state)."""
