"""docs/jobs.md: the field reference is generated from the models (it cannot drift), and the
hand-written parts name every component type and port."""

from __future__ import annotations

import pytest

from etlkit.jobs import docgen
from etlkit.jobs.__main__ import main
from etlkit.jobs.models import COMPONENT_TYPES, Job, ReadCsvConfig

pytestmark = pytest.mark.jobs


def test_committed_field_reference_is_the_generated_one():
    text = docgen.DOCS_PATH.read_text()
    assert docgen.with_reference(text) == text, "run: python -m etlkit.jobs docs"
    assert main(["docs", "--check"]) == 0


def test_reference_has_every_field_of_every_model():
    reference = docgen.reference()
    assert set(docgen.COMPONENT_MODELS) == set(COMPONENT_TYPES)
    for type_name in COMPONENT_TYPES:
        assert f"### `{type_name}`" in reference
    for name in [*Job.model_fields, *ReadCsvConfig.model_fields]:
        if name not in ("components", "schema_uri"):
            assert f"| `{name}` |" in reference, name
    assert "| `every` | string or null (matches `^[1-9][0-9]*[smhd]$`) | `null` |" in reference
    assert '| `delimiter` | `","` \\| `";"` \\| `"\\t"` \\| `"\\|"` | `","` |' in reference


def test_a_stale_reference_is_found(monkeypatch, tmp_path, capsys):
    stale = tmp_path / "jobs.md"
    text = docgen.DOCS_PATH.read_text()
    stale.write_text(text.replace("| `every` |", "| `every_old` |"))
    monkeypatch.setattr(docgen, "DOCS_PATH", stale)
    assert main(["docs", "--check"]) == 1
    assert "field reference is stale" in capsys.readouterr().err
    assert main(["docs"]) == 0
    assert stale.read_text() == text
