"""A whole job in one process: every component in its own thread, at once.

A component that reads one route gets its batches through a bounded in-memory queue from the
component that emits them, so a chain like read → filter → convert → load streams without staging,
with at most ``QUEUE_BATCHES`` batches waiting on each edge; Arrow kernels, file reads and COPY
release the GIL, so the stages overlap. A component that reads several routes (a join, a merge)
reads them, one after the other, from staging once their writers have committed: a queue there
could block its producer forever while the reader drains another route.

The first failure stops every thread and is raised; nothing is committed by a component that did
not finish, and a rerun starts the job over, as one task's retry does.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

from etlkit.common.errors import BadInputError
from etlkit.jobs.arrowlib import pa
from etlkit.jobs.columns import arrow_schema
from etlkit.jobs.metrics import ComponentMetrics
from etlkit.jobs.runtime import ComponentRun, RuntimeIO
from etlkit.jobs.staging import PortWriter, schema_mismatch
from etlkit.jobs.validation import RouteRef, ValidatedJob

# One batch waiting per edge: each component still overlaps with its neighbours (one works on a batch
# while the next one waits), and every extra batch per edge cost ~1.5 MiB of peak on the orders
# benchmark for no measured gain in time.
QUEUE_BATCHES = 1
_POLL_SECONDS = 0.2
_END = object()


class Stopped(Exception):
    """Another component failed: this one stops without committing."""


def _caused_by_stop(error: BaseException | None) -> bool:
    """Whether ``error`` is a ``Stopped``, or was raised while handling one (psycopg turns a COPY left
    by an exception into its own error, with the exception as context)."""
    while error is not None:
        if isinstance(error, Stopped):
            return True
        error = error.__cause__ or error.__context__
    return False


class _Channel:
    """One queued edge: batches of ``source.port`` for one reader."""

    def __init__(self, stop: threading.Event):
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_BATCHES)
        self._stop = stop

    def put(self, item) -> None:
        while True:
            if self._stop.is_set():
                raise Stopped
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        while True:
            if self._stop.is_set():
                raise Stopped
            try:
                item = self._queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            if item is _END:
                return
            yield item


class _FanOut:
    """A port's writer: its queued readers and, when any reader reads from staging, the staged part."""

    def __init__(self, run: ComponentRun, port: str, staged: PortWriter | None, channels: list[_Channel]):
        self._staged, self._channels = staged, channels
        self._checked = (run.component.id, port, arrow_schema(run.out_schema(port)))

    def write(self, batch: pa.RecordBatch) -> None:
        problem = schema_mismatch(*self._checked, batch.schema)
        if problem is not None:
            raise BadInputError(problem)
        if self._staged is not None:
            self._staged.write(batch)
        for channel in self._channels:
            channel.put(batch)

    def commit(self) -> None:
        if self._staged is not None:
            self._staged.commit()
        for channel in self._channels:
            channel.put(_END)

    def abort(self) -> None:
        if self._staged is not None:
            self._staged.abort()


class _FusedRun(ComponentRun):
    def __init__(self, job: FusedJob, component_id: str):
        super().__init__(job.validated, component_id, job.io, job.metrics[component_id])
        self.job = job

    def read_route(self, port: str, ref: RouteRef) -> Iterator[pa.RecordBatch]:
        channel = self.job.channels.get((ref, self.component.id))
        if channel is None:
            self.job.wait_for(ref.source)
            yield from super().read_route(port, ref)
            return
        for batch in channel:
            for offset in range(0, batch.num_rows, self.chunk_size):  # re-chunked to this reader's size
                piece = batch.slice(offset, self.chunk_size)
                self.metrics.count_in(port, piece.num_rows)
                self._progress()
                yield piece

    def _open_writers(self) -> None:
        component_id = self.component.id
        for port in sorted(self.validated.routed_ports(component_id)):
            readers = self.job.readers[(component_id, port)]
            routes = [(RouteRef(component_id, port), reader) for reader in readers]
            channels = [self.job.channels[route] for route in routes if route in self.job.channels]
            staged = None
            if len(channels) < len(readers):
                directory = self.io.run_dir / component_id / port
                staged = PortWriter(directory, self.out_schema(port), component_id, port)
            self._writers[port] = _FanOut(self, port, staged, channels)
            self.metrics.rows_out.setdefault(port, 0)


class FusedJob:
    def __init__(self, validated: ValidatedJob, io: RuntimeIO, try_number: int = 1):
        self.validated, self.io = validated, io
        self.stop = threading.Event()
        self.done = {c: threading.Event() for c in validated.order}
        self.metrics = {
            c: ComponentMetrics(c, validated.components[c].type, try_number=try_number)
            for c in validated.order
        }
        self.errors: list[BaseException] = []
        self.readers: dict[tuple[str, str], list[str]] = {}
        self.channels: dict[tuple[RouteRef, str], _Channel] = {}
        for reader, ports in validated.inputs.items():
            refs = [ref for routes in ports.values() for ref in routes]
            for ref in refs:
                self.readers.setdefault((ref.source, ref.port), []).append(reader)
                if len(refs) == 1:
                    self.channels[(ref, reader)] = _Channel(self.stop)

    def wait_for(self, component_id: str) -> None:
        while not self.done[component_id].wait(_POLL_SECONDS):
            if self.stop.is_set():
                raise Stopped

    def _run_one(self, component_id: str) -> None:
        try:
            _FusedRun(self, component_id).run()
            self.metrics[component_id].finish("success")
            self.done[component_id].set()
        except BaseException as error:  # re-raised by run() in the calling thread
            if _caused_by_stop(error):
                self.metrics[component_id].finish("stopped")
                return
            self.metrics[component_id].finish("failed", error)
            self.errors.append(error)
            self.stop.set()

    def run(self) -> dict[str, ComponentMetrics]:
        threads = [
            threading.Thread(target=self._run_one, args=(c,), name=f"etlkit-{c}", daemon=True)
            for c in self.validated.order
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.errors:
            raise self.errors[0]
        return self.metrics


def run_fused(validated: ValidatedJob, io: RuntimeIO, try_number: int = 1) -> dict[str, ComponentMetrics]:
    """Runs every component of ``validated`` in this process at once; their metrics by component id.
    On a failure, the first error is raised once every thread has ended; the metrics then say which
    component failed and which were stopped by it (``stopped``)."""
    return FusedJob(validated, io, try_number).run()
