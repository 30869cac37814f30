"""`entai score` refuses bad arguments with one clear line (exit code 2) before any Ray
starts: unknown model or alias, a bad reference, missing or unreadable input, an input
without the model's columns, an output that holds something else."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from governed import Governed
from logged_models import log_small_model

from entai.cli import main
from entai.shared.settings import load_settings


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose registry holds model ``m`` v1 (inputs a, b) as champion: registered
    by an ml-engineer, promoted through the gates by an approver."""
    root = tmp_path_factory.mktemp("score-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ENTAI_HOME", str(root))
        settings = load_settings().resolved()
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, 2)), columns=["a", "b"])
    logged = log_small_model(settings, frame, (frame["a"] > 0).astype(int), rounds=3)
    governed = Governed(settings)
    registry = governed.registry()
    info = governed.register_logged(logged, "m", registry=registry)
    registry.promote("m", info.version, token=governed.token("approver"), reason="first")
    assert registry.resolve("m", "champion").version == info.version
    return root


def _score(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    home: Path,
    *args: str,
) -> str:
    monkeypatch.setenv("ENTAI_HOME", str(home))
    monkeypatch.setattr(sys, "argv", ["entai", "score", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    assert exited.value.code == 2, out + err
    assert "Traceback" not in out + err
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    return lines[0]


def _parquet(path: Path, columns: dict[str, list[float]]) -> Path:
    pd.DataFrame(columns).to_parquet(path)
    return path


def test_an_unknown_model_or_alias_is_named(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(_parquet(tmp_path / "x.parquet", {"a": [1.0], "b": [2.0]}))
    line = _score(monkeypatch, capsys, home, "churn", "--input", data)
    assert line == "error: no registered model 'churn'"
    line = _score(monkeypatch, capsys, home, "m@challenger", "--input", data)
    assert line == "error: model 'm' has no version with alias 'challenger'"
    line = _score(monkeypatch, capsys, home, "m/7", "--input", data)
    assert line == "error: model 'm' has no version 7"
    line = _score(monkeypatch, capsys, home, "m/v1", "--input", data)
    assert line == "error: model reference 'm/v1' is not NAME, NAME@ALIAS or NAME/VERSION"


def _bad_parquet(d: Path) -> Path:
    (d / "bad.parquet").write_bytes(b"PAR1 but not really")
    return d / "bad.parquet"


def _ragged_csv(d: Path) -> Path:
    (d / "bad.csv").write_text("a,b\n1,2\n3,4,alice@example.com\n")
    return d / "bad.csv"


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda d: d / "nowhere.parquet", "nowhere.parquet does not exist (neither a file,"),
        (_bad_parquet, "bad.parquet cannot be read as parquet: "),
        (_ragged_csv, "bad.csv cannot be read as csv: CSV parse error: Expected 2 columns, got 3"),
    ],
)
def test_an_unreadable_input_is_one_line(
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    make: Callable[[Path], Path],
    says: str,
) -> None:
    line = _score(monkeypatch, capsys, home, "m", "--input", str(make(tmp_path)))
    assert line.startswith("error: input ") and says in line
    assert "alice" not in line  # the row's content is not quoted


def test_missing_or_non_numeric_model_columns_are_named(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _parquet(tmp_path / "x.parquet", {"a": [1.0], "c": [2.0]})
    line = _score(monkeypatch, capsys, home, "m", "--input", str(data))
    assert line == (
        f"error: input {data} lacks column(s) ['b'] that model 'm' version 1 takes "
        "(its inputs: ['a', 'b'])"
    )
    pd.DataFrame({"a": [1.0], "b": ["high"]}).to_parquet(tmp_path / "y.parquet")
    line = _score(monkeypatch, capsys, home, "m", "--input", str(tmp_path / "y.parquet"))
    assert line.endswith("model inputs must be numbers; got b (large_string)")
    (tmp_path / "z.csv").write_bytes(b"a,b\n\xff\xfe,1\n")
    line = _score(monkeypatch, capsys, home, "m", "--input", str(tmp_path / "z.csv"))
    assert line.endswith("model inputs must be numbers; got a (binary)")


def test_an_output_holding_other_files_is_left_alone(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _parquet(tmp_path / "x.parquet", {"a": [1.0], "b": [2.0]})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "report.pdf").write_bytes(b"%PDF")
    line = _score(monkeypatch, capsys, home, "m", "-i", str(data), "-o", str(tmp_path / "out"))
    assert line == (
        f"error: output {tmp_path / 'out'} is not empty (report.pdf) and holds no entai "
        "scoring; choose another --output"
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.pdf"]
