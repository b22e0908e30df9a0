"""Ender Turing → PostgreSQL warehouse: Airflow-free filters, transforms, staging and bulk loading."""
