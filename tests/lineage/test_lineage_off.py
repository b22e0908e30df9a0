"""Lineage off (the default: no transport configured) costs nothing: no listener, no facet call, no lookup."""

from __future__ import annotations

import pytest

from dev.visits_data import write_report
from tests.conftest import task_states

pytestmark = pytest.mark.visits


def test_without_a_transport_no_listener_runs_and_no_facet_is_built(visits, monkeypatch):
    from airflow.providers.openlineage import conf
    from airflow.providers.openlineage.plugins.listener import OpenLineageListener
    from airflow.sdk.listener import get_listener_manager

    from etlkit.common import lineage

    calls: list[str] = []
    for name in ("operator_lineage", "resolve_endpoint", "postgres_columns"):
        original = getattr(lineage, name)
        monkeypatch.setattr(
            lineage, name, lambda *a, _n=name, _f=original, **k: calls.append(_n) or _f(*a, **k)
        )
    path = write_report(visits.root / "gen" / "report_1.txt", 20, seed=5)
    visits.put(path.name, path.read_bytes())

    dag_run = visits.run()

    assert dag_run.state == "success", task_states(dag_run)
    assert conf.is_disabled()
    plugins = get_listener_manager().pm.get_plugins()
    assert not [p for p in plugins if isinstance(p, OpenLineageListener)]
    assert calls == []
