"""The Sierra → Signum backend sync as one operator (one task, per the spec)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import psycopg
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

from etlkit.common.assets import SIGNUM_ITEMS, record_asset_event
from etlkit.common.errors import BadInputError
from etlkit.common.lineage import LineageReporting, sierra_lineage
from etlkit.common.retry import RetriesExhausted
from etlkit.sierra.budget import RUN_TIME_SOURCES, check_execution_timeout, run_deadline
from etlkit.sierra.protocol import BackendHttpError
from etlkit.sierra.settings import SierraSettings
from etlkit.sierra.sync import run_metrics, run_sync

# Errors the sync has already retried as far as the spec allows, or that no retry can fix:
# the task fails at once instead of re-running the whole sync (the next tick is the outer retry).
FINAL_ERRORS = (BadInputError, BackendHttpError, RetriesExhausted, psycopg.Error, AirflowNotFoundException)


def _emit_metric(name: str, value: float) -> None:
    from airflow.sdk.observability.stats import Stats

    if name.endswith("_seconds"):
        Stats.gauge(name, value)
    else:
        Stats.incr(name, int(value))


class SierraSignumSyncOperator(LineageReporting, BaseOperator):
    """Ask the backend what it needs, extract it from Sierra as gzip TSV, post it; loop in full mode.

    :param sierra_conn_id: the Sierra DB (``SierraHook.default_conn_name``).
    :param backend_conn_id: the Signum backend (``SignumBackendHook.default_conn_name``).
    :param settings_defaults: ``SierraSettings`` values of this DAG file, below env, Variable and Params.
    """

    template_fields = ("sierra_conn_id", "backend_conn_id")

    # The hooks' default_conn_name, written out: importing the hooks here would load the postgres
    # and http providers at every parse of the DAG file (~0.5 s). A unit test holds them equal.
    def __init__(
        self,
        *,
        sierra_conn_id: str = "sierra_dna",
        backend_conn_id: str = "signum_backend",
        settings_defaults: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.sierra_conn_id = sierra_conn_id
        self.backend_conn_id = backend_conn_id
        self.settings_defaults = dict(settings_defaults or {})

    def execute(self, context) -> dict:
        from etlkit.hooks.sierra import SierraHook
        from etlkit.hooks.signum import SignumBackendHook

        started = time.monotonic()
        try:
            settings = SierraSettings.resolve(context, defaults=self.settings_defaults)
            check_execution_timeout(self.execution_timeout, settings, RUN_TIME_SOURCES)
            backend = SignumBackendHook(
                self.backend_conn_id, settings.get_timeout_seconds, settings.post_timeout_seconds
            )
            backend.api_key()  # fail fast without a key; registers it with the secret masker
            sierra = SierraHook(self.sierra_conn_id)
            sierra.check_connection()  # a missing or port-less connection fails before any request
            deadline = run_deadline(started, self.execution_timeout)
            summary = run_sync(sierra, backend, settings, metric=_emit_metric, deadline=deadline)
        except FINAL_ERRORS as exc:
            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
        self.log.info("sierra sync summary: %s", json.dumps(summary))
        dry_run = settings.dry_run_dir is not None
        run_metrics(summary, settings).log(run_id=context.get("run_id"), task=self.task_id)
        if not dry_run:
            self.note_lineage(sierra_lineage(self.sierra_conn_id, self.backend_conn_id, summary))
        keys = ("mode", "batches", "rows", "full_sync_completed")
        record_asset_event(context, SIGNUM_ITEMS, {"dry_run": dry_run, **{k: summary.get(k) for k in keys}})
        return summary
