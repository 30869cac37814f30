"""List-valued features: the strict conversion of list columns and their cells.

A ``list<string>`` or ``list<int64>`` value is a list (possibly empty) of non-null
elements of the element type, or null. In entai frames a list feature has the Arrow
list dtype of :attr:`ValueType.pandas_dtype` (a cell reads back as a Python list); the
offline store keeps it as a Parquet list column; online rows and every encoding (Redis
JSON, HTTP JSON, gRPC) carry it as a Python list.

Whatever takes list values from outside (a view's transform output, a frame written
offline or pushed, a feature table given to the point-in-time join, the frame online
rows are cut from) goes through :func:`list_column`, which is strict where Arrow's
own casts are lenient: a string is not a list of characters, ``1.5`` and ``True`` are
not int64 elements, ``1`` is not a string element, and a null element is refused.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from entai.shared.core import ContractViolationError, InvalidInputError
from entai.shared.features._definitions import ValueType

__all__ = ["arrow_list_type", "list_cells", "list_column"]

_ARROW_ELEMENTS = {ValueType.STRING: pa.string(), ValueType.INT64: pa.int64()}
_SEQUENCES = (list, tuple, np.ndarray)


def arrow_list_type(value_type: ValueType) -> pa.DataType:
    """The Arrow (and Parquet) type of a list value type's columns."""
    element = value_type.element_type
    if element is None:
        raise InvalidInputError(
            f"{value_type.value!r} is not a list type", details={"value": value_type.value}
        )
    return pa.list_(_ARROW_ELEMENTS[element])


def _is_null(cell: Any) -> bool:
    return cell is None or cell is pd.NA or (isinstance(cell, float) and math.isnan(cell))


def _element_ok(element: pa.DataType, value_type: ValueType) -> bool:
    if pa.types.is_null(element):  # only empty lists (or null elements, refused below)
        return True
    if value_type is ValueType.LIST_INT64:
        return bool(pa.types.is_integer(element))
    return bool(pa.types.is_string(element) or pa.types.is_large_string(element))


def _arrow_cells(
    values: pd.Series, value_type: ValueType, column: str, error: type[InvalidInputError]
) -> pa.Array:
    """The column as an Arrow array of the list type, or ``error`` naming the column."""
    target = arrow_list_type(value_type)
    expected = f"{value_type.value} (a list of non-null {value_type.element_type} or null)"
    details: dict[str, Any] = {"field": column, "expected": value_type.value}
    if isinstance(values.dtype, pd.ArrowDtype):
        arr = pa.array(values.array)
    else:
        cells = values.to_numpy(dtype=object, na_value=None)
        bad = next((c for c in cells if not _is_null(c) and not isinstance(c, _SEQUENCES)), None)
        if bad is not None:
            raise error(
                f"column {column!r} holds {bad!r} ({type(bad).__name__}), not {expected}",
                details={**details, "type": type(bad).__name__},
            )
        try:
            arr = pa.array(cells, from_pandas=True)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            raise error(
                f"column {column!r} has list elements of mixed or unsupported types, "
                f"not {expected}: {exc}",
                details=details,
            ) from None
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    kind = arr.type
    if pa.types.is_null(kind):  # every cell null
        return pa.nulls(len(arr), target)
    is_list = pa.types.is_list(kind) or pa.types.is_large_list(kind)
    if not is_list or not _element_ok(kind.value_type, value_type):
        raise error(
            f"column {column!r} has values of type {kind}, not {expected}",
            details={**details, "dtype": str(kind)},
        )
    if pc.list_flatten(arr).null_count:
        raise error(
            f"column {column!r} has a list with a null element; {value_type.value} "
            "elements may not be null",
            details=details,
        )
    try:
        return arr.cast(target)
    except (pa.ArrowException, OverflowError) as exc:
        raise error(
            f"column {column!r} does not fit {value_type.value}: {exc}", details=details
        ) from None


def list_column(
    values: pd.Series,
    value_type: ValueType,
    column: str,
    *,
    error: type[InvalidInputError] = ContractViolationError,
) -> pd.Series:
    """A list feature column in its Arrow list dtype, checked strictly.

    Args:
        values: Cells that are lists, tuples or 1-d arrays (or null), or an Arrow list
            column.
        value_type: A list value type.
        column: The column's name, for the error message.
        error: The error class to raise.

    Raises:
        ContractViolationError: (or ``error``) a cell that is not a list, an element of
            the wrong type, a null element or an int out of the int64 range; the
            message names the column.
    """
    arr = _arrow_cells(values, value_type, column, error)
    return pd.Series(
        pd.arrays.ArrowExtensionArray(arr), index=values.index, name=values.name, copy=False
    )


def list_cells(
    values: pd.Series,
    value_type: ValueType,
    column: str,
    *,
    error: type[InvalidInputError] = ContractViolationError,
) -> list[list[Any] | None]:
    """The cells of a list column as Python lists of Python values (None for null).

    This is how list values enter online rows; the same checks as :func:`list_column`.
    """
    cells: list[list[Any] | None] = _arrow_cells(values, value_type, column, error).to_pylist()
    return cells
