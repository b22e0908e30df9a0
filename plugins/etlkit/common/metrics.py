"""Run metrics: counted while a task works, logged once, returned as a small XCom."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger("etlkit.metrics")


@dataclass
class RunMetrics:
    pipeline: str
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    bytes_read: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, other: RunMetrics) -> RunMetrics:
        self.rows_read += other.rows_read
        self.rows_loaded += other.rows_loaded
        self.rows_rejected += other.rows_rejected
        self.bytes_read += other.bytes_read
        for key, value in other.extra.items():
            if isinstance(value, int | float) and isinstance(self.extra.get(key, 0), int | float):
                self.extra[key] = self.extra.get(key, 0) + value
        return self

    def as_xcom(self) -> dict[str, Any]:
        return asdict(self)

    def log(self, **context: Any) -> dict[str, Any]:
        payload = {**self.as_xcom(), **context}
        log.info("ETL_METRICS %s", json.dumps(payload, default=str, sort_keys=True))
        return self.as_xcom()
