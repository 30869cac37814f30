"""A typed handle to one platform service, whether it runs as an actor or in-process.

``service.call(ModelRegistry.promote, name, version, ...)`` names the method by the
method itself, so mypy checks the arguments and the result against the service's
class; there is no method name in a string. :class:`ActorService` calls a named actor
(``call`` waits, ``submit`` returns the ``ObjectRef`` for a caller that waits itself,
with a timeout or on an event loop); :class:`LocalService` calls an instance in this
process, for commands that run when no platform is up.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

import ray
from ray.actor import ActorHandle

from entai.actors.core._runtime import find_actor
from entai.shared.core import ServiceUnavailableError

__all__ = ["ActorService", "LocalService", "NamedActorService", "Service"]

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")


class Service(ABC, Generic[T]):
    """One platform service of class ``T``, called synchronously."""

    @abstractmethod
    def call(
        self, method: Callable[Concatenate[T, P], R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Call ``method`` (a method of ``T``) on the service and return its result."""


class ActorService(Service[T]):
    """A service running as a named actor.

    Args:
        name: The actor's name (for messages).
        handle: The actor's handle; it pickles, so the service can be handed to tasks
            and other actors.
    """

    def __init__(self, name: str, handle: ActorHandle[Any]) -> None:
        self.name = name
        self._handle: ActorHandle[Any] | None = handle

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    @property
    def handle(self) -> ActorHandle[Any]:
        """The actor's handle."""
        assert self._handle is not None  # set at construction
        return self._handle

    def submit(
        self, method: Callable[Concatenate[T, P], R], /, *args: P.args, **kwargs: P.kwargs
    ) -> ray.ObjectRef[R]:
        """Start ``method`` on the actor; the reference resolves to its result."""
        remote: Any = getattr(self.handle, method.__name__)
        ref: ray.ObjectRef[R] = remote.remote(*args, **kwargs)
        return ref

    def call(
        self, method: Callable[Concatenate[T, P], R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Call ``method`` on the actor and wait for its result (errors re-raised)."""
        result: R = ray.get(self.submit(method, *args, **kwargs))
        return result


class NamedActorService(ActorService[T]):
    """A service running as a named actor, looked up on its first call (and kept).

    Args:
        name: The actor's name.
        namespace: Its Ray namespace.
        unavailable: The message of the ServiceUnavailableError a call raises while
            the actor does not run (what the caller cannot do without it).
    """

    def __init__(self, name: str, namespace: str, *, unavailable: str) -> None:
        self.name = name
        self.namespace = namespace
        self._unavailable = unavailable
        self._handle = None

    @property
    def handle(self) -> ActorHandle[Any]:
        """The actor's handle, found by name on first use.

        Raises:
            ServiceUnavailableError: the actor does not run (or Ray is not connected).
        """
        if self._handle is None:
            self._handle = find_actor(self.name, self.namespace)
            if self._handle is None:
                raise ServiceUnavailableError(
                    self._unavailable, details={"service": self.name, "namespace": self.namespace}
                )
        return self._handle


class LocalService(Service[T]):
    """A service instance in this process (no platform running).

    Args:
        instance: The service object.
    """

    def __init__(self, instance: T) -> None:
        self.instance = instance

    def __repr__(self) -> str:
        return f"LocalService({type(self.instance).__name__})"

    def call(
        self, method: Callable[Concatenate[T, P], R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Call ``method`` on the instance (as the instance's own attribute, so a subclass's
        override runs, as it would in the actor)."""
        bound: Callable[P, R] = getattr(self.instance, method.__name__)
        return bound(*args, **kwargs)
