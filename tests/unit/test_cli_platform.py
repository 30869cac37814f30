"""What the lifecycle commands say in each state, with the platform calls faked (no Ray):
`status` and `down` with nothing running, `up` on a platform already up, and a command
that needs only Ray saying it runs on a temporary one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import entai.actors.core
import entai.client
import entai.pipelines.ingest
from entai.cli import app
from entai.pipelines.ingest import IngestReport

CONTRACT = """
source: clicks
purpose: test
retention_days: 30
event_time: ts
columns:
  - {name: user_id, type: int64, nullable: false}
  - {name: ts, type: timestamp}
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ENTAI_HOME", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return tmp_path


def test_status_with_nothing_running_says_how_to_start_and_exits_1(home: Path) -> None:
    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 1
    assert result.output == f"entai is not running under {home}: `entai up` starts it.\n"


def test_down_with_nothing_running_has_nothing_to_stop(home: Path) -> None:
    result = CliRunner().invoke(app, ["down"])
    assert result.exit_code == 0
    assert result.output.startswith(
        f"nothing to stop: no platform started by `entai up` under {home}."
    )


def test_up_on_a_running_platform_says_so_and_where_the_ui_is(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def already_up(settings: Any, **kwargs: Any) -> dict[str, Any]:
        return {
            "address": "127.0.0.1:6390",
            "dashboard_url": "http://127.0.0.1:8265",
            "services": ["entai-governance"],
            "started": False,
            "mlflow_url": "http://127.0.0.1:5001",
            "mlflow_note": "still starting; its log: x.log",
        }

    monkeypatch.setattr(entai.client, "start_platform", already_up)
    result = CliRunner().invoke(app, ["up"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "entai is already up at 127.0.0.1:6390 (1 services)"
    assert "  MLflow UI: http://127.0.0.1:5001 (still starting; its log: x.log)" in lines
    assert lines[-1] == f"  logs: {home / 'logs'}; stop everything with `entai down`"


def test_ingest_with_no_platform_says_it_uses_a_temporary_ray(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    joined: list[str | None] = []
    monkeypatch.setattr(
        entai.actors.core, "connect_ray", lambda settings, address=None: joined.append(address)
    )

    def ingest(contract: Any, uri: str, **kwargs: Any) -> IngestReport:
        assert kwargs["progress"] is False  # Ray Data's own bars stay off
        return IngestReport("clicks", "b1", "sha256:x", 3, 2, 1, (), False, 1)

    monkeypatch.setattr(entai.pipelines.ingest, "ingest_file", ingest)
    (home / "clicks.yaml").write_text(CONTRACT)
    (home / "clicks.csv").write_text("user_id,ts\n1,2026-01-01T00:00:00Z\n")
    result = CliRunner().invoke(
        app, ["ingest", "clicks", str(home / "clicks.csv"), "--contract", str(home / "clicks.yaml")]
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "no entai platform is running: ingesting on a temporary local Ray "
        "(`entai up` starts one that stays)",
        "batch b1: 3 rows in = 2 accepted + 1 quarantined",
    ]
    assert joined == [None]
