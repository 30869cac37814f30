"""`entai monitor report|ack|silence` against fake drift monitor and governance services."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import entai.client
from entai.actors.core import LocalService
from entai.cli import app, main
from entai.cli.monitor import parse_until
from entai.shared.core import (
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    ServiceUnavailableError,
)
from entai.shared.monitoring import ModelWatch, ReferenceProfile, WatchLimits


def _report() -> dict[str, Any]:
    def frame(n: int, seed: int, shift: float) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        return pd.DataFrame(
            {
                "amount": rng.normal(shift, 1, n),
                "prediction": rng.random(n),
            }
        )

    config = {
        "version": 2,
        "features": ["amount"],
        "prediction_column": "prediction",
        "window": {"count": 300},
        "drift_config": {},
        "alert_policy": {},
        "retrain_policy": {},
        "reference_auc": None,
    }
    reference = ReferenceProfile.from_frame(frame(1000, 0, 0.0)).to_dict()
    watch = ModelWatch.create("churn", config, reference, first_seq=0, limits=WatchLimits())
    now = datetime(2026, 1, 1, tzinfo=UTC)
    watch.add(watch.conform(frame(300, 1, 2.0)), np.arange(300, dtype=np.float64), now)
    return watch.report()


@dataclass
class Decision:
    principal: str


class FakeGovernance:
    def __init__(self, allow: bool = True) -> None:
        self.allow = allow
        self.asked: list[tuple[str, str]] = []

    def authorize(self, token: str, permission: str, resource: str) -> Decision:
        self.asked.append((permission, resource))
        if not self.allow:
            raise PermissionDeniedError(f"requires permission {permission}")
        return Decision("ops-alice")


class FakeMonitor:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def report(self, model: str) -> dict[str, Any]:
        if model != "churn":
            raise NotFoundError(f"model {model!r} is not registered with the drift monitor")
        return _report()

    def acknowledge(self, model: str, feature: str, method: str, token: str) -> None:
        self.calls.append(("ack", model, feature, method, token))

    def silence(self, model: str, feature: str, method: str, until: datetime, token: str) -> None:
        self.calls.append(("silence", model, feature, method, until, token))


TOKEN = "entai_test_token"  # the caller's ($ENTAI_TOKEN): the monitor authenticates it


@pytest.fixture
def services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[FakeMonitor, FakeGovernance]:
    monkeypatch.setenv("ENTAI_HOME", str(tmp_path))
    monkeypatch.setenv("ENTAI_TOKEN", TOKEN)
    monitor, governance = FakeMonitor(), FakeGovernance()
    monkeypatch.setattr(
        entai.client, "drift_monitor_service", lambda settings: LocalService(monitor)
    )
    monkeypatch.setattr(
        entai.client, "governance_service", lambda settings: LocalService(governance)
    )
    return monitor, governance


def test_report_prints_the_table_and_writes_a_self_contained_html(
    services: tuple[FakeMonitor, FakeGovernance], tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["monitor", "report", "churn", "--html", str(out)])
    assert result.exit_code == 0, result.output
    assert "model churn v2" in result.output and "churn/v2/w0" in result.output
    assert "amount" in result.output and "yes" in result.output
    assert services[1].asked == [("audit:read", "model:churn")]
    page = out.read_text(encoding="utf-8")
    assert page.count("<svg") == 2 and 'data-feature="amount"' in page
    assert "http" not in page


def test_an_unmonitored_model_is_a_one_line_error_and_exit_code_2(
    services: tuple[FakeMonitor, FakeGovernance],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "argv", ["entai", "monitor", "report", "nope"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    output = capsys.readouterr().out
    assert "'nope' is not registered with the drift monitor" in output
    assert "Traceback" not in output


def test_report_needs_audit_read(
    services: tuple[FakeMonitor, FakeGovernance],
) -> None:
    services[1].allow = False
    result = CliRunner().invoke(app, ["monitor", "report", "churn"])
    assert isinstance(result.exception, PermissionDeniedError)


def test_ack_records_the_approving_principal(
    services: tuple[FakeMonitor, FakeGovernance],
) -> None:
    result = CliRunner().invoke(app, ["monitor", "ack", "churn", "amount", "ks"])
    assert result.exit_code == 0, result.output
    assert services[0].calls == [("ack", "churn", "amount", "ks", TOKEN)]  # never a name
    assert "acknowledged by ops-alice" in result.output
    assert services[1].asked == [("models:approve", "model:churn")]


def test_silence_takes_a_future_iso_time(
    services: tuple[FakeMonitor, FakeGovernance],
) -> None:
    until = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    args = ["monitor", "silence", "churn", "*", "dataset", "--until", until.isoformat()]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert services[0].calls == [("silence", "churn", "*", "dataset", until, TOKEN)]
    assert "silenced by ops-alice" in result.output
    past = CliRunner().invoke(app, [*args[:-1], "2020-01-01T00:00:00"])
    assert isinstance(past.exception, InvalidInputError)
    assert "not in the future" in str(past.exception)


def test_until_without_a_zone_is_utc_and_garbage_is_refused() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_until("2026-01-02T03:00", now) == datetime(2026, 1, 2, 3, tzinfo=UTC)
    with pytest.raises(InvalidInputError, match="not an ISO 8601 time"):
        parse_until("tomorrow", now)


def test_without_a_running_platform_the_service_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from entai.shared.settings import load_settings

    settings = load_settings(home=tmp_path).resolved()
    with pytest.raises(ServiceUnavailableError, match="entai is not up"):
        entai.client.drift_monitor_service(settings)
