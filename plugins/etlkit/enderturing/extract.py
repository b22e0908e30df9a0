"""Extraction from an Ender Turing client into staged files (spec §1.4–§1.7, §4).

The client is anything with the ``EnderTuringHook`` methods ``get_dictionary``,
``iter_session_pages`` and ``get_session_detail``; this module does not import Airflow.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from etlkit.common.errors import BadInputError
from etlkit.enderturing import staging
from etlkit.enderturing.errors import EnderTuringRequestError
from etlkit.enderturing.filters import Pass, Window, encode, expression
from etlkit.enderturing.settings import EnderTuringSettings
from etlkit.enderturing.transform import Transformer, Uncoercible, to_int

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

DICTIONARY_ENDPOINTS = (
    ("/agents", 999, "agents"),
    ("/categories", None, "categories"),
    ("/agent-groups", None, "groups"),
    ("/labels", None, "labels"),
    ("/scorecards", None, "scorecards"),
    ("/tags", 9999, "tags"),
    ("/users", 999, "users"),
)


class Client(Protocol):
    def get_dictionary(self, path: str, limit: int | None = None) -> list[dict]: ...

    def iter_session_pages(
        self, encoded_filters: str, page_size: int, max_items: int | None = None
    ) -> Iterator[tuple[int | None, list[dict]]]: ...

    def get_session_detail(self, session_id: str, endpoint: str) -> Any: ...


@dataclass
class ExtractReport:
    windows: dict[str, dict[str, int]] = field(default_factory=dict)
    sessions: int = 0
    detail_calls: int = 0
    detail_failures: int = 0


# ---- dictionaries ---------------------------------------------------------------------------


def fetch_dictionaries(client: Client) -> dict[str, list[dict]]:
    return {name: client.get_dictionary(path, limit) for path, limit, name in DICTIONARY_ENDPOINTS}


def transform_dictionaries(dictionaries: dict[str, list[dict]], transformer: Transformer) -> None:
    for name, items in dictionaries.items():
        getattr(transformer, name)(items)


def _parse_moment(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def changed_categories(categories: list[dict], watermark: str | None) -> tuple[list[int], str | None]:
    """Ids of categories updated after ``watermark`` (all when there is none) and the next candidate.

    The candidate is the larger of the watermark and the maximum unrounded ``updated_at``; never now().
    """
    mark = _parse_moment(watermark)
    changed, newest = [], mark
    for category in categories:
        updated = _parse_moment(category.get("updated_at"))
        if mark is None or (updated is not None and updated > mark):
            changed.append(int(category["id"]))
        if updated is not None and (newest is None or updated > newest):
            newest = updated
    return sorted(changed), newest.isoformat(timespec="microseconds") if newest else None


# ---- session listing ------------------------------------------------------------------------


def fetch_window(
    client: Client,
    window: Window,
    pass_: Pass,
    settings: EnderTuringSettings,
    directory: Path,
    budget: int | None,
) -> list[tuple[Window, Path, int]]:
    """Fetch one window into NDJSON, splitting it while its ``total`` reaches ``window_cap``."""
    pending, done = [window], []
    while pending:
        current = pending.pop(0)
        path = directory / f"{pass_.name}__{current.label}.ndjson"
        count, too_big = 0, False
        filters = encode(expression(current, pass_.extra_filter))
        remaining = None if budget is None else budget - sum(n for _, _, n in done)
        with path.open("w", encoding="utf-8") as out:
            if remaining is None or remaining > 0:
                for total, items in client.iter_session_pages(
                    filters, settings.effective_page_size, remaining
                ):
                    seen = total if total is not None else count + len(items)
                    # A test-mode limit below the cap stops paging before the cap; any other
                    # listing at the cap splits, whatever the limit.
                    if seen >= settings.window_cap and (
                        remaining is None or remaining >= settings.window_cap
                    ):
                        too_big = True
                        break
                    count += staging.write_ndjson(out, items)
        if too_big:
            path.unlink()
            if current.is_single_minute:
                raise BadInputError(
                    f"window {current.date_range} ({pass_.name}) still has >= {settings.window_cap} sessions "
                    "in one minute: raise window_cap"
                )
            log.info(
                "window %s (%s) reached the cap %s: splitting",
                current.date_range,
                pass_.name,
                settings.window_cap,
            )
            pending[:0] = list(current.split())
            continue
        done.append((current, path, count))
    return done


def fetch_details(
    client: Client,
    sessions: Iterable[dict],
    settings: EnderTuringSettings,
    target: Path,
    report: ExtractReport,
    *,
    concurrency: int,
) -> None:
    """Per-session scores/summary/comments, at most ``concurrency`` calls in flight, written as NDJSON.

    A 404 is an empty answer; another 4xx leaves that session's rows for that endpoint untouched
    and is counted (the task fails past ``max_detail_failures``); anything else fails the task.
    """

    def calls() -> Iterator[tuple[str, str]]:
        for session in sessions:
            if session["reviewers"]:
                yield session["id"], "scores"
            if settings.fetch_summaries:
                yield session["id"], "summary"
            if settings.fetch_comments and _may_have_comments(session["comments_count"]):
                yield session["id"], "comments"

    def call(session_id: str, endpoint: str) -> tuple[str, str, Any, EnderTuringRequestError | None]:
        try:
            return session_id, endpoint, client.get_session_detail(session_id, endpoint), None
        except EnderTuringRequestError as exc:
            if not exc.is_client_error:
                raise
            return session_id, endpoint, None, exc

    pool = ThreadPoolExecutor(concurrency)
    try:
        with target.open("w", encoding="utf-8") as out:
            results = bounded_map(pool, lambda c: call(*c), calls(), DETAILS_AHEAD * concurrency)
            _write_details(results, out, settings, report)
    finally:
        pool.shutdown(cancel_futures=True)  # a failure stops the queued calls instead of waiting for them


# Calls submitted ahead per worker: enough to keep every worker busy while answers are written.
DETAILS_AHEAD = 4


def bounded_map(pool: Executor, function: Callable[[T], R], items: Iterable[T], ahead: int) -> Iterator[R]:
    """``pool.map`` in order, with at most ``ahead`` calls submitted and not yet consumed: a slow
    call holds back a few finished answers, never the whole batch's (``Executor.map`` submits all)."""
    in_flight: deque[Future[R]] = deque()
    for item in items:
        if len(in_flight) >= ahead:
            yield in_flight.popleft().result()
        in_flight.append(pool.submit(function, item))
    while in_flight:
        yield in_flight.popleft().result()


