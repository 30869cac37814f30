"""Unit tier: pure Python. ``ray.init`` raises so no unit test can lean on a cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_ray(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import ray

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unit tests must not start or join a Ray cluster")

    monkeypatch.setattr(ray, "init", refuse)
    yield
