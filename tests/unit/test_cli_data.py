"""`entai features apply` records a versioned definitions registry in the lake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from entai.cli import app
from entai.shared.core import DefinitionError


def test_apply_records_the_content_hash_and_is_stable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENTAI_HOME", str(tmp_path))
    runner = CliRunner()
    first = runner.invoke(app, ["features", "apply", "-d", "entai.demo.features"])
    assert first.exit_code == 0, first.output
    registry = tmp_path / "lake" / "registry"
    digest = (registry / "current").read_text()
    record = json.loads((registry / f"{digest}.json").read_text())
    assert {v["name"] for v in record["views"]} == {
        "user_category_stats",
        "user_stats",
        "user_recent_views",
        "product_category_affinity",
        "product_popularity",
    }
    again = runner.invoke(app, ["features", "apply", "-d", "entai.demo.features"])
    assert again.exit_code == 0
    assert (registry / "current").read_text() == digest
    assert len(list(registry.glob("*.json"))) == 1


def test_apply_refuses_duplicate_view_names_naming_the_view(tmp_path: Path) -> None:
    bad = tmp_path / "bad_defs.py"
    bad.write_text(
        "from entai.shared.features._definitions import Entity, FeatureView, Field, ValueType\n"
        "user = Entity(name='user', join_keys=('user_id',))\n"
        "x = Field(name='x', dtype=ValueType.FLOAT64)\n"
        "v = FeatureView(name='v', entities=(user,), schema=(x,), source='events')\n"
        "w = FeatureView(name='v', entities=(user,), schema=(x,), source='events')\n"
    )
    result = CliRunner().invoke(
        app, ["features", "apply", "-d", str(bad)], env={"ENTAI_HOME": str(tmp_path)}
    )
    assert isinstance(result.exception, DefinitionError)
    assert "'v'" in str(result.exception)
