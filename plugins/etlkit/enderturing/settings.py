"""The settings of an Ender Turing run (docs/enderturing.md, Settings): one model, every field once.

Resolved per run by ``EnderTuringSettings.resolve`` (etlkit.common.settings): the defaults below, the
DAG file's ``settings_defaults``, env ``ETLKIT_ENDERTURING_<NAME>``, the Variable
``enderturing_settings`` (a JSON object), then the run's Params of the same names (null keeps the
configured value). Connection ids are operator arguments; ``detail_concurrency`` is an extra of the
Ender Turing connection (the API's rate limit belongs to the tenant, not to a run).
"""

from __future__ import annotations

from pydantic import Field

from etlkit.common.settings import Integer, PipelineSettings


class EnderTuringSettings(PipelineSettings):
    VARIABLE = "enderturing_settings"
    ENV_PREFIX = "ETLKIT_ENDERTURING_"
    RUN_PARAMS = (
        "limit_sessions",
        "run_resync",
        "resync_lookback_days",
        "window_cap",
        "page_size",
        "fetch_summaries",
        "fetch_comments",
        "max_detail_failures",
    )

    limit_sessions: Integer | None = Field(
        None,
        ge=1,
        description="test mode: at most this many sessions per pass; the category watermark stays put",
    )
    run_resync: bool = Field(
        True, description="the manual-scores and changed-categories passes (never for backfills)"
    )
    resync_lookback_days: Integer = Field(30, ge=0, description="the re-sync passes cover days D-N..D")
    window_cap: Integer = Field(
        10_000, ge=2, description="split a listing window when its total reaches this"
    )
    page_size: Integer = Field(500, ge=1, description="listing page size")
    fetch_summaries: bool = Field(True, description="call /sessions/{id}/summary for every session")
    fetch_comments: bool = Field(False, description="call /sessions/{id}/comments for sessions with comments")
    max_detail_failures: Integer = Field(
        10, ge=0, description="non-retryable 4xx answers of per-session calls tolerated in one run"
    )

    @property
    def effective_page_size(self) -> int:
        return min(self.page_size, self.limit_sessions) if self.limit_sessions else self.page_size
