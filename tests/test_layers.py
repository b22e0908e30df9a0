"""The pipelines' domain packages (parsing, validation, transforms, retries) run without Airflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

DOMAIN_PACKAGES = ["visits", "sierra", "enderturing", "movies", "jobs"]

CHILD = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
modules = [package.__name__ + "." + info.name for info in pkgutil.iter_modules(package.__path__)]
modules.append("etlkit.common.retry")
for name in modules:
    importlib.import_module(name)
loaded = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))
print(json.dumps({"modules": modules, "airflow": loaded[:5]}))
"""


@pytest.mark.integrity
@pytest.mark.parametrize("package", DOMAIN_PACKAGES)
def test_a_domain_package_imports_no_airflow(package):
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "plugins")}
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, f"etlkit.{package}"],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(completed.stdout)
    assert len(result["modules"]) > 2
    assert result["airflow"] == []


def test_job_loaders_written_before_the_dag_factory_moved_still_import_it():
    from etlkit.jobs.dag import load_job_dag
    from etlkit.operators.jobs import load_job_dag as former_location

    assert former_location is load_job_dag
