"""SFTP visit reports: Airflow-free parsing, validation, archiving and loading logic."""
