"""Run-scoped staging directories on local or shared disk: ``<root>/<dag_id>/<run>/``."""

from __future__ import annotations

import shutil
from pathlib import Path


def remove_stale_runs(staging_root: str | Path, retention_days: float, now: float) -> list[Path]:
    """Delete ``<root>/<dag_id>/<run>/`` directories not modified for ``retention_days``; returns them.

    Failed runs leave their staged data behind for a retry; this bounds how long it stays on disk.
    """
    root = Path(staging_root)
    if not root.is_dir():
        return []
    cutoff = now - retention_days * 86400
    removed = []
    for run_dir in sorted(p for dag_dir in root.iterdir() if dag_dir.is_dir() for p in dag_dir.iterdir()):
        newest = max((p.stat().st_mtime for p in run_dir.rglob("*")), default=run_dir.stat().st_mtime)
        if run_dir.is_dir() and newest < cutoff:
            shutil.rmtree(run_dir, ignore_errors=True)
            removed.append(run_dir)
    return removed
