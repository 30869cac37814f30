"""Feature definitions: entities, feature views, on-demand views and feature services.

The vocabulary is Feast's. Definitions are plain Python objects, validated when they
are built; :class:`Definitions` is a validated set of them, versioned by a content hash
and published to the lake's registry zone. A view's ``transform`` is the single function
that computes its features both in batch (materialization over lake data) and in
streaming (over an event micro-batch): both call :meth:`FeatureView.compute`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any, TypeVar

import pandas as pd

from entai.shared.errors import DefinitionError, NotFoundError
from entai.shared.lake import Lake

__all__ = [
    "CREATED_TIMESTAMP",
    "EVENT_TIMESTAMP",
    "Definitions",
    "Entity",
    "FeatureService",
    "FeatureView",
    "FeatureViewProjection",
    "Field",
    "OnDemandFeatureView",
    "PiiClass",
    "Transform",
    "ValueType",
]

EVENT_TIMESTAMP = "event_timestamp"
CREATED_TIMESTAMP = "created_timestamp"
_RESERVED = frozenset({EVENT_TIMESTAMP, CREATED_TIMESTAMP})
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Transform = Callable[[pd.DataFrame], pd.DataFrame]
_E = TypeVar("_E", bound=StrEnum)


class ValueType(StrEnum):
    """The value type of a field or of an entity's join keys."""

    INT64 = "int64"
    FLOAT64 = "float64"
    STRING = "string"
    BOOL = "bool"
    TIMESTAMP = "timestamp"

    @property
    def pandas_dtype(self) -> str:
        """The nullable pandas dtype values of this type have in every entai frame."""
        return _PANDAS_DTYPES[self]


_PANDAS_DTYPES = {
    ValueType.INT64: "Int64",
    ValueType.FLOAT64: "float64",
    ValueType.STRING: "string",
    ValueType.BOOL: "boolean",
    ValueType.TIMESTAMP: "datetime64[ns, UTC]",
}


class PiiClass(StrEnum):
    """How personal a field's values are; governance decides access by it."""

    NONE = "none"
    IDENTIFIER = "identifier"
    QUASI_IDENTIFIER = "quasi_identifier"
    SENSITIVE = "sensitive"
    FREE_TEXT = "free_text"


def _name(kind: str, value: object) -> str:
    if not isinstance(value, str) or not _IDENT.match(value):
        raise DefinitionError(
            f"{kind} name {value!r} must be an identifier (letters, digits, '_')",
            details={"object": kind, "name": repr(value)},
        )
    return value


def _enum(kind: str, owner: str, enum: type[_E], value: object) -> _E:
    try:
        return enum(str(value))
    except ValueError:
        raise DefinitionError(
            f"{kind} {owner!r} has {enum.__name__} {value!r}; "
            f"expected one of {[m.value for m in enum]}",
            details={"object": owner, "value": repr(value)},
        ) from None


def _unique(kind: str, owner: str, names: Sequence[str]) -> None:
    seen: set[str] = set()
    dupes = sorted({n for n in names if n in seen or seen.add(n)})  # type: ignore[func-returns-value]
    if dupes:
        raise DefinitionError(
            f"{kind} {owner!r} has duplicate names {dupes}",
            details={"object": owner, "duplicates": dupes},
        )


@dataclass(frozen=True)
class Entity:
    """A thing features describe (a user, an item), identified by its join keys."""

    name: str
    join_keys: tuple[str, ...]
    value_type: ValueType = ValueType.INT64
    description: str = ""

    def __post_init__(self) -> None:
        _name("entity", self.name)
        given: object = self.join_keys
        keys = () if isinstance(given, str) else tuple(self.join_keys)
        if not keys:
            raise DefinitionError(
                f"entity {self.name!r} needs at least one join key", details={"object": self.name}
            )
        for key in keys:
            _name(f"entity {self.name!r} join key", key)
        _unique("entity", self.name, keys)
        object.__setattr__(self, "join_keys", keys)
        object.__setattr__(
            self, "value_type", _enum("entity", self.name, ValueType, self.value_type)
        )


@dataclass(frozen=True)
class Field:
    """One feature column: its name, value type and PII class."""

    name: str
    dtype: ValueType
    pii: PiiClass = PiiClass.NONE
    description: str = ""

    def __post_init__(self) -> None:
        _name("field", self.name)
        if self.name in _RESERVED:
            raise DefinitionError(
                f"field {self.name!r} uses a reserved column name", details={"object": self.name}
            )
        object.__setattr__(self, "dtype", _enum("field", self.name, ValueType, self.dtype))
        object.__setattr__(self, "pii", _enum("field", self.name, PiiClass, self.pii))


