"""Local services shared by the test suite, the demo and the benchmarks (never imported by DAGs).

The fake servers import the contracts they serve from the product (``etlkit``), so ``python -m dev.<module>``
from the repo root finds the package in ``plugins/`` as Airflow, pytest and the compose file do.
"""

import sys
from pathlib import Path

_PLUGINS = str(Path(__file__).resolve().parents[1] / "plugins")
if _PLUGINS not in sys.path:
    sys.path.append(_PLUGINS)
