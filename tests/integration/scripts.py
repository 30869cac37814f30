"""Running a test's own Ray cluster in a subprocess, and reading its figures.

Some checks need a Ray head of their own (several nodes, GCS on Redis, another Serve
ingress mode) that must never touch the session cluster: they run as a script next to
their test, with a private RAY_TMPDIR, and print one JSON object with their figures as
their last line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]


def script_env() -> dict[str, str]:
    """The environment of a script run apart: ``tests/`` on its path, as pytest puts it
    on the tests' (the scripts import test modules, which import ``credentials``)."""
    paths = [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def run_json_script(
    script: Path,
    *args: str,
    timeout_s: float,
    retry_status: int | None = None,
    attempts: int = 1,
) -> dict[str, Any]:
    """Run ``python script args...`` and return the JSON object of its last line.

    A run that exits with ``retry_status`` (a script's "the cluster did not start") is
    tried again, up to ``attempts`` runs; any other non-zero exit fails with the ends of
    its output. The figures are printed, for the report (``pytest -s``).
    """
    for _ in range(attempts):
        proc = subprocess.run(
            [sys.executable, str(script), *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            cwd=script.parent,
            env=script_env(),
        )
        if retry_status is None or proc.returncode != retry_status:
            break
    assert proc.returncode == 0, proc.stdout[-1000:] + proc.stderr[-4000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(result))
    return result
