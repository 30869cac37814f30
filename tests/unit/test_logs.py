from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from entai.shared.core import JsonFormatter, configure_logging, request_context


def _record(logger: logging.Logger, stream: io.StringIO) -> dict[str, object]:
    return dict(json.loads(stream.getvalue().strip().splitlines()[-1]))


def test_json_lines_carry_the_bound_request_id_and_extras() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("entai.test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with request_context("req-123"):
            logger.info("served", extra={"model": "m", "version": 3, "_private": 1})
        first = _record(logger, stream)
        logger.info("outside")
        second = _record(logger, stream)
    finally:
        logger.removeHandler(handler)
    assert first["message"] == "served"
    assert not any(key.startswith("_") for key in first)
    assert first["request_id"] == "req-123"
    assert first["model"] == "m" and first["version"] == 3
    assert second["request_id"] is None


def _entai_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if getattr(h, "_entai_json_handler", False)]


def test_logs_go_to_the_file_as_json_lines_and_not_to_the_console(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    before = root.level
    try:
        configure_logging("INFO", log_file=tmp_path / "logs" / "first.log", console=False)
        logging.getLogger("entai.test.file").info("to the file", extra={"n": 1})
        logging.getLogger("httpx").info("HTTP Request: GET http://x")  # per-request noise
        # a second configuration replaces the first's handler, never adds to it
        configure_logging("INFO", log_file=tmp_path / "second.log", console=False)
        logging.getLogger("entai.test.file").warning("to the second file")
        assert len(_entai_handlers()) == 1
    finally:
        for handler in _entai_handlers():
            root.removeHandler(handler)
            handler.close()
        root.setLevel(before)
    first_log = (tmp_path / "logs" / "first.log").read_text()
    first = [json.loads(line) for line in first_log.splitlines()]
    assert [(r["logger"], r["message"], r["n"]) for r in first] == [
        ("entai.test.file", "to the file", 1)
    ]
    second = (tmp_path / "second.log").read_text().splitlines()
    assert [json.loads(line)["message"] for line in second] == ["to the second file"]
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_the_log_file_is_created_at_the_first_record_only(tmp_path: Path) -> None:
    root = logging.getLogger()
    before = root.level
    try:
        configure_logging("WARNING", log_file=tmp_path / "logs" / "entai.log", console=False)
        logging.getLogger("entai.test.lazy").info("below the level")
        assert not (tmp_path / "logs").exists()
    finally:
        for handler in _entai_handlers():
            root.removeHandler(handler)
            handler.close()
        root.setLevel(before)
