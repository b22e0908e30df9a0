"""The engine's Arrow allocations, the C++ readers, writers and kernels included, come from jemalloc."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

# A Parquet round trip and a kernel, as a component does; prints the peak of each pool.
CHILD = """
import io, json
from etlkit.jobs.arrowlib import pa, pc
import pyarrow.parquet as pq
batch = pa.record_batch({"n": pa.array(range(100_000)), "s": pa.array([str(i) for i in range(100_000)])})
sink = io.BytesIO()
with pq.ParquetWriter(sink, batch.schema, compression="zstd") as writer:
    writer.write_batch(batch)
for part in pq.ParquetFile(io.BytesIO(sink.getvalue())).iter_batches(batch_size=10_000):
    pc.sum(pc.utf8_length(part.column("s")))
print(json.dumps({"jemalloc": pa.jemalloc_memory_pool().max_memory(),
                  "mimalloc": pa.mimalloc_memory_pool().max_memory()}))
"""


def pool_peaks(**env: str) -> dict[str, int]:
    environment = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    environment["PYTHONPATH"] = str(REPO_ROOT / "plugins")
    completed = subprocess.run(
        [sys.executable, "-c", CHILD], env={**environment, **env}, capture_output=True, text=True, check=True
    )
    return json.loads(completed.stdout)


def test_parquet_and_kernels_allocate_from_jemalloc_by_default():
    peaks = pool_peaks()
    assert peaks["jemalloc"] > 1_000_000
    assert peaks["mimalloc"] == 0


def test_a_pool_chosen_in_the_environment_is_kept():
    assert pool_peaks(ARROW_DEFAULT_MEMORY_POOL="mimalloc")["mimalloc"] > 1_000_000


# What a component process loads: the engine, a conversion and Python values made into Arrow arrays.
LOADED = """
import datetime, decimal, sys
from etlkit.jobs.columns import Column, arrow_array
from etlkit.jobs.models import ConversionRule
from etlkit.jobs.vconvert import convert_column
arrow_array([decimal.Decimal("1.20"), None])
arrow_array([datetime.date(2025, 1, 2), None])
arrow_array([["nested"], []])
rule = ConversionRule(column="n", to="integer")
convert_column(arrow_array(["1", "x", None]), rule, Column("n", "integer"))
print(" ".join(name for name in ("pandas", "numpy.ma") if name in sys.modules) or "neither")
"""


def test_a_component_loads_neither_pandas_nor_numpy_masked_arrays():
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "plugins")}
    completed = subprocess.run(
        [sys.executable, "-c", LOADED], env=environment, capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == "neither"
