"""A service actor's own clock: one of its methods, called on a timer, in turn.

The clock's daemon thread never touches the actor's state. Each beat calls the method
through the actor's own handle and waits for it, so the call is queued and run in the
actor's thread between other calls, exactly like a call from outside (no lock), and a
beat never starts while the previous one is still running. A failing beat is logged
and the clock keeps going; :meth:`ActorClock.stop` ends it after the current beat.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["ActorClock", "call_self"]

log = logging.getLogger(__name__)


def call_self(method: str, *, timeout_s: float | None = None) -> Callable[[], Any]:
    """A beat that calls ``method`` on the current actor and waits for its result."""

    def beat() -> Any:
        import ray

        handle = ray.get_runtime_context().current_actor
        return ray.get(getattr(handle, method).remote(), timeout=timeout_s)

    return beat


class ActorClock:
    """Calls ``beat`` every ``every_s`` seconds in a daemon thread.

    Args:
        beat: What to do on each tick (usually :func:`call_self`).
        every_s: Seconds between the end of one beat and the start of the next.
        name: Thread name, for logs and debuggers.
    """

    def __init__(self, beat: Callable[[], Any], every_s: float, *, name: str) -> None:
        if every_s <= 0:
            raise ValueError(f"clock interval must be > 0, got {every_s}")
        self._beat = beat
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.beats = 0
        self.failures = 0

    def __repr__(self) -> str:
        return f"ActorClock(every_s={self._every_s}, beats={self.beats}, running={self.running})"

    def start(self) -> ActorClock:
        """Start ticking; returns self."""
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop after the current beat (waits up to ``timeout_s`` for it)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout_s)

    @property
    def running(self) -> bool:
        """Whether the clock thread is alive."""
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                self._beat()
                self.beats += 1
            except Exception as exc:  # noqa: BLE001 - a failed beat must not stop the clock
                self.failures += 1
                log.warning("clock beat failed", extra={"error": repr(exc)})
