"""An alert sink that keeps what the drift monitor sends, for tests of its alerts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Sink:
    """Records every alert event it is sent, in order."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def send(self, event: Mapping[str, Any]) -> None:
        self.events.append(dict(event))
