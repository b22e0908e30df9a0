"""``python -m etlkit.jobs run FILE --data-root DIR --dry-run``: a job on your own files, without Airflow.

Every component runs in this process, in graph order, on the same code as the Airflow tasks
(``run_component``). Paths are rendered for ``--date`` (``{{ ds_nodash }}`` and the like) and,
whatever their ``conn``, taken relative to ``--data-root``.

With ``--dry-run`` nothing outside ``--out`` is written: file writers write under ``--out``, and each
``write_sql`` writes the rows it would load to ``<out>/would_load/<component>.csv`` instead of
touching its table, so no database is needed unless a ``read_sql`` reads one (``--conn NAME=DSN``).
Without ``--dry-run``, file writers write under ``--data-root`` and ``write_sql`` loads through
``--conn``, with the same transaction and append-once rules as in Airflow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from etlkit.common.errors import BadInputError
from etlkit.jobs.environment import rooted_path
from etlkit.jobs.metrics import ComponentMetrics
from etlkit.jobs.models import WriteCsv, WriteCsvConfig
from etlkit.jobs.runtime import RuntimeIO, run_component
from etlkit.jobs.sqlwrite import logical_run_key
from etlkit.jobs.validation import ValidatedJob

WOULD_LOAD_DIR = "would_load"
FILE_WRITERS = ("write_csv", "write_json")


@dataclasses.dataclass
class LocalRun:
    metrics: dict[str, ComponentMetrics]
    would_load: dict[str, tuple[str, str, Path]]  # write_sql id -> (table, mode, csv of its rows)
    out_dir: Path | None


def template_context(logical_date: dt.datetime, run_id: str) -> dict:
    """The subset of Airflow's template context that job paths and read_sql params use."""
    return {
        "ds": logical_date.strftime("%Y-%m-%d"),
        "ds_nodash": logical_date.strftime("%Y%m%d"),
        "ts": logical_date.isoformat(),
        "ts_nodash": logical_date.strftime("%Y%m%dT%H%M%S"),
        "logical_date": logical_date,
        "data_interval_start": logical_date,
        "data_interval_end": logical_date,
        "run_id": run_id,
        "params": {"environment": None},
    }


def _renderer(context: dict):
    environment = SandboxedEnvironment(undefined=StrictUndefined)

    def render(value):
        if isinstance(value, str) and "{{" in value:
            return environment.from_string(value).render(context)
        return value

    return render


def _sql_connections(dsns: dict[str, str]):
    @contextlib.contextmanager
    def connect(conn: str) -> Iterator[psycopg.Connection]:
        if conn not in dsns:
            raise BadInputError(f"no database for connection {conn!r}: pass --conn {conn}=<libpq DSN or URI>")
        with psycopg.connect(dsns[conn], autocommit=True) as connection:
            yield connection

    return connect


def _dry_run_writer(component) -> WriteCsv:
    """The ``write_csv`` that stands in for a ``write_sql`` in a dry run: same id, input and columns."""
    config = WriteCsvConfig(path=f"{WOULD_LOAD_DIR}/{component.id}.csv", columns=component.config.columns)
    return WriteCsv(id=component.id, type="write_csv", config=config, routes={})


def run_local(
    validated: ValidatedJob,
    data_root: Path,
    *,
    logical_date: dt.datetime,
    dry_run: bool,
    out_dir: Path | None = None,
    connections: dict[str, str] | None = None,
) -> LocalRun:
    """Runs every component of ``validated`` here; raises ``BadInputError`` where a task would fail at once."""
    if dry_run and out_dir is None:
        raise ValueError("a dry run needs out_dir")
    run_id = f"local__{logical_date.isoformat()}"
    render = _renderer(template_context(logical_date, run_id))
    sql_connection = _sql_connections(connections or {})
    components = dict(validated.components)
    would_load = {}
    if dry_run:
        for component in validated.components.values():
            if component.type == "write_sql":
                components[component.id] = _dry_run_writer(component)
                path = out_dir / WOULD_LOAD_DIR / f"{component.id}.csv"
                would_load[component.id] = (component.config.table, component.config.mode, path)
    job = dataclasses.replace(validated, components=components)
    metrics = {}
    with tempfile.TemporaryDirectory(prefix=f"etlkit-{validated.job.name}-") as staging:

        def io_for(component) -> RuntimeIO:
            writes_out = dry_run and (component.type in FILE_WRITERS or component.id in would_load)
            root = out_dir if writes_out else data_root
            return RuntimeIO(
                run_dir=Path(staging),
                resolve_path=lambda path, _conn: rooted_path(render(path), root),
                sql_connection=sql_connection,
                render=render,
                run_key=logical_run_key(validated.job.name, run_id, logical_date),
            )

        for component_id in job.order:
            component = job.components[component_id]
            # the original type, so that a dry run reports write_sql where it stood in a write_csv
            result = ComponentMetrics(component_id, validated.components[component_id].type)
            metrics[component_id] = result
            try:
                run_component(job, component_id, io_for(component), result)
            except BaseException as error:
                result.finish("failed", error)
                raise
            result.finish("success")
    return LocalRun(metrics, would_load, out_dir)


def report(run: LocalRun, dry_run: bool) -> str:
    """The per-component counters, as the task log prints them, and where the outputs are."""
    lines = [
        f"{'component':<24} {'type':<16} {'rows in':>10} {'rows out':>10} {'dropped':>8} {'rejected':>9}"
    ]
    for component_id, metrics in run.metrics.items():
        lines.append(
            f"{component_id:<24} {metrics.component_type:<16} {sum(metrics.rows_in.values()):>10,} "
            f"{sum(metrics.rows_out.values()):>10,} {metrics.rows_dropped:>8,} {metrics.rows_rejected:>9,}"
        )
        for label, counts in _breakdown(metrics):
            lines.append(f"{'':<26}{label}: {', '.join(f'{key} {value:,}' for key, value in counts.items())}")
    if dry_run:
        for component_id, (table, mode, path) in run.would_load.items():
            rows = run.metrics[component_id].rows_out.get("target", 0)
            lines.append(
                f"dry run: {component_id} would {mode} {rows:,} rows into {table}; they are in {path}"
            )
        lines.append(f"dry run: file outputs are under {run.out_dir}; nothing else was written")
    return "\n".join(lines)


def _breakdown(metrics: ComponentMetrics) -> list[tuple[str, dict]]:
    """Counters by port, reason and detail, each sorted by name so that the report does not depend on
    the order the engine met them in."""
    found = []
    if len(metrics.rows_out) > 1:
        found.append(("out per port", metrics.rows_out))
    if metrics.reject_reasons:
        found.append(("reject reasons", metrics.reject_reasons))
    found += [
        (group, counts) for group, counts in sorted(metrics.details.items()) if isinstance(counts, dict)
    ]
    return [(label, dict(sorted(counts.items()))) for label, counts in found]
