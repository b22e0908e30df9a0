"""The sensor of a job DAG: ``_wait_<reader>`` before a file reader whose config has ``wait_for_input``."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException

from etlkit.common.errors import BadInputError
from etlkit.operators.jobs import load_job_file, run_context_of

log = logging.getLogger(__name__)


class WaitForInputSensor(BaseSensorOperator):
    """Waits, in reschedule mode (no worker slot held between checks), until a reader's input exists.

    After ``timeout`` the task fails without retries, naming the file it waited for.
    """

    template_fields = ("job_file", "run_context")

    def __init__(self, *, job_file: str, component_id: str, run_context: Any, **kwargs):
        super().__init__(mode="reschedule", **kwargs)
        self.job_file, self.component_id, self.run_context = job_file, component_id, run_context
        self._waited_for: Path | None = None

    def poke(self, context) -> bool:
        run_context = run_context_of(self.run_context)
        config = load_job_file(self.job_file).components[self.component_id].config
        try:
            self._waited_for = run_context.file_path(self.render_template(config.path, context), config.conn)
        except BadInputError as error:
            raise AirflowFailException(f"{self.component_id}: {error}") from None
        from etlkit.jobs.components import matching_files  # pyarrow: not at DAG parse time

        found = matching_files(self._waited_for)
        log.info("%s: %s %s", self.component_id, self._waited_for, "found" if found else "not there yet")
        return bool(found)

    def execute(self, context) -> Any:
        from airflow.sdk.exceptions import AirflowSensorTimeout

        try:
            return super().execute(context)
        except AirflowSensorTimeout as error:
            raise AirflowSensorTimeout(
                f"{self.component_id}: input file {self._waited_for} did not appear within "
                f"{timedelta(seconds=self.timeout)}; place the file and clear {self.task_id}, or check the "
                f"upstream export ({error})"
            ) from None
