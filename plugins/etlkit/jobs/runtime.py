"""Runs one component of a validated job: reads staged inputs, writes staged outputs, counts metrics.

The port layer (``ComponentRun.read`` / ``emit``) does all counting, so every component type
reports identical counters. Deterministic problems (bad config or data with ``fail`` policies,
schema drift, limits) raise ``BadInputError``; anything else (network, database down)
propagates unchanged so that the task is retried.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etlkit.common.errors import BadInputError
from etlkit.jobs.arrowlib import pa
from etlkit.jobs.columns import Schema, arrow_schema
from etlkit.jobs.components import RUNNERS
from etlkit.jobs.metrics import ComponentMetrics
from etlkit.jobs.staging import (
    PortWriter,
    StagedOutputMissing,
    StagingError,
    clear_component_output,
    missing_output_message,
    read_port,
    schema_mismatch,
)
from etlkit.jobs.validation import ValidatedJob

log = logging.getLogger(__name__)
PROGRESS_EVERY_CHUNKS = 10


@dataclass
class RuntimeIO:
    """What the runtime needs from its host (the Airflow operator, or a test/benchmark)."""

    run_dir: Path  # or an airflow.sdk.ObjectStoragePath (see staging)
    # (templated path, logical conn or None) -> absolute, rendered path inside the allowed root
    resolve_path: Callable[[str, str | None], Path]
    # logical conn -> context manager yielding an open psycopg connection
    sql_connection: Callable[[str], contextlib.AbstractContextManager]
    # renders a templated value (read_sql params)
    render: Callable[[Any], Any] = lambda value: value
    # for the message when an upstream output is missing: the configured root, _prepare's host
    staging_root: str | None = None
    prepared_on: str | None = None
    # the logical run (dag id and logical date, or run id) that append mode writes once for;
    # None (tests, benchmarks): the run's staging directory stands for it
    run_key: str | None = None

    def append_key(self, component_id: str, table: str) -> str:
        from etlkit.jobs.sqlwrite import append_ledger_key  # psycopg only in the tasks that write SQL

        return append_ledger_key(self.run_key or str(self.run_dir), component_id, table)

    def staging_failure(self, error: StagingError) -> BadInputError:
        """Permanent: a finished upstream's manifest that is not visible now will not appear by retrying
        (it is on another host's disk, or was removed); a retry could only succeed by landing on the
        host that has it, which would hide the misconfiguration."""
        if isinstance(error, StagedOutputMissing):
            return BadInputError(
                missing_output_message(
                    error.directory, self.run_dir, self.staging_root, self.prepared_on, socket.gethostname()
                )
            )
        return BadInputError(str(error))


class ComponentRun:
    def __init__(self, validated: ValidatedJob, component_id: str, io: RuntimeIO, metrics: ComponentMetrics):
        self.validated = validated
        self.component = validated.components[component_id]
        self.config = self.component.config
        self.io = io
        self.metrics = metrics
        self.chunk_size = validated.chunk_size(component_id)
        self._writers: dict[str, PortWriter] = {}
        self._chunks = 0

    def _progress(self) -> None:
        self._chunks += 1
        if self._chunks % PROGRESS_EVERY_CHUNKS == 0:
            log.info(
                "%s: %d chunks, rows in %s, rows out %s",
                self.component.id,
                self._chunks,
                self.metrics.rows_in,
                self.metrics.rows_out,
            )

    # ---- port layer -------------------------------------------------------------------------

    def in_schema(self, port: str = "in") -> Schema:
        return self.validated.in_schemas[(self.component.id, port)]

    def out_schema(self, port: str) -> Schema:
        return self.validated.out_schemas[(self.component.id, port)]

    def read(self, port: str = "in") -> Iterator[pa.RecordBatch]:
        """Batches of every route into ``port``, in route order; counts ``rows_in``."""
        self.metrics.rows_in.setdefault(port, 0)
        for ref in self.validated.inputs[self.component.id][port]:
            yield from self.read_route(port, ref)

    def read_route(self, port: str, ref) -> Iterator[pa.RecordBatch]:
        schema = self.validated.out_schemas[(ref.source, ref.port)]
        try:
            for batch in read_port(self.io.run_dir / ref.source / ref.port, schema, self.chunk_size):
                self.metrics.count_in(port, batch.num_rows)
                self._progress()
                yield batch
        except StagingError as error:
            raise self.io.staging_failure(error) from None

    def emit(self, port: str, batch: pa.RecordBatch) -> None:
        """Hands one batch to ``port``: checked against the port schema, staged if routed."""
        if not self.validated.inputs[self.component.id]:
            self._progress()
        writer = self._writers.get(port)
        if writer is None:
            problem = schema_mismatch(
                self.component.id, port, arrow_schema(self.out_schema(port)), batch.schema
            )
            if problem is not None:
                raise BadInputError(problem)
            self.metrics.rows_dropped += batch.num_rows
            return
        writer.write(batch)
        self.metrics.count_out(port, batch.num_rows)

    def count_source(self, rows: int) -> None:
        self.metrics.count_in("source", rows)

    def count_target(self, rows: int) -> None:
        self.metrics.count_out("target", rows)

    def _open_writers(self) -> None:
        for port in sorted(self.validated.routed_ports(self.component.id)):
            self._writers[port] = PortWriter(
                self.io.run_dir / self.component.id / port, self.out_schema(port), self.component.id, port
            )
            self.metrics.rows_out.setdefault(port, 0)

    def run(self) -> ComponentMetrics:
        clear_component_output(self.io.run_dir, self.component.id)
        self._open_writers()
        try:
            RUNNERS[self.component.type](self)
        except BaseException:
            for writer in self._writers.values():
                writer.abort()
            raise
        for writer in self._writers.values():
            writer.commit()
        return self.metrics


def run_component(validated: ValidatedJob, component_id: str, io: RuntimeIO, metrics: ComponentMetrics):
    return ComponentRun(validated, component_id, io, metrics).run()


def run_job(validated: ValidatedJob, io: RuntimeIO) -> dict[str, ComponentMetrics]:
    """Every component in topological order in this process (tests, benchmark, local checks)."""
    results = {}
    for component_id in validated.order:
        component = validated.components[component_id]
        metrics = ComponentMetrics(component_id, component.type)
        run_component(validated, component_id, io, metrics)
        metrics.finish("success")
        results[component_id] = metrics
    return results
