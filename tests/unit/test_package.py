from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import entai


def _printed(code: str, cwd: Path) -> str:
    """What ``code`` prints in a fresh interpreter started in ``cwd``."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=cwd
    )
    return out.stdout.strip()


def test_public_surface_is_pinned() -> None:
    assert entai.__all__ == ["__version__", "connect"]


def test_import_is_cheap_and_side_effect_free(tmp_path: Path) -> None:
    code = (
        "import sys, os; before = set(os.listdir('.')); import entai, entai.cli; "
        "heavy = [m for m in ('ray', 'mlflow', 'xgboost', 'redis', 'fastapi', 'scipy', 'pandas', "
        "'pyarrow') "
        "if m in sys.modules]; "
        "print(','.join(heavy)); assert set(os.listdir('.')) == before"
    )
    assert _printed(code, tmp_path) == ""


def test_the_training_workers_module_imports_numpy_only(tmp_path: Path) -> None:
    # A one-worker training run's task lives there: a cold worker imports it before it
    # trains, and every module it pulls in is start-up the run pays.
    code = (
        "import sys; import entai.pipelines.xgboost_fit; "
        "print(','.join(m for m in ('entai.pipelines.training', 'pandas', 'scipy', 'mlflow', "
        "'xgboost', 'pyarrow', 'ray') if m in sys.modules))"
    )
    assert _printed(code, tmp_path) == ""


def test_the_installed_dependencies_carry_their_bytecode() -> None:
    # `make install` compiles them, as pip would: uv does not, and with
    # PYTHONDONTWRITEBYTECODE set every process (a cold Ray worker's `import xgboost`
    # among them: 5.3 s instead of 1.8 s) would compile them from source again.
    import importlib.util

    import sklearn.base
    import xgboost.core

    missing = [
        module.__name__
        for module in (xgboost.core, sklearn.base)
        if not Path(importlib.util.cache_from_source(str(module.__file__))).is_file()
    ]
    assert missing == [], f"no compiled bytecode for {missing}: run `make install`"
