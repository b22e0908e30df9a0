"""The pipelines' asset URIs cost DAG parsing nothing: no provider's URI handler is loaded for them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

CHILD = """
import json, sys
import etlkit.common.assets as assets
uris = [a.uri for a in vars(assets).values() if type(a).__name__ == "Asset"]
uris.append(assets.job_sink("orders_daily_load", "load_orders").uri)
loaded = sorted(m for m in sys.modules if m.startswith(("airflow.providers.amazon.aws", "boto3", "botocore")))
print(json.dumps({"uris": uris, "loaded": loaded}))
"""


def test_asset_uris_use_a_custom_scheme_that_loads_no_provider_handler():
    completed = subprocess.run(
        [sys.executable, "-c", CHILD],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "plugins")},
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(completed.stdout)
    assert len(result["uris"]) >= 5
    assert all(uri.startswith("x-etlkit://") for uri in result["uris"])
    assert result["loaded"] == []
