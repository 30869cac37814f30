"""Contract versions: breaking-change detection, evolution and the registry.

A changed contract gets the next version; :func:`evolve` refuses a breaking change
(column removed, type narrowed, rule tightened) unless forced.
"""

from __future__ import annotations

import logging

from entai.shared.core import ConflictError, NotFoundError
from entai.shared.data._contracts import Column, ColumnType, DataContract
from entai.shared.data._masking import MaskingOperator

__all__ = ["ContractRegistry", "breaking_changes", "evolve"]

logger = logging.getLogger(__name__)

_WIDENINGS = frozenset(
    {
        (ColumnType.INT64, ColumnType.FLOAT64),
        (ColumnType.INT64, ColumnType.STRING),
        (ColumnType.FLOAT64, ColumnType.STRING),
        (ColumnType.BOOL, ColumnType.STRING),
        (ColumnType.BOOL, ColumnType.INT64),
        (ColumnType.TIMESTAMP, ColumnType.STRING),
    }
)


def breaking_changes(old: DataContract, new: DataContract) -> list[str]:
    """Changes from ``old`` to ``new`` that data valid under ``old`` may not survive.

    Returns:
        One sentence per breaking change; empty when ``new`` is compatible.
    """
    problems: list[str] = []
    new_columns = {c.name: c for c in new.columns}
    old_names = {c.name for c in old.columns}
    for before in old.columns:
        after = new_columns.get(before.name)
        if after is None:
            problems.append(f"column {before.name!r} removed")
            continue
        problems.extend(_column_breaks(before, after))
    problems.extend(
        f"required column {c.name!r} added"
        for c in new.columns
        if c.name not in old_names and not c.nullable
    )
    if old.event_time != new.event_time:
        problems.append(f"event_time changed from {old.event_time!r} to {new.event_time!r}")
    if old.key != new.key:
        problems.append(f"key changed from {list(old.key)} to {list(new.key)}")
    return problems


def _column_breaks(before: Column, after: Column) -> list[str]:
    name = before.name
    problems: list[str] = []
    if before.type != after.type and (before.type, after.type) not in _WIDENINGS:
        problems.append(f"column {name!r} type narrowed from {before.type} to {after.type}")
    if before.nullable and not after.nullable:
        problems.append(f"column {name!r} no longer nullable")
    if after.min is not None and (before.min is None or after.min > before.min):
        problems.append(f"column {name!r} min raised to {after.min}")
    if after.max is not None and (before.max is None or after.max < before.max):
        problems.append(f"column {name!r} max lowered to {after.max}")
    if after.allowed is not None and (
        before.allowed is None or not set(before.allowed) <= set(after.allowed)
    ):
        problems.append(f"column {name!r} allowed categories narrowed")
    if after.regex is not None and after.regex != before.regex:
        problems.append(f"column {name!r} regex changed")
    if before.operator == MaskingOperator.HMAC and after.operator != MaskingOperator.HMAC:
        problems.append(f"column {name!r} no longer pseudonymised (masked ids stop joining)")
    return problems


def evolve(
    current: DataContract | None, proposed: DataContract, *, force: bool = False
) -> DataContract:
    """The contract to store when ``proposed`` replaces ``current``.

    An unchanged contract comes back as ``current``; a changed one gets version
    ``current.version + 1``.

    Raises:
        ConflictError: if the change is breaking and ``force`` is false, or the
            sources differ.
    """
    if current is None:
        return proposed
    if current.source != proposed.source:
        raise ConflictError(
            f"contract for source {proposed.source!r} cannot replace {current.source!r}",
            details={"source": proposed.source, "current_source": current.source},
        )
    if current.fingerprint == proposed.fingerprint:
        return current
    problems = breaking_changes(current, proposed)
    if problems and not force:
        raise ConflictError(
            f"contract {proposed.source!r} v{current.version + 1} is breaking: "
            + "; ".join(problems)
            + " (pass force=True to accept)",
            details={"source": proposed.source, "breaking_changes": problems},
        )
    if problems:
        logger.warning(
            "forced breaking contract change",
            extra={"source": proposed.source, "breaking_changes": problems},
        )
    return proposed.model_copy(update={"version": current.version + 1})


class ContractRegistry:
    """Every version of every source's contract, held in memory.

    Persistence belongs to the caller (the governance service stores the YAML).
    """

    def __init__(self) -> None:
        self._history: dict[str, list[DataContract]] = {}

    def register(self, contract: DataContract, *, force: bool = False) -> DataContract:
        """Store ``contract`` as the source's next version (see :func:`evolve`).

        Returns:
            The stored contract, with its assigned version.
        """
        history = self._history.setdefault(contract.source, [])
        stored = evolve(history[-1] if history else None, contract, force=force)
        if not history or stored is not history[-1]:
            history.append(stored)
        return stored

    def get(self, source: str, version: int | None = None) -> DataContract:
        """The latest (or the given) version of a source's contract.

        Raises:
            NotFoundError: if the source or version is unknown.
        """
        for contract in reversed(self._history.get(source, [])):
            if version is None or contract.version == version:
                return contract
        raise NotFoundError(
            f"no contract for source {source!r}"
            + (f" at version {version}" if version is not None else ""),
            details={"source": source, "version": version},
        )

    def versions(self, source: str) -> list[int]:
        """Versions registered for ``source``, oldest first."""
        return [c.version for c in self._history.get(source, [])]
