"""The virtualenv that holds Feast's Python SDK for ``test_feast_sdk.py``.

Feast's dependencies clash with entai's lock, so its SDK lives apart, in
``.venv-feast/`` under the repository root (gitignored), made from PyPI on first use
and kept while it imports the pinned Feast. ``make test`` makes it before the cluster
tiers (``python tests/integration/feast_venv.py``), so no test waits on pip while it
holds the Ray lock; the test's fixture makes it too when it is missing.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
from pathlib import Path

FEAST_VERSION = "0.67.0"
REPO = Path(__file__).resolve().parents[2]
FEAST_VENV = REPO / ".venv-feast"
FEAST_PYTHON = FEAST_VENV / "bin" / "python"


class FeastVenvError(RuntimeError):
    """The Feast virtualenv could not be made; the message says which step and why."""


def _ready() -> bool:
    if not FEAST_PYTHON.exists():
        return False
    probe = subprocess.run(
        [str(FEAST_PYTHON), "-c", "import feast; print(feast.__version__)"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    return probe.returncode == 0 and probe.stdout.strip() == FEAST_VERSION


def ensure_feast_venv() -> Path:
    """The python of ``.venv-feast`` with Feast installed; made (or remade) when needed.

    Raises:
        FeastVenvError: ``venv`` or ``pip`` failed (e.g. PyPI unreachable), with the
            end of their output.
    """
    with (REPO / ".venv-feast.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one maker at a time; the others wait, then reuse
        if _ready():
            return FEAST_PYTHON
        shutil.rmtree(FEAST_VENV, ignore_errors=True)
        steps = [
            [sys.executable, "-m", "venv", str(FEAST_VENV)],
            [str(FEAST_PYTHON), "-m", "pip", "install", "-q", f"feast=={FEAST_VERSION}"],
        ]
        for step in steps:
            command = " ".join(step)
            try:
                done = subprocess.run(
                    step, capture_output=True, text=True, check=False, timeout=1200
                )
            except subprocess.TimeoutExpired as exc:
                raise FeastVenvError(f"making {FEAST_VENV}: {command} timed out") from exc
            if done.returncode != 0:
                raise FeastVenvError(
                    f"cannot make the Feast SDK virtualenv {FEAST_VENV} (it needs PyPI for "
                    f"feast=={FEAST_VERSION}): {command} exited {done.returncode}: "
                    f"{(done.stdout + done.stderr)[-2000:]}"
                )
        if not _ready():
            raise FeastVenvError(f"{FEAST_VENV} was made but cannot import feast {FEAST_VERSION}")
    return FEAST_PYTHON


if __name__ == "__main__":
    try:
        print(ensure_feast_venv())
    except FeastVenvError as exc:
        sys.exit(str(exc))
