"""Declarative JSON jobs, Airflow-free: job models, validation, expressions, components, staging, metrics."""
