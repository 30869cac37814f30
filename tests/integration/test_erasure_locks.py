"""The erasure lock of a store, on the machine's real PostgreSQL (database ``test``) and
on a local lake's file: a second holder waits, another store or platform does not. No Ray.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from entai.pipelines.erasure_locks import erasure_lock
from entai.shared.core import ServiceUnavailableError
from entai.shared.settings import EntaiSettings, load_settings

DSN = "postgresql://postgres@127.0.0.1:5432/test"


def _settings(tmp_path: Path, kind: str, lake: str = "s3://entai-test/lake") -> EntaiSettings:
    if kind == "file":
        return load_settings(home=tmp_path / "home", lake={"root": str(tmp_path / lake[5:])})
    return load_settings(
        home=tmp_path / "home",
        lake={"root": lake},
        security={"governance_store": {"type": "postgres", "dsn": DSN}},
    )


def _try(settings: EntaiSettings, store: str) -> str:
    """In another thread (another connection, another open file): "got" or "busy"."""
    out: list[str] = []

    def run() -> None:
        try:
            with erasure_lock(settings, store, timeout_s=0.3):
                out.append("got")
        except ServiceUnavailableError as exc:
            assert store in exc.message
            out.append("busy")

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return out[0]


@pytest.mark.parametrize("kind", ["postgres", "file"])
def test_one_erasure_per_store_at_a_time(tmp_path: Path, kind: str) -> None:
    settings = _settings(tmp_path, kind)
    with erasure_lock(settings, "offline") as held:
        assert held == kind
        assert _try(settings, "offline") == "busy"
        assert _try(settings, "raw") == "got"  # another store
        other_platform = _settings(tmp_path, kind, lake="s3://entai-test/other")
        assert _try(other_platform, "offline") == "got"
    assert _try(settings, "offline") == "got"  # released on exit


def test_a_failed_erasure_releases_its_lock(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "postgres")
    with pytest.raises(RuntimeError), erasure_lock(settings, "online"):
        raise RuntimeError("the store failed")
    assert _try(settings, "online") == "got"
