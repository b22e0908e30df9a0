"""The published JSON Schema (2020-12), generated from the pydantic models."""

from __future__ import annotations

import json
from typing import Any

from etlkit import PROJECT_ROOT
from etlkit.jobs.models import Job

SCHEMA_PATH = PROJECT_ROOT / "schemas" / "job.schema.json"
SCHEMA_ID = "https://github.com/etlkit/etlkit-airflow-dags/schemas/job.schema.json"


def job_json_schema() -> dict[str, Any]:
    schema = Job.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def schema_text() -> str:
    return json.dumps(job_json_schema(), indent=2, sort_keys=True) + "\n"