def _write_details(
    results: Iterator[tuple], out: Any, settings: EnderTuringSettings, report: ExtractReport
) -> None:
    for session_id, endpoint, body, error in results:
        report.detail_calls += 1
        if error is not None:
            report.detail_failures += 1
            log.warning("detail call failed, rows kept as they are: %s", error)
            if report.detail_failures > settings.max_detail_failures:
                raise BadInputError(
                    f"{report.detail_failures} per-session calls failed (max_detail_failures="
                    f"{settings.max_detail_failures}); last: {error}"
                )
            continue
        staging.write_ndjson(out, [{"session_id": session_id, "endpoint": endpoint, "body": body}])


def _may_have_comments(comments_count: Any) -> bool:
    try:
        return (to_int(comments_count) or 0) > 0
    except Uncoercible:
        return True  # a count we cannot read: ask (the endpoint answers 404 or an empty list)


def transform_sessions(staging_dir: Path, transformer: Transformer, part: int = 0, parts: int = 1) -> None:
    """Staged sessions and details → rows of tables 13–20 in the transformer's sink.

    With ``parts`` > 1 only this part's share of the lines; every session (and every detail record)
    is in exactly one part, so the parts never stage the same key twice.
    """
    sessions = staging.read_ndjson(staging_dir / staging.SESSIONS_FILE, part, parts)
    for position, session in enumerate(sessions):
        session_id = transformer.session(session, f"/sessions item {position * parts + part}")
        if session.get("reviewers") == []:
            transformer.scores(session_id, None)  # no reviewers any more: no score rows either
    details = staging_dir / staging.DETAILS_FILE
    if not details.exists():
        return
    handlers = {
        "scores": transformer.scores,
        "summary": transformer.summaries,
        "comments": transformer.comments,
    }
    for record in staging.read_ndjson(details, part, parts):
        handlers[record["endpoint"]](record["session_id"], record["body"])


# Below this, starting worker processes costs more than it saves (about 4k sessions).
PARALLEL_TRANSFORM_MIN_BYTES = 8 << 20


@dataclass
class SpooledBatch:
    spools: list[staging.CopySpool]
    row_counts: Counter[str]
    warnings: Counter[str]


def _spool_part(staging_dir: Path, spool_dir: Path, part: int, parts: int) -> tuple[dict, dict]:
    with staging.CopySpool(spool_dir) as spool:
        transformer = Transformer(spool)
        transform_sessions(staging_dir, transformer, part, parts)
    return spool.row_counts, dict(transformer.warnings)


def spool_sessions(staging_dir: Path, spool_root: Path, workers: int = 1) -> SpooledBatch:
    """Transform the staged batch into COPY files, in ``workers`` processes (one spool each).

    The transform is pure Python and CPU-bound; processes side-step the GIL. Spawned, not forked,
    so no Airflow task state is shared with the children.
    """
    small = (staging_dir / staging.SESSIONS_FILE).stat().st_size < PARALLEL_TRANSFORM_MIN_BYTES
    parts = 1 if small else max(workers, 1)
    directories = [spool_root / f"part-{part}" for part in range(parts)]
    if parts == 1:
        results = [_spool_part(staging_dir, directories[0], 0, 1)]
    else:
        with ProcessPoolExecutor(parts, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_spool_part, staging_dir, directories[p], p, parts) for p in range(parts)]
            results = [future.result() for future in futures]
    batch = SpooledBatch([staging.CopySpool(d) for d in directories], Counter(), Counter())
    for row_counts, warnings in results:
        batch.row_counts.update(row_counts)
        batch.warnings.update(warnings)
    return batch


def list_sessions(
    client: Client, passes: list[Pass], settings: EnderTuringSettings, staging_dir: Path
) -> tuple[StagedSessions, ExtractReport]:
    windows_dir = staging_dir / staging.WINDOWS_DIR
    windows_dir.mkdir(parents=True, exist_ok=True)
    report = ExtractReport()
    files: list[Path] = []
    for pass_ in passes:
        taken = 0
        per_window = report.windows.setdefault(pass_.name, {})
        for window in pass_.windows():
            budget = None if settings.limit_sessions is None else settings.limit_sessions - taken
            for fetched, path, count in fetch_window(client, window, pass_, settings, windows_dir, budget):
                per_window[fetched.label] = count
                files.append(path)
                taken += count
    target = staging_dir / staging.SESSIONS_FILE
    report.sessions = staging.dedupe_sessions(files, target)
    return StagedSessions(target, report.sessions), report


class StagedSessions:
    """The batch's distinct sessions as the detail calls need them (id, reviewers, comments_count),
    read back from the staged file at each iteration: memory does not grow with the batch."""

    def __init__(self, path: Path, count: int):
        self.path = path
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[dict]:
        for session in staging.read_ndjson(self.path):
            yield {key: session.get(key) for key in ("id", "reviewers", "comments_count")}
