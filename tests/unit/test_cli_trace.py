"""`entai trace REQUEST_ID`: the span tree from the local trace files, or one clear line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from entai.cli import app, main
from entai.shared.core import REQUEST_ID_ATTR, SpanRecord

MS = 1_000_000


def _write(home: Path) -> None:
    """Two processes' files: the ingress's spans and a shard's, one trace; one other trace."""
    trace, other = "a" * 32, "b" * 32
    ingress = [
        SpanRecord(
            trace,
            "1" * 16,
            None,
            "POST /v1/predict/{model}",
            "ingress",
            0,
            12 * MS,
            attributes={REQUEST_ID_ATTR: "req-1"},
        ),
        SpanRecord(trace, "2" * 16, "1" * 16, "entai.online.read", "ingress", 2 * MS, 7 * MS),
        SpanRecord(trace, "4" * 16, "1" * 16, "entai.score", "ingress", 8 * MS, 9 * MS),
        SpanRecord(
            other,
            "5" * 16,
            None,
            "POST /v1/events",
            "ingress",
            0,
            MS,
            attributes={REQUEST_ID_ATTR: "req-2"},
        ),
    ]
    shard = [
        SpanRecord(
            trace, "3" * 16, "2" * 16, "entai.shard.read_batch", "feature-shard", 3 * MS, 6 * MS
        ),
    ]
    traces = home / "traces"
    traces.mkdir(parents=True)
    for name, spans in (("ingress-h-1.jsonl", ingress), ("feature-shard-h-2.jsonl", shard)):
        (traces / name).write_text("".join(json.dumps(s.to_dict()) + "\n" for s in spans))


def _run(monkeypatch: pytest.MonkeyPatch, home: Path, *args: str) -> int:
    monkeypatch.setenv("ENTAI_HOME", str(home))
    monkeypatch.setattr(sys, "argv", ["entai", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return int(exited.value.code or 0)


def test_prints_the_request_span_tree_across_processes_with_durations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path)
    monkeypatch.setenv("ENTAI_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["trace", "req-1"])
    assert result.exit_code == 0, result.output
    lines = [line.rstrip() for line in result.output.strip().splitlines()]
    assert lines == [
        "POST /v1/predict/{model}  12.00 ms  +0.00 ms  [ingress]",
        "├── entai.online.read  5.00 ms  +2.00 ms  [ingress]",
        "│   └── entai.shard.read_batch  3.00 ms  +3.00 ms  [feature-shard]",
        "└── entai.score  1.00 ms  +8.00 ms  [ingress]",
    ]


def test_an_unknown_request_is_one_line_and_a_non_zero_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path)
    code = _run(monkeypatch, tmp_path, "trace", "req-404")
    out, err = capsys.readouterr()
    assert code != 0
    assert out.strip().splitlines() == [
        f"error: no spans for request req-404 in {tmp_path.resolve() / 'traces'} "
        "(observability.tracing is off)"
    ]
    assert "Traceback" not in out + err


def test_with_an_otlp_endpoint_it_points_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ENTAI_OBSERVABILITY__TRACING", "true")
    monkeypatch.setenv("ENTAI_OBSERVABILITY__OTLP_ENDPOINT", "http://collector:4318/v1/traces")
    assert _run(monkeypatch, tmp_path, "trace", "req-1") != 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line.startswith("error: spans are exported to http://collector:4318/v1/traces")
