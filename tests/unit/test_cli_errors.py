"""Whatever fails inside a command, `entai` prints one line and exits non-zero; `--debug`
adds the traceback, and the log file under the home keeps it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import entai.client
from entai.actors.core import LocalService
from entai.cli import main
from entai.cli._app import error_message
from entai.shared.core import NotFoundError


class _BrokenRegistry:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def list_models(self) -> list[object]:
        raise self.error


def _run(monkeypatch: pytest.MonkeyPatch, home: Path, error: BaseException, *options: str) -> int:
    monkeypatch.setenv("ENTAI_HOME", str(home))
    monkeypatch.setattr(
        entai.client, "registry_service", lambda settings: LocalService(_BrokenRegistry(error))
    )
    monkeypatch.setattr(sys, "argv", ["entai", *options, "models", "list"])
    with pytest.raises(SystemExit) as exited:
        main()
    return int(exited.value.code or 0)


def test_an_unexpected_error_is_one_line_and_exit_code_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _run(monkeypatch, tmp_path, RuntimeError("the store is locked\nsecond line"))
    out, err = capsys.readouterr()
    assert code == 1
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    assert lines[0].startswith("error: RuntimeError: the store is locked (--debug shows")
    assert str(tmp_path / "logs") in lines[0]
    assert "Traceback" not in out + err
    # the log file has the whole story, as JSON lines
    records = [json.loads(x) for x in (tmp_path / "logs" / "entai.log").read_text().splitlines()]
    failed = [r for r in records if r["message"] == "command failed"]
    assert len(failed) == 1 and "Traceback" in failed[0]["exc"]


def test_debug_shows_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _run(monkeypatch, tmp_path, RuntimeError("the store is locked"), "--debug")
    out, err = capsys.readouterr()
    assert code == 1
    assert "Traceback (most recent call last)" in err
    assert "error: RuntimeError: the store is locked" in out


def test_an_entai_error_raised_in_an_actor_keeps_its_message_and_exit_code_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class RemoteCallError(Exception):
        """What Ray raises for a failed actor call: its ``cause`` is the actor's error."""

        def __init__(self, cause: BaseException) -> None:
            super().__init__("ray::ModelRegistry.list_models() (pid=1, ip=127.0.0.1)\n...")
            self.cause = cause

    code = _run(monkeypatch, tmp_path, RemoteCallError(NotFoundError("no model named 'churn'")))
    out, _ = capsys.readouterr()
    assert code == 2
    assert out.strip() == "error: no model named 'churn'"


def test_error_message_is_the_first_line_of_the_reason() -> None:
    assert error_message(ValueError("  \nfirst\nsecond")) == "ValueError: first"
    assert error_message(KeyboardInterrupt()) == "KeyboardInterrupt"
    assert error_message(NotFoundError("gone [v2]")) == "gone [v2]"
