from __future__ import annotations

import io
import json
import logging

from entai.shared.core import JsonFormatter, request_context


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
            logger.info("served", extra={"model": "m", "version": 3})
        first = _record(logger, stream)
        logger.info("outside")
        second = _record(logger, stream)
    finally:
        logger.removeHandler(handler)
    assert first["message"] == "served"
    assert first["request_id"] == "req-123"
    assert first["model"] == "m" and first["version"] == 3
    assert second["request_id"] is None
