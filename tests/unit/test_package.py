from __future__ import annotations

import subprocess
import sys

import entai


def test_public_surface_is_pinned() -> None:
    assert entai.__all__ == ["__version__", "connect"]


def test_import_is_cheap_and_side_effect_free(tmp_path: object) -> None:
    code = (
        "import sys, os; before = set(os.listdir('.')); import entai, entai.cli; "
        "heavy = [m for m in ('ray', 'mlflow', 'xgboost', 'redis', 'fastapi', 'scipy', 'pandas', "
        "'pyarrow') "
        "if m in sys.modules]; "
        "print(','.join(heavy)); assert set(os.listdir('.')) == before"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.strip() == ""


def test_the_training_workers_module_imports_numpy_only(tmp_path: object) -> None:
    # A one-worker training run's task lives there: a cold worker imports it before it
    # trains, and every module it pulls in is start-up the run pays.
    code = (
        "import sys; import entai.pipelines.xgboost_fit; "
        "print(','.join(m for m in ('entai.pipelines.training', 'pandas', 'scipy', 'mlflow', "
        "'xgboost', 'pyarrow', 'ray') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.strip() == ""
