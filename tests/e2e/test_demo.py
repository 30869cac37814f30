"""`entai demo` end to end: it predicts over HTTP, learns, and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from entai.client import service_names
from entai.demo.flow import run_demo
from entai.shared.settings import load_settings


@pytest.fixture(scope="module")
def demo_run(
    ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Any, dict[str, Any]]:
    home = tmp_path_factory.mktemp("entai-home")
    settings = load_settings(home=home, serve={"port": 8011}).resolved()
    console = Console(file=(home / "demo.out").open("w"), width=120)
    summary = run_demo(settings, users=600, console=console)
    console.file.close()
    return settings, summary


def test_demo_predicts_over_http_with_the_registered_version(
    demo_run: tuple[Any, dict[str, Any]],
) -> None:
    _, summary = demo_run
    predictions = summary["predictions"]
    assert len(predictions) == 5
    assert all(0.0 <= p["p_buy_7d"] <= 1.0 for p in predictions)
    assert {p["version"] for p in predictions} == {summary["model"]["version"]}
    assert summary["ingest"]["rows_in"] == summary["events"]
    assert summary["ingest"]["accepted"] + summary["ingest"]["quarantined"] == summary["events"]


def test_demo_model_is_far_above_chance_and_near_the_oracle(
    demo_run: tuple[Any, dict[str, Any]],
) -> None:
    _, summary = demo_run
    auc = summary["auc"]
    assert auc["oracle"] > 0.8
    assert auc["held_out"] > 0.7
    assert auc["oracle"] - auc["held_out"] < 0.1


def test_demo_leaves_no_service_running(
    demo_run: tuple[Any, dict[str, Any]], ray_cluster: Any
) -> None:
    settings, _ = demo_run
    for name in service_names(settings):
        with pytest.raises(ValueError, match="Failed to look up actor"):
            ray_cluster.get_actor(name, namespace=settings.ray.namespace)
    from ray import serve

    assert serve.status().applications == {}


def test_demo_writes_no_secret_or_raw_pii_to_the_lake(demo_run: tuple[Any, dict[str, Any]]) -> None:
    _, summary = demo_run
    token = Path(summary["token_file"]).read_text().strip()
    lake = Path(summary["lake"])
    assert any(lake.rglob("*.parquet")), "the demo wrote no lake data to scan"
    planted = [b"@example.com", b"415-555-", token.encode()]
    for path in lake.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for needle in planted:
                assert needle not in data, f"{needle!r} found in {path}"


def test_demo_drift_act_alerts_retrains_and_leaves_the_champion(
    demo_run: tuple[Any, dict[str, Any]],
) -> None:
    _, summary = demo_run
    act = summary["monitoring"]
    assert act["stable"]["windows"] == 3
    assert "alert" not in act["stable"]["levels"]
    assert [a["level"] for a in act["drift"]["alerts"]][:2] == ["warn", "alert"]
    challenger = act["challenger"]
    champion = summary["model"]["version"]
    assert challenger["version"] > champion
    assert challenger["champion_after"] == champion  # no auto-promotion by default
    assert challenger["reason"] == "dataset drift in 2 consecutive windows"
