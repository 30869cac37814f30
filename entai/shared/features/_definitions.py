"""Feature definitions: entities, feature views, on-demand views and feature services.

The vocabulary is Feast's. Definitions are plain Python objects, validated when they
are built; :class:`entai.shared.features._definition_set.Definitions` is a validated set of them,
versioned by a content hash and published to the lake's registry zone. A view's
``transform`` is the single function that computes its features both in batch
(materialization over lake data) and in streaming (over an event micro-batch): both
call :meth:`FeatureView.compute`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import TypeVar

import pandas as pd
import pyarrow as pa

from entai.shared.core import DefinitionError, NotFoundError
from entai.shared.data import PiiClass

__all__ = [
    "CREATED_TIMESTAMP",
    "EVENT_TIMESTAMP",
    "Entity",
    "FeatureService",
    "FeatureView",
    "FeatureViewProjection",
    "Field",
    "OnDemandFeatureView",
    "Transform",
    "ValueType",
]

EVENT_TIMESTAMP = "event_timestamp"
CREATED_TIMESTAMP = "created_timestamp"
_RESERVED = frozenset({EVENT_TIMESTAMP, CREATED_TIMESTAMP})
# Dataclass-field metadata key: the field enters a definition's hashed record only when
# set, so definitions that leave it at its default keep the content hash they had
# before the field existed.
OMIT_DEFAULT = "entai.omit_default"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Transform = Callable[[pd.DataFrame], pd.DataFrame]
_E = TypeVar("_E", bound=StrEnum)


class ValueType(StrEnum):
    """The value type of a field or of an entity's join keys.

    ``list<string>`` and ``list<int64>`` are list-valued features (e.g. a user's last
    viewed product ids): a value is a list (possibly empty) of non-null elements of
    the element type, or null. Join keys cannot be lists.
    """

    INT64 = "int64"
    FLOAT64 = "float64"
    STRING = "string"
    BOOL = "bool"
    TIMESTAMP = "timestamp"
    LIST_STRING = "list<string>"
    LIST_INT64 = "list<int64>"

    @property
    def pandas_dtype(self) -> str | pd.ArrowDtype:
        """The nullable pandas dtype values of this type have in every entai frame.

        List types are Arrow list dtypes: a cell reads back as a Python list.
        """
        return _PANDAS_DTYPES[self]

    @property
    def element_type(self) -> ValueType | None:
        """The type of a list type's elements; None for a scalar type."""
        return _ELEMENTS.get(self)

    @property
    def is_list(self) -> bool:
        """Whether values of this type are lists."""
        return self in _ELEMENTS


_ELEMENTS = {ValueType.LIST_STRING: ValueType.STRING, ValueType.LIST_INT64: ValueType.INT64}
_PANDAS_DTYPES: dict[ValueType, str | pd.ArrowDtype] = {
    ValueType.INT64: "Int64",
    ValueType.FLOAT64: "float64",
    ValueType.STRING: "string",
    ValueType.BOOL: "boolean",
    ValueType.TIMESTAMP: "datetime64[ns, UTC]",
    ValueType.LIST_STRING: pd.ArrowDtype(pa.list_(pa.string())),
    ValueType.LIST_INT64: pd.ArrowDtype(pa.list_(pa.int64())),
}


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


def unique_names(kind: str, owner: str, names: Sequence[str]) -> None:
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
        unique_names("entity", self.name, keys)
        object.__setattr__(self, "join_keys", keys)
        object.__setattr__(
            self, "value_type", _enum("entity", self.name, ValueType, self.value_type)
        )
        if self.value_type.is_list:
            raise DefinitionError(
                f"entity {self.name!r} has value type {self.value_type.value!r}; "
                "join keys cannot be lists",
                details={"object": self.name, "value": self.value_type.value},
            )


@dataclass(frozen=True)
class Field:
    """One feature column: its name, value type, PII class and evaluation marks.

    Args:
        name: Column name.
        dtype: Value type.
        pii: PII class.
        description: What the feature means.
        protected: A protected attribute (e.g. sex, age band): model decisions are
            evaluated for fairness across its values, whether or not a model uses it.
        segment: A business segment (e.g. region): models are evaluated per value.
    """

    name: str
    dtype: ValueType
    pii: PiiClass = PiiClass.NONE
    description: str = ""
    protected: bool = field(default=False, metadata={OMIT_DEFAULT: True})
    segment: bool = field(default=False, metadata={OMIT_DEFAULT: True})

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
        unique_names("feature view", self.name, [*self.join_keys, *self.feature_names])
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

    @property
    def evaluation_attributes(self) -> tuple[str, ...]:
        """Fields marked ``protected`` or ``segment``, in schema order."""
        return tuple(f.name for f in self.schema if f.protected or f.segment)

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


@dataclass(frozen=True)
class FeatureViewProjection:
    """A subset of a view's features, as in ``view[["a", "b"]]``."""

    view: FeatureView
    features: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        for name in self.features:
            self.view.field(name)
        unique_names("projection of", self.view.name, self.features)

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
        unique_names("on-demand feature view", self.name, [f.name for f in self.schema])
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
