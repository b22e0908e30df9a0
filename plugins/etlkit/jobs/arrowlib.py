"""pyarrow for the jobs engine, without pandas.

pyarrow imports pandas the first time it converts a Python value (``pyarrow.scalar(1)``) to ask
whether it is a pandas object. In a component task that costs ~50 MiB and seconds of start-up for
nothing: the engine never hands pandas objects to pyarrow. When pandas is not loaded yet, this
module lets pyarrow's pandas check run once with pandas unimportable, so pyarrow remembers "no
pandas" for its conversions. pandas itself stays importable; ``Table.to_pandas`` still imports it.
"""

from __future__ import annotations

import os
import sys
from importlib.abc import MetaPathFinder

# Arrow's C++ readers and kernels allocate from the process default pool, which Arrow picks from this
# variable on first use; ``pa.set_memory_pool`` below only reaches allocations made through Python
# calls. An explicit choice in the environment wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["pa", "pc"]


class _PandasHidden(MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("hidden from pyarrow's first pandas check")
        return None


def _check_pandas_without_it() -> None:
    if "pandas" in sys.modules:
        return
    hidden = _PandasHidden()
    sys.meta_path.insert(0, hidden)
    try:
        pa.scalar(0)  # the first conversion runs pyarrow's lazy pandas check
    finally:
        sys.meta_path.remove(hidden)


def _pool_returning_memory() -> None:
    """jemalloc handing freed pages back at once: a component's peak memory then follows the batches it
    holds, not what the allocator kept from earlier ones (mimalloc, pyarrow's default here, keeps far more)."""
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
        pa.jemalloc_set_decay_ms(0)
    except NotImplementedError:  # a pyarrow built without jemalloc keeps its default pool
        pass


def _glibc_malloc_tuned() -> None:
    """Two settings of glibc's malloc, so that memory follows the buffers alive:

    - glibc serves a large allocation (a batch's COPY text, a CSV block) with its own mapping, returned
      to the OS when freed, only while it is above a threshold that glibc raises to the size of each
      such buffer freed; after that, these buffers come from heaps that keep their peak. A fixed
      threshold keeps them mapped.
    - glibc gives each thread that meets contention an arena of its own (up to 8 per core), and each
      keeps its own free memory. A fused job runs a thread per component, while Arrow's buffers come
      from jemalloc: two arenas are enough for the rest. Measured on the orders benchmark, fused: 5 MiB
      less at the peak, the same time.
    """
    if sys.platform != "linux":
        return
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)  # glibc's default, made fixed
        libc.mallopt(M_ARENA_MAX, 2)
    except (OSError, AttributeError):  # not glibc (musl): nothing to tune
        pass


M_MMAP_THRESHOLD = -3  # mallopt parameters, malloc.h
M_ARENA_MAX = -8
_check_pandas_without_it()
_pool_returning_memory()
_glibc_malloc_tuned()
