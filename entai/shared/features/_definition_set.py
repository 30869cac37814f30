"""A validated, hashable set of feature definitions: the registry's content.

:class:`Definitions` checks that names are unique and references resolve, hashes the
set's content (transforms by their source), publishes it to the lake's registry zone
and loads it back, or from a Python module that declares the objects.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any

from entai.shared.core import DefinitionError, NotFoundError
from entai.shared.data import Lake
from entai.shared.features._definitions import (
    OMIT_DEFAULT,
    Entity,
    FeatureService,
    FeatureView,
    FeatureViewProjection,
    Field,
    OnDemandFeatureView,
    unique_names,
)

__all__ = ["Definitions"]


def _transform_record(fn: Callable[..., Any] | None) -> dict[str, str] | None:
    if fn is None:
        return None
    try:
        source = inspect.getsource(fn).encode()
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        source = code.co_code if code is not None else repr(fn).encode()
    qualname = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    return {"qualname": qualname, "source_sha256": hashlib.sha256(source).hexdigest()}


def _record(definition: Any) -> dict[str, Any]:
    """A definition's fields as JSON values; other definitions appear by name.

    Fields marked ``OMIT_DEFAULT`` appear only when set, so adding such a field to a
    definition class leaves the content hash of definitions that do not use it as it was.
    """
    record: dict[str, Any] = {}
    for f in dataclasses.fields(definition):
        value = getattr(definition, f.name)
        if f.metadata.get(OMIT_DEFAULT) and value == f.default:
            continue
        record[f.name] = _value(value)
    return record


def _value(value: Any) -> Any:
    if isinstance(value, Field):
        out: Any = _record(value)
    elif isinstance(value, Entity | FeatureView | OnDemandFeatureView):
        out = value.name
    elif isinstance(value, FeatureViewProjection):
        out = {"view": value.view.name, "features": list(value.features)}
    elif isinstance(value, tuple):
        out = [_value(v) for v in value]
    elif isinstance(value, timedelta):
        out = value.total_seconds()
    elif isinstance(value, Mapping):
        out = dict(sorted(value.items()))
    elif callable(value):
        out = _transform_record(value)
    else:
        out = value
    return out


class Definitions:
    """A validated, hashable set of definitions: the registry's content.

    Raises:
        DefinitionError: duplicate names, an unknown entity or view, naming the object.
    """

    def __init__(
        self,
        *,
        entities: Sequence[Entity] = (),
        views: Sequence[FeatureView] = (),
        on_demand_views: Sequence[OnDemandFeatureView] = (),
        services: Sequence[FeatureService] = (),
    ) -> None:
        unique_names("definitions", "entities", [e.name for e in entities])
        unique_names(
            "definitions", "views", [*(v.name for v in views), *(o.name for o in on_demand_views)]
        )
        unique_names("definitions", "services", [s.name for s in services])
        self.entities: Mapping[str, Entity] = MappingProxyType({e.name: e for e in entities})
        self.views: Mapping[str, FeatureView] = MappingProxyType({v.name: v for v in views})
        self.on_demand_views: Mapping[str, OnDemandFeatureView] = MappingProxyType(
            {v.name: v for v in on_demand_views}
        )
        self.services: Mapping[str, FeatureService] = MappingProxyType(
            {s.name: s for s in services}
        )
        for view in views:
            for ent in view.entities:
                if self.entities.get(ent.name) != ent:
                    raise DefinitionError(
                        f"feature view {view.name!r} uses unknown entity {ent.name!r}",
                        details={"object": view.name, "entity": ent.name},
                    )
        for odfv in on_demand_views:
            self._check_members("on-demand feature view", odfv.name, odfv.sources)
        for svc in services:
            self._check_members("feature service", svc.name, svc.features)

    def _check_members(
        self,
        kind: str,
        owner: str,
        items: Sequence[FeatureView | FeatureViewProjection | OnDemandFeatureView],
    ) -> None:
        for item in items:
            target = item.view if isinstance(item, FeatureViewProjection) else item
            known = self.views.get(target.name) or self.on_demand_views.get(target.name)
            if known is not target:
                raise DefinitionError(
                    f"{kind} {owner!r} uses unregistered view {target.name!r}",
                    details={"object": owner, "view": target.name},
                )

    def __repr__(self) -> str:
        return (
            f"Definitions(entities={list(self.entities)}, views={list(self.views)}, "
            f"on_demand_views={list(self.on_demand_views)}, services={list(self.services)})"
        )

    def view(self, name: str) -> FeatureView:
        """The feature view called ``name`` (NotFoundError if none)."""
        if name not in self.views:
            raise NotFoundError(f"feature view {name!r} is not defined", details={"view": name})
        return self.views[name]

    def service(self, name: str) -> FeatureService:
        """The feature service called ``name`` (NotFoundError if none)."""
        if name not in self.services:
            raise NotFoundError(
                f"feature service {name!r} is not defined", details={"service": name}
            )
        return self.services[name]

    def to_record(self) -> dict[str, Any]:
        """The canonical, JSON-serialisable description of every definition."""
        kinds = {
            "entities": self.entities,
            "views": self.views,
            "on_demand_views": self.on_demand_views,
            "services": self.services,
        }
        return {kind: [_record(d) for _, d in sorted(m.items())] for kind, m in kinds.items()}

    def canonical_json(self) -> str:
        """:meth:`to_record` as compact JSON with sorted keys: the hashed form."""
        return json.dumps(self.to_record(), sort_keys=True, separators=(",", ":"))

    def content_hash(self) -> str:
        """sha256 of the canonical JSON; changes whenever any definition changes."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def publish(self, lake: Lake) -> str:
        """Record this version in the lake's registry and point ``current`` at it.

        Writes ``registry/<hash>.json`` (once; versions are immutable) and
        ``registry/current``. Returns the content hash.
        """
        digest = self.content_hash()
        record = f"{lake.registry()}/{digest}.json"
        if not lake.exists(record):
            lake.write_bytes(record, self.canonical_json().encode())
        lake.write_bytes(f"{lake.registry()}/current", digest.encode())
        return digest

    @staticmethod
    def load_record(lake: Lake, content_hash: str | None = None) -> dict[str, Any]:
        """The published record of one version (default: ``current``).

        Raises:
            NotFoundError: nothing was published under that hash.
        """
        digest = content_hash or lake.read_bytes(f"{lake.registry()}/current").decode()
        record: dict[str, Any] = lake.read_json(f"{lake.registry()}/{digest}.json")
        return record

    def resolve(
        self, features: FeatureService | str | Sequence[str]
    ) -> list[FeatureViewProjection]:
        """The view projections a request needs, one per view, in request order.

        Args:
            features: A service (or its name) or ``"view:feature"`` references. An
                on-demand view contributes the projections of its sources.

        Raises:
            NotFoundError: an unknown service, view or feature.
            DefinitionError: a reference is not of the form ``view:feature``.
        """
        if isinstance(features, str):
            features = self.service(features)
        items = features.features if isinstance(features, FeatureService) else self._refs(features)
        wanted: dict[FeatureView, list[str]] = {}
        for item in items:
            sources = item.sources if isinstance(item, OnDemandFeatureView) else (item,)
            for src in sources:
                proj = FeatureViewProjection.of(src)
                names = wanted.setdefault(proj.view, [])
                names.extend(f for f in proj.features if f not in names)
        return [FeatureViewProjection(v, tuple(names)) for v, names in wanted.items()]

    def on_demand(
        self, features: FeatureService | str | Sequence[str]
    ) -> list[OnDemandFeatureView]:
        """The on-demand views a request asks for, in request order."""
        if isinstance(features, str):
            features = self.service(features)
        items = features.features if isinstance(features, FeatureService) else self._refs(features)
        return [item for item in items if isinstance(item, OnDemandFeatureView)]

    def _refs(self, refs: Sequence[str]) -> list[FeatureViewProjection | OnDemandFeatureView]:
        out: list[FeatureViewProjection | OnDemandFeatureView] = []
        for ref in refs:
            view_name, sep, feature = ref.partition(":")
            if not sep or not view_name or not feature:
                raise DefinitionError(
                    f"feature reference {ref!r} must look like 'view:feature'",
                    details={"reference": ref},
                )
            if view_name in self.on_demand_views:
                odfv = self.on_demand_views[view_name]
                if feature not in odfv.feature_names:
                    raise NotFoundError(
                        f"on-demand feature view {view_name!r} has no feature {feature!r}",
                        details={"view": view_name, "feature": feature},
                    )
                if odfv not in out:
                    out.append(odfv)
                continue
            view = self.view(view_name)
            view.field(feature)
            out.append(FeatureViewProjection(view, (feature,)))
        return out

    @classmethod
    def from_module(cls, module_or_path: str) -> Definitions:
        """Collect the module-level definition objects of a module or ``.py`` file.

        Entities used by collected views are included even when not module-level.
        """
        module = _load_module(module_or_path)
        objects = list(vars(module).values())
        views = [o for o in objects if isinstance(o, FeatureView)]
        entities = {o.name: o for o in objects if isinstance(o, Entity)}
        for view in views:
            for ent in view.entities:
                entities.setdefault(ent.name, ent)
        return cls(
            entities=list(entities.values()),
            views=views,
            on_demand_views=[o for o in objects if isinstance(o, OnDemandFeatureView)],
            services=[o for o in objects if isinstance(o, FeatureService)],
        )


def _load_module(module_or_path: str) -> ModuleType:
    path = Path(module_or_path)
    try:
        if module_or_path.endswith(".py") or path.exists():
            name = (
                f"entai_definitions_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
            )
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {path}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
        return importlib.import_module(module_or_path)
    except (ImportError, OSError) as exc:
        raise NotFoundError(
            f"definitions module {module_or_path!r} cannot be imported: {exc}",
            details={"module": module_or_path},
        ) from exc
