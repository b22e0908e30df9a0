"""docker-compose.yaml cannot run here (no Docker engine), so its contract is checked statically:
pinned images, health checks, dependency conditions, CeleryExecutor, and every connection and
configuration Variable the package reads is provided to the Airflow services."""

from __future__ import annotations

import contextlib
import io
import re
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from etlkit.jobs.environment import resolve_run_context
from etlkit.jobs.settings import JobsSettings
from etlkit.jobs.validation import load_job
from tests.conftest import REPO_ROOT

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]
AIRFLOW_SERVICES = {name for name, s in SERVICES.items() if name.startswith("airflow-")}
ONE_SHOT = {name for name, s in SERVICES.items() if s.get("restart") == "no"}
SOURCE = "\n".join(
    p.read_text() for p in [*(REPO_ROOT / "plugins").rglob("*.py"), *(REPO_ROOT / "dags").rglob("*.py")]
)
# Connection ids the code defaults to: `..._conn_id: str = "x"`, `CONN_ID = "x"`, `"..._conn_id": "x"`.
CONNECTION_DEFAULT = re.compile(r"""(?:conn_id\w*|CONN_ID)["']?\s*(?::\s*str\s*)?[=:]\s*["']([a-z_]+)["']""")
# Configuration Variables the code reads (state/watermark Variables are written by the DAGs themselves).
CONFIG_VARIABLE = re.compile(
    r"""^\s*(?!\w*(?:STATE|WATERMARK))[A-Z_]*VARIABLE\w*\s*=\s*["']([a-z_]+)["']""", re.M
)
# ... and the ones DAG files read in templates: `{{ var.value.get('x', ...) }}`, `var.json.get(...)`.
TEMPLATE_VARIABLE = re.compile(r"""var\.(?:value|json)\.get\(\s*["']([a-z_]+)["']""")


def airflow_env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in (SERVICES[service].get("environment") or {}).items()}


