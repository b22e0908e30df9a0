"""The Sierra → Signum backend sync as one operator (one task, per the spec)."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from airflow.sdk import BaseOperator, Variable
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

from etlkit.common.assets import SIGNUM_ITEMS, record_asset_event
from etlkit.common.errors import BadInputError
from etlkit.common.lineage import LineageReporting, sierra_lineage
from etlkit.common.metrics import RunMetrics
from etlkit.common.retry import RetriesExhausted
from etlkit.sierra.budget import SETUP_AND_CLEANUP_SECONDS, check_execution_timeout
from etlkit.sierra.protocol import BackendHttpError
from etlkit.sierra.settings import SETTINGS_VARIABLE, parse_settings

# Errors the sync has already retried as far as the spec allows, or that no retry can fix:
# the task fails at once instead of re-running the whole sync (the next tick is the outer retry).
FINAL_ERRORS = (BadInputError, BackendHttpError, RetriesExhausted, psycopg.Error, AirflowNotFoundException)


def _emit_metric(name: str, value: float) -> None:
    from airflow.sdk.observability.stats import Stats

    if name.endswith("_seconds"):
        Stats.gauge(name, value)
    else:
        Stats.incr(name, int(value))


def run_metrics(summary: dict, *, dry_run: bool) -> RunMetrics:
    """The run's ``ETL_METRICS``: items extracted, items the backend upserted (none in a dry run)."""
    keys = ("mode", "batches", "full_sync_completed", "itype_fallbacks")
    return RunMetrics(
        "sierra",
        rows_read=summary["rows"],
        rows_loaded=0 if dry_run else summary["rows"],
        extra={"dry_run": dry_run, **{k: summary.get(k) for k in keys}},
    )


class SierraSignumSyncOperator(LineageReporting, BaseOperator):
    """Ask the backend what it needs, extract it from Sierra as gzip TSV, post it; loop in full mode.

    :param settings: the ``sierra_sync_settings`` object (templated; the DAG reads the Variable).
    :param max_batches: overrides ``max_batches_per_run`` for this run.
    :param dry_run_dir: when set, extract the requested batch into this directory and post nothing.
    """

    template_fields = ("settings", "max_batches", "dry_run_dir")

    def __init__(
        self,
        *,
        settings: dict | str | None = None,
        max_batches: int | str | None = None,
        dry_run_dir: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.settings = settings
        self.max_batches = max_batches
        self.dry_run_dir = dry_run_dir

    def _read_settings(self):
        raw = self.settings
        if raw is None:
            raw = Variable.get(SETTINGS_VARIABLE, default=None, deserialize_json=True)
        if isinstance(raw, str):
            raw = json.loads(raw) if raw.strip() else None
        return parse_settings(raw)

    def execute(self, context) -> dict:
        from etlkit.hooks.sierra import SierraHook
        from etlkit.hooks.signum import SignumBackendHook
        from etlkit.sierra.sync import SierraSync

        started = time.monotonic()
        try:
            settings = self._read_settings()
            check_execution_timeout(self.execution_timeout, settings, f"the {SETTINGS_VARIABLE} Variable")
            deadline = started + self.execution_timeout.total_seconds() - SETUP_AND_CLEANUP_SECONDS
            max_batches = int(self.max_batches) if self.max_batches not in (None, "", "None") else None
            backend = SignumBackendHook(
                settings.backend_conn_id, settings.get_timeout_seconds, settings.post_timeout_seconds
            )
            backend.api_key()  # fail fast without a key; registers it with the secret masker
            sierra = SierraHook(settings.sierra_conn_id)
            sierra.check_connection()  # a missing or port-less connection fails before any request
            with tempfile.TemporaryDirectory(prefix="sierra-sync-") as workdir:
                sync = SierraSync(
                    sierra, backend, settings, Path(workdir), metric=_emit_metric, deadline=deadline
                )
                dry_run = Path(self.dry_run_dir) if self.dry_run_dir else None
                summary = sync.run(max_batches=max_batches, dry_run_dir=dry_run)
        except FINAL_ERRORS as exc:
            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
        self.log.info("sierra sync summary: %s", json.dumps(summary))
        run_metrics(summary, dry_run=bool(self.dry_run_dir)).log(
            run_id=context.get("run_id"), task=self.task_id
        )
        if not self.dry_run_dir:
            self.note_lineage(sierra_lineage(settings, summary))
        keys = ("mode", "batches", "rows", "full_sync_completed")
        record_asset_event(
            context, SIGNUM_ITEMS, {"dry_run": bool(self.dry_run_dir), **{k: summary.get(k) for k in keys}}
        )
        return summary
