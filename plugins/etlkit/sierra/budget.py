"""The worst case a run may take under its settings, and the check that ``execution_timeout`` covers it.

A batch's worst case: every operation makes all its attempts, each attempt runs to its timeout and
every wait is the longest allowed (``retry_max_seconds``, also the cap on a 429's ``Retry-After``).
A POST retry is preceded by a reconciliation GET with its own retries. One extraction attempt is
bounded by ``statement_timeout_seconds`` as a whole (``SierraSnapshot`` gives each statement what is
left). The full-sync loop starts a further batch only while the time left covers one more worst
case, so a run never outlasts ``execution_timeout`` as long as one batch fits in it: that is what
``check_execution_timeout`` requires, at parse time (the settings visible without I/O) and at run
time (the run's settings).

Not covered: the time to open a TCP connection to Sierra (``connect_timeout``: the hook's 10 s unless
the connection's extra says otherwise) and the cleanup after the last batch
(``SETUP_AND_CLEANUP_SECONDS``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from etlkit.common.errors import ConfigurationError
from etlkit.common.retry import Backoff
from etlkit.sierra.settings import SierraSettings

SETUP_AND_CLEANUP_SECONDS = 60
VARIABLE_ENV = "AIRFLOW_VAR_" + SierraSettings.VARIABLE.upper()
PARSE_TIME_SOURCES = f"the defaults, {SierraSettings.ENV_PREFIX}* and {VARIABLE_ENV}"
RUN_TIME_SOURCES = (
    f"the run's settings (Variable {SierraSettings.VARIABLE}, {SierraSettings.ENV_PREFIX}*, params)"
)


def _db_waits(settings: SierraSettings) -> float:
    """The longest the extraction's retries wait (the sync's own Backoff)."""
    return Backoff(
        settings.retry_attempts, settings.retry_base_seconds, settings.retry_max_seconds
    ).longest_waits()


def worst_case_batch_seconds(settings: SierraSettings) -> float:
    attempts, longest_wait = settings.retry_attempts, settings.retry_max_seconds
    get = attempts * settings.get_timeout_seconds + (attempts - 1) * longest_wait
    post = attempts * settings.post_timeout_seconds + (attempts - 1) * (longest_wait + get)
    extract = attempts * settings.statement_timeout_seconds + _db_waits(settings)
    return get + extract + post


def check_execution_timeout(
    execution_timeout: timedelta | None, settings: SierraSettings, where: str
) -> None:
    """ConfigurationError unless ``execution_timeout`` exceeds one worst-case batch (plus setup)."""
    needed = worst_case_batch_seconds(settings) + SETUP_AND_CLEANUP_SECONDS
    if execution_timeout is None:
        raise ConfigurationError("sync_items needs an execution_timeout (it bounds the full-sync loop)")
    if execution_timeout.total_seconds() <= needed:
        raise ConfigurationError(
            f"execution_timeout {execution_timeout.total_seconds():.0f} s does not exceed the worst case "
            f"of one batch under {where}, {needed:.0f} s (retry_attempts x the GET, statement and POST "
            "timeouts, plus the waits): Airflow could kill the task mid-batch. Raise "
            "SIERRA_SYNC_EXECUTION_TIMEOUT_MINUTES or lower retry_attempts, retry_max_seconds, "
            "get/post_timeout_seconds or statement_timeout_seconds"
        )


def parse_time_settings(
    defaults: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> SierraSettings:
    """The settings visible while the DAG file is parsed, without I/O: the run's sources less the
    Params, with the Variable only when it is given as an environment variable (``VARIABLE_ENV``)."""
    environ = os.environ if environ is None else environ
    return SierraSettings.resolve(
        defaults=defaults, environ=environ, variable=environ.get(VARIABLE_ENV), read_variable=False
    )


def run_deadline(started: float, execution_timeout: timedelta) -> float:
    """When the last batch must end (on the clock of ``started``), leaving time to clean up."""
    return started + execution_timeout.total_seconds() - SETUP_AND_CLEANUP_SECONDS