def test_core_airflow_services_on_celery():
    assert {
        "postgres",
        "redis",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
    } <= set(SERVICES)
    assert {"demo-postgres", "elasticsearch", "sftp", "signum", "enderturing"} <= set(SERVICES)
    for service in AIRFLOW_SERVICES:
        assert airflow_env(service)["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", service


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_image_is_pinned(name):
    image = SERVICES[name].get("image")
    assert image, f"{name} has no image name"
    repository, _, tag = image.rpartition(":")
    assert repository and tag and tag != "latest" and "/" not in tag, f"{name}: {image} is not pinned"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_health_check_and_conditioned_dependencies(name):
    service = SERVICES[name]
    assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    for dependency, rule in (service.get("depends_on") or {}).items():
        assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
        expected = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
        assert rule.get("condition") == expected, f"{name} -> {dependency}: {rule}"


def test_dockerfile_extends_the_pinned_airflow_image_with_the_lock():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "FROM apache/airflow:3.3.2-python3.11" in dockerfile
    assert "requirements.txt" in dockerfile
    assert "apache-airflow==3.3.2" in (REPO_ROOT / "requirements.txt").read_text()


def test_every_connection_the_code_uses_is_provided():
    used = set(CONNECTION_DEFAULT.findall(SOURCE))
    assert {"sftp_visits", "postgres_visits", "sierra_dna", "signum_backend", "movies_postgres"} <= used
    created_by_init = set(
        re.findall(r"connections add (\w+)", (REPO_ROOT / "docker/init-connections.sh").read_text())
    )
    for service in AIRFLOW_SERVICES - {"airflow-init"}:
        provided = {
            k.removeprefix("AIRFLOW_CONN_").lower()
            for k in airflow_env(service)
            if k.startswith("AIRFLOW_CONN_")
        }
        assert used - provided - created_by_init == set(), service


def test_every_configuration_variable_is_provided():
    used = set(CONFIG_VARIABLE.findall(SOURCE)) | set(TEMPLATE_VARIABLE.findall(SOURCE))
    assert {
        "sftp_visits_config",
        "etl_retry_policy",
        "sierra_sync_settings",
    } <= used
    for service in AIRFLOW_SERVICES:
        provided = {
            k.removeprefix("AIRFLOW_VAR_").lower()
            for k in airflow_env(service)
            if k.startswith("AIRFLOW_VAR_")
        }
        assert used - provided == set(), service


def test_staging_shared_between_tasks_is_on_the_volume_every_worker_mounts():
    mounted = {m.split(":")[1] for m in SERVICES["airflow-worker"]["volumes"] if m.startswith("etl-data:")}
    assert mounted == {"/opt/airflow/data"}


def test_declarative_jobs_settings_resolve_to_roots_on_the_shared_volume():
    variable = airflow_env("airflow-worker")["AIRFLOW_VAR_DECLARATIVE_JOBS"]
    settings = JobsSettings.resolve(variable=variable, read_variable=False, environ={})
    job = load_job(REPO_ROOT / "dags" / "jobs" / "orders_daily_load.json")
    context = resolve_run_context(job, settings, None, {"warehouse": "postgres"}.get, lambda conn_id: None)
    assert context.environment == "DEMO"
    assert context.connections == {"warehouse": "warehouse"}
    for root in (context.data_root, context.staging_root):
        assert root.startswith("/opt/airflow/data/jobs"), root


def test_sentry_events_leave_local_variables_out(monkeypatch):
    import sentry_sdk
    from airflow.sdk.execution_time.sentry.configured import ConfiguredSentry

    key = "AIRFLOW__SENTRY__INCLUDE_LOCAL_VARIABLES"
    assert {airflow_env(service).get(key) for service in AIRFLOW_SERVICES} == {"False"}
    monkeypatch.setenv("AIRFLOW__SENTRY__SENTRY_ON", "True")
    monkeypatch.setenv(key, airflow_env("airflow-worker")[key])
    init_options = {}
    monkeypatch.setattr(sentry_sdk, "init", lambda **options: init_options.update(options))
    ConfiguredSentry().prepare_to_enrich_errors("")
    assert init_options["include_local_variables"] is False


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_the_lock_pins_the_celery_provider_and_everything_it_needs():
    """`airflow celery worker` (the compose workers, `make stack`) exists only with the provider installed."""
    lock = _lock()
    assert {"apache-airflow-providers-celery", "celery", "kombu", "redis", "flower"} <= set(lock)
    missing, seen, todo = [], set(), ["apache-airflow-providers-celery"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        assert metadata.version(name) == lock[name], (
            f"{name}: installed {metadata.version(name)}, lock {lock[name]}"
        )
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            dependency = canonicalize_name(requirement.name)
            if dependency not in lock:
                missing.append(f"{name} -> {dependency}")
            elif not requirement.specifier.contains(lock[dependency], prereleases=True):
                missing.append(f"{name} -> {dependency}{requirement.specifier} (lock {lock[dependency]})")
            else:
                todo.append(dependency)
    assert not missing, missing


def test_the_celery_worker_command_exists():
    from airflow.cli.cli_parser import get_parser

    with pytest.raises(SystemExit) as exited, contextlib.redirect_stdout(io.StringIO()) as out:
        get_parser().parse_args(["celery", "worker", "--help"])
    assert exited.value.code == 0
    assert "--celery-hostname" in out.getvalue()


def test_compose_and_make_stack_declare_the_same_shared_storage(tmp_path):
    """What the workers share in compose (data and task logs volumes) is what `make stack` shares."""
    from dev.stack import Layout, Stack

    for service in ("airflow-worker", "airflow-apiserver", "airflow-scheduler"):
        mounts = {m.split(":")[0]: m.split(":")[1] for m in SERVICES[service]["volumes"] if ":" in m}
        assert mounts.get("etl-logs") == "/opt/airflow/logs", service
        assert mounts.get("etl-data") == "/opt/airflow/data", service
    layout = Layout(tmp_path)
    env = Stack(layout, 8080, {}).base_environment()
    assert Path(env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"]).parent == layout.shared
    assert env["AIRFLOW__CORE__EXECUTOR"] == airflow_env("airflow-worker")["AIRFLOW__CORE__EXECUTOR"]
    assert env["AIRFLOW__SENTRY__INCLUDE_LOCAL_VARIABLES"] == "False"