@dataclass(frozen=True)
class FeatureView:
    """A table of features keyed by entities, with event and created timestamps.

    Args:
        name: Unique name; also the lake directory of its offline table.
        entities: The entities whose join keys key the table.
        schema: The feature fields.
        source: The raw-zone source the batch transform reads.
        ttl: How far back from an entity row's timestamp a value still counts.
        transform: Raw events -> join keys, ``event_timestamp`` and the fields.
        owner: Team or person responsible.
        tags: Free-form labels.
        description: What the features mean.
    """

    name: str
    entities: tuple[Entity, ...]
    schema: tuple[Field, ...]
    source: str
    ttl: timedelta | None = None
    transform: Transform | None = None
    owner: str = ""
    tags: Mapping[str, str] = field(default_factory=dict, hash=False)
    description: str = ""

    def __post_init__(self) -> None:
        _name("feature view", self.name)
        object.__setattr__(self, "entities", tuple(self.entities))
        object.__setattr__(self, "schema", tuple(self.schema))
        object.__setattr__(self, "tags", MappingProxyType(dict(self.tags)))
        if not self.entities or not all(isinstance(e, Entity) for e in self.entities):
            raise DefinitionError(
                f"feature view {self.name!r} needs one or more Entity objects",
                details={"object": self.name},
            )
        if not self.schema or not all(isinstance(f, Field) for f in self.schema):
            raise DefinitionError(
                f"feature view {self.name!r} needs a schema of one or more Field objects",
                details={"object": self.name},
            )
        _unique("feature view", self.name, [*self.join_keys, *self.feature_names])
        if self.ttl is not None and (
            not isinstance(self.ttl, timedelta) or self.ttl <= timedelta(0)
        ):
            raise DefinitionError(
                f"feature view {self.name!r} ttl must be a positive timedelta or None",
                details={"object": self.name, "ttl": repr(self.ttl)},
            )
        if self.transform is not None and not callable(self.transform):
            raise DefinitionError(
                f"feature view {self.name!r} transform is not callable",
                details={"object": self.name},
            )

    @property
    def join_keys(self) -> tuple[str, ...]:
        """The join-key columns of all its entities, in order."""
        return tuple(k for e in self.entities for k in e.join_keys)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The feature column names, in schema order."""
        return tuple(f.name for f in self.schema)

    @property
    def pii(self) -> Mapping[str, PiiClass]:
        """The PII class of each feature."""
        return {f.name: f.pii for f in self.schema}

    def key_type(self, key: str) -> ValueType:
        """The value type of one join key."""
        return next(e.value_type for e in self.entities if key in e.join_keys)

    def field(self, name: str) -> Field:
        """The field called ``name``.

        Raises:
            NotFoundError: the view has no such feature.
        """
        for f in self.schema:
            if f.name == name:
                return f
        raise NotFoundError(
            f"feature view {self.name!r} has no feature {name!r}",
            details={"view": self.name, "feature": name},
        )

    def __getitem__(self, names: list[str]) -> FeatureViewProjection:
        return FeatureViewProjection(self, tuple(names))

    def compute(self, raw: pd.DataFrame) -> pd.DataFrame:
        """Apply the transform to raw events and conform the result to the view.

        The batch (materialization) and streaming paths both call this, so a feature
        is computed by one function everywhere.

        Raises:
            DefinitionError: the transform's output lacks a column or has a bad type.
        """
        from entai.shared.offline_store import conform  # the storage contract lives there

        out = raw if self.transform is None else self.transform(raw)
        try:
            return conform(self, out)
        except Exception as exc:
            raise DefinitionError(
                f"feature view {self.name!r} transform output is invalid: {exc}",
                details={"object": self.name, **getattr(exc, "details", {})},
            ) from exc


@dataclass(frozen=True)
class FeatureViewProjection:
    """A subset of a view's features, as in ``view[["a", "b"]]``."""

    view: FeatureView
    features: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        for name in self.features:
            self.view.field(name)
        _unique("projection of", self.view.name, self.features)

    @classmethod
    def of(cls, item: FeatureView | FeatureViewProjection) -> FeatureViewProjection:
        """A projection of every feature of a view (or the projection itself)."""
        if isinstance(item, FeatureViewProjection):
            return item
        return cls(item, item.feature_names)


@dataclass(frozen=True)
class OnDemandFeatureView:
    """Features computed at request time from request data and other views' features.

    The transform receives a frame with the request columns and the source features
    (under their plain names) and returns the schema's columns, row for row.
    """

    name: str
    request_schema: tuple[Field, ...]
    sources: tuple[FeatureView | FeatureViewProjection, ...]
    schema: tuple[Field, ...]
    transform: Callable[[pd.DataFrame], pd.DataFrame]
    description: str = ""
    owner: str = ""

    def __post_init__(self) -> None:
        _name("on-demand feature view", self.name)
        for attr in ("request_schema", "sources", "schema"):
            object.__setattr__(self, attr, tuple(getattr(self, attr)))
        _unique("on-demand feature view", self.name, [f.name for f in self.schema])
        if not callable(self.transform):
            raise DefinitionError(
                f"on-demand feature view {self.name!r} transform is not callable",
                details={"object": self.name},
            )

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The computed feature names."""
        return tuple(f.name for f in self.schema)


@dataclass(frozen=True)
class FeatureService:
    """The set of features one model consumes."""

    name: str
    features: tuple[FeatureView | FeatureViewProjection | OnDemandFeatureView, ...]
    description: str = ""
    owner: str = ""

    def __post_init__(self) -> None:
        _name("feature service", self.name)
        object.__setattr__(self, "features", tuple(self.features))


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
    """A definition's fields as JSON values; other definitions appear by name."""
    return {f.name: _value(getattr(definition, f.name)) for f in dataclasses.fields(definition)}


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
        _unique("definitions", "entities", [e.name for e in entities])
        _unique(
            "definitions", "views", [*(v.name for v in views), *(o.name for o in on_demand_views)]
        )
        _unique("definitions", "services", [s.name for s in services])
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
