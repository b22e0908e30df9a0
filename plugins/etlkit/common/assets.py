"""The pipelines' targets as Airflow Assets, and the asset events' extra (the run's row counts).

A URI names the target the way lineage does, with the Airflow connection id standing for the
namespace that only the connection knows at run time (``x-etlkit://{conn_id}/{target}``; lineage
reports ``postgres://host:port`` and ``{database}.{schema}.{table}`` for the same target). The
asset event's extra carries the run's counts, so whatever an event triggers can read them.

The ``x-`` prefix is Airflow's mark of a custom scheme: no provider's URI normalizer is looked up
for it. Any other unknown scheme makes Airflow load every installed provider's asset-URI handler
(the Amazon provider's imports boto3), about half a second in each DAG-parsing process.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset

GROUP = "etlkit"

# sftp_visits_to_postgres: statistics, errors and visitor in the Variable's db_schema.
VISITS = Asset(name="etlkit_visits", uri="x-etlkit://postgres_visits/visits", group=GROUP)
# sierra_signum_item_sync: the items posted to the Signum backend's /sync.
SIGNUM_ITEMS = Asset(name="etlkit_signum_items", uri="x-etlkit://signum_backend/sync", group=GROUP)
# enderturing_to_warehouse: the 20 tables of the warehouse schema.
ENDERTURING_WAREHOUSE = Asset(
    name="etlkit_enderturing_warehouse", uri="x-etlkit://enderturing_warehouse/enderturing", group=GROUP
)
# movies_postgres_to_elasticsearch: the movies alias.
MOVIES_INDEX = Asset(name="etlkit_movies_index", uri="x-etlkit://movies_elasticsearch/movies", group=GROUP)


def job_sink(job_name: str, component_id: str) -> Asset:
    """A declarative job's writer component (its sink)."""
    return Asset(
        name=f"etlkit_job_{job_name}_{component_id}",
        uri=f"x-etlkit://jobs/{job_name}/{component_id}",
        group=GROUP,
    )


def record_asset_event(context: Any, asset: Asset, extra: dict[str, Any]) -> None:
    """The extra of the event this task's success emits for ``asset`` (one of its outlets)."""
    context["outlet_events"][asset].extra = extra
