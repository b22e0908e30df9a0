"""Loading and validation: examples load as DAGs, broken files are isolated and located, schema in sync."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from etlkit.jobs.__main__ import LOADER_TEXT, unpaired_files
from etlkit.jobs.models import Job
from etlkit.jobs.schema import SCHEMA_PATH, job_json_schema, schema_text
from etlkit.jobs.validation import JobDefinitionError, load_job, validate_job_text
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.jobs

JOBS_DIR = REPO_ROOT / "dags" / "jobs"
EXAMPLES = sorted(JOBS_DIR.glob("*.json"))


def example(name: str = "orders_daily_load") -> dict:
    return json.loads((JOBS_DIR / f"{name}.json").read_text())


def components(job: dict) -> dict[str, dict]:
    return {c["id"]: c for c in job["components"]}


def _unknown_type(job):
    job["components"][0]["type"] = "test_source"


def _missing_path(job):
    del job["components"][0]["config"]["path"]


def _password(job):
    components(job)["load_orders"]["config"]["password"] = "hunter2"


def _bad_target_type(job):
    components(job)["convert"]["config"]["rules"][2]["to"] = "money"


def _missing_route_target(job):
    components(job)["convert"]["routes"]["out"] = ["nowhere"]


def _cycle(job):
    components(job)["validate"]["routes"]["valid"] = ["load_orders", "drop_cancelled"]


def _schema_mismatch(job):
    # The rejects writer now gets the converted rows (no _reject_reason) and the split's reject rows.
    components(job)["convert"]["routes"]["out"] = ["validate", "write_rejects"]


def _unsafe_filter(job):
    components(job)["drop_cancelled"]["config"]["condition"] = "__import__('os').system('id')"


def _missing_column(job):
    components(job)["drop_cancelled"]["config"]["condition"] = "qty > 0"


def _template_elsewhere(job):
    components(job)["drop_cancelled"]["config"]["condition"] = "status != '{{ ds }}'"


def _bad_cron(job):
    job["schedule"] = "61 4 * * *"


def _bad_date_format(job):
    components(job)["convert"]["config"]["rules"][3]["format"] = "%Y-%m-%Q"


def _format_on_a_timestamp(job):
    components(job)["convert"]["config"]["rules"][3].update(to="timestamp", format="%Y-%m-%d")


def _bad_rule_timezone(job):
    components(job)["convert"]["config"]["rules"][3]["timezone"] = "Europe/Parris"


# name -> (mutation, JSON path, expected text); structural cases also fail the JSON Schema.
INVALID = {
    "unknown_type": (
        _unknown_type,
        "$.components[0].type",
        "unknown component type 'test_source'; allowed: read_csv",
    ),
    "missing_field": (_missing_path, "$.components[0].config.path", "missing required field 'path'"),
    "unknown_key": (_password, "$.components[4].config.password", "unknown key 'password'"),
    "bad_literal": (_bad_target_type, "$.components[2].config.rules[2].to", "'money' is not one of 'string'"),
    "missing_target": (
        _missing_route_target,
        "$.components[2].routes.out[0]",
        "route to missing component 'nowhere'",
    ),
    "cycle": (_cycle, "$.components", "cycle: drop_cancelled -> convert -> validate -> drop_cancelled"),
    "schema_mismatch": (_schema_mismatch, "$.components[5]", "port schema mismatch on 'in'"),
    "unsafe_filter": (_unsafe_filter, "$.components[1].config.condition", "unknown function '__import__'"),
    "missing_column": (
        _missing_column,
        "$.components[1].config.condition",
        "unknown column 'qty' at position 1",
    ),
    "template": (_template_elsewhere, "$.components[1].config.condition", "'{{' is only allowed in path"),
    "bad_cron": (_bad_cron, "$.schedule", "'61 4 * * *' is not a 5-field cron"),
    # Each would otherwise reject or fail every row at run time instead of failing validation.
    "bad_date_format": (
        _bad_date_format,
        "$.components[2].config.rules[3]",
        "format '%Y-%m-%Q' is not a usable strptime format",
    ),
    "format_on_timestamp": (
        _format_on_a_timestamp,
        "$.components[2].config.rules[3]",
        "format applies only to 'to: date'",
    ),
    "bad_rule_timezone": (
        _bad_rule_timezone,
        "$.components[2].config.rules[3]",
        "'Europe/Parris' is not an IANA time zone",
    ),
}
STRUCTURAL = ("unknown_type", "missing_field", "unknown_key", "bad_literal")


def write_job(folder: Path, stem: str, job: dict | str) -> Path:
    path = folder / f"{stem}.json"
    path.write_text(job if isinstance(job, str) else json.dumps(job, indent=2))
    (folder / f"{stem}.py").write_text(LOADER_TEXT)
    return path


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_job_names_file_path_and_cause(tmp_path, case):
    mutate, json_path, expected = INVALID[case]
    job = example()
    mutate(job)
    with pytest.raises(JobDefinitionError) as raised:
        validate_job_text(json.dumps(job), tmp_path / "orders_daily_load.json")
    message = str(raised.value)
    assert message.splitlines()[0].startswith(f"{tmp_path / 'orders_daily_load.json'}: ")
    assert any(line.strip().startswith(json_path) and expected in line for line in message.splitlines()), (
        message
    )


def test_every_problem_is_reported_sorted_by_path(tmp_path):
    job = example()
    _bad_target_type(job)
    _password(job)
    with pytest.raises(JobDefinitionError) as raised:
        validate_job_text(json.dumps(job), tmp_path / "orders_daily_load.json")
    lines = str(raised.value).splitlines()
    assert lines[0].endswith(": 2 problems")
    assert lines[1].startswith(
        "  $.components[2].config.rules[2].to (component 'convert'): 'money' is not one of"
    )
    assert lines[2].startswith("  $.components[4].config.password (component 'load_orders'): unknown key")


def test_invalid_json_gives_line_and_column(tmp_path):
    with pytest.raises(JobDefinitionError, match=r"\$: invalid JSON: Expecting .* at line 3 column 5"):
        validate_job_text('{\n  "name": "x",\n    }', tmp_path / "broken.json")


def test_file_stem_must_equal_name(tmp_path):
    with pytest.raises(
        JobDefinitionError, match=r"\$.name: name 'orders_daily_load' must equal the file stem 'orders'"
    ):
        validate_job_text(json.dumps(example()), tmp_path / "orders.json")


def test_broken_job_files_are_isolated_import_errors(tmp_path, airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    for path in EXAMPLES:
        shutil.copy(path, tmp_path / path.name)
        shutil.copy(path.with_suffix(".py"), tmp_path / path.with_suffix(".py").name)
    broken = {}
    for case, (mutate, json_path, expected) in INVALID.items():
        job = example()
        mutate(job)
        job["name"] = f"broken_{case}"
        broken[f"broken_{case}"] = (json_path, expected)
        write_job(tmp_path, f"broken_{case}", job)
    write_job(tmp_path, "broken_syntax", '{"format_version": 1,\n "name": }')
    (tmp_path / "orphan_loader.py").write_text(LOADER_TEXT)

    bag = DagBag(dag_folder=str(tmp_path))

    assert sorted(bag.dags) == sorted(p.stem for p in EXAMPLES)
    errors = {Path(k).name: v for k, v in bag.import_errors.items()}
    assert sorted(errors) == sorted(
        [f"{name}.py" for name in broken] + ["broken_syntax.py", "orphan_loader.py"]
    )
    for name, (json_path, expected) in broken.items():
        assert f"{tmp_path / name}.json: " in errors[f"{name}.py"]
        assert json_path in errors[f"{name}.py"] and expected in errors[f"{name}.py"], errors[f"{name}.py"]
    assert "$: invalid JSON: Expecting value at line 2 column 10" in errors["broken_syntax.py"]
    assert f"job file {tmp_path / 'orphan_loader.json'} does not exist" in errors["orphan_loader.py"]


def test_example_loads_with_the_job_settings(dag_bag):
    dag = dag_bag.get_dag("orders_daily_load")
    assert dag.timetable.expression == "30 4 * * *"
    assert set(dag.tags) == {"orders", "declarative-job"}
    assert dag.owner == "data-platform"
    assert {t.task_id for t in dag.tasks} == {
        "_prepare",
        "_wait_read_orders",
        "read_orders",
        "drop_cancelled",
        "convert",
        "validate",
        "load_orders",
        "write_rejects",
        "_finalize",
    }
    assert all(t.retries == 3 for t in dag.tasks)
    assert dag.get_task("load_orders").retry_delay.total_seconds() == 120
    # _prepare is a direct upstream of every task: each takes the run context from its .output.
    assert dag.get_task("read_orders").upstream_task_ids == {"_wait_read_orders", "_prepare"}
    assert dag.get_task("_wait_read_orders").upstream_task_ids == {"_prepare"}
    assert dag.get_task("validate").downstream_task_ids == {"load_orders", "write_rejects", "_finalize"}
    assert dag.get_task("_finalize").is_teardown and dag.get_task("_prepare").is_setup
    assert dag.max_active_runs == 1 and dag.catchup is False


def test_every_example_validates_and_has_a_loader():
    assert len(EXAMPLES) >= 3
    for path in EXAMPLES:
        load_job(path)
    assert unpaired_files(JOBS_DIR) == []


def test_committed_schema_is_the_generated_one():
    assert SCHEMA_PATH.read_text() == schema_text(), "run: python -m etlkit.jobs schema"


def test_examples_pass_the_json_schema():
    validator = jsonschema.Draft202012Validator(job_json_schema())
    for path in EXAMPLES:
        assert list(validator.iter_errors(json.loads(path.read_text()))) == [], path


@pytest.mark.parametrize("case", STRUCTURAL)
def test_json_schema_rejects_what_the_models_reject(case):
    job = copy.deepcopy(example())
    INVALID[case][0](job)
    assert list(jsonschema.Draft202012Validator(job_json_schema()).iter_errors(job))
    with pytest.raises(ValidationError):
        Job.model_validate(job)


def test_schema_describes_fields_and_ports_for_editors():
    schema = job_json_schema()
    read_csv = schema["$defs"]["ReadCsv"]
    assert read_csv["x-ports"] == {"in": [], "out": ["out"]}
    config = schema["$defs"]["ReadCsvConfig"]["properties"]
    assert config["delimiter"]["default"] == "," and config["delimiter"]["title"]
    assert all("description" in field for field in config.values())
    assert schema["properties"]["components"]["items"]["discriminator"]["propertyName"] == "type"


def test_housekeeping_dag_loads(dag_bag):
    dag = dag_bag.get_dag("declarative_jobs_housekeeping")
    assert dag is not None and [t.task_id for t in dag.tasks] == ["remove_stale_staging"]
    assert dag.default_args["retries"] > 0 and dag.owner == "data-eng"


def test_upsert_keys_must_be_written_columns(tmp_path):
    job = example()
    components(job)["load_orders"]["config"]["key_columns"] = ["order_no"]
    with pytest.raises(
        JobDefinitionError, match=r"\$.components\[4\].config.key_columns\[0\].*unknown column 'order_no'"
    ):
        validate_job_text(json.dumps(job), tmp_path / "orders_daily_load.json")


def test_cli_validate_schema_check_and_scaffold(tmp_path, capsys):
    from etlkit.jobs.__main__ import main

    assert main(["validate", *map(str, EXAMPLES)]) == 0
    assert main(["schema", "--check"]) == 0
    job = example()
    _cycle(job)
    broken = write_job(tmp_path, "orders_daily_load", job)
    broken.with_suffix(".py").unlink()
    assert main(["validate", str(broken)]) == 1
    assert "cycle: drop_cancelled -> convert -> validate -> drop_cancelled" in capsys.readouterr().err
    assert unpaired_files(tmp_path) == ["orders_daily_load.json has no loader"]
    assert main(["scaffold", str(tmp_path)]) == 0
    assert broken.with_suffix(".py").read_text() == LOADER_TEXT and unpaired_files(tmp_path) == []
