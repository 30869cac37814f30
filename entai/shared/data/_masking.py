"""Masking operators applied to PII columns before anything is stored.

- ``hmac``: keyed HMAC-SHA256 pseudonymisation, ``p_`` + 32 hex digits. Stable for a
  key, so pseudonymised ids still join across tables and batches; the canonical form of
  a value is its string form (``123`` and ``"123"`` give the same pseudonym).
- ``mask``: every character becomes ``*`` except the last 4 of values of 8+ characters
  (the hint: last 4 of a card or phone).
- ``redact``: the value becomes a fixed token such as ``[REDACTED]``.
- ``drop``: the column is removed.

On ``free_text`` columns the operator applies to each PII finding inside the text
(see :mod:`entai.shared.data._pii`), not to the whole value.

Column operators are vectorised with ``pyarrow.compute``. HMAC and the free-text scan
have no vectorised form, so they run once per distinct value (dictionary encoding,
:func:`per_distinct`), not once per row: ids repeat a lot. A :class:`Pseudonymiser`
also remembers the values it hashed, so an ingestion's blocks share that work.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from enum import StrEnum

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from entai.shared.data._pii import PiiKind, canonical_finding, scrub_column

__all__ = [
    "MaskingOperator",
    "Pseudonymiser",
    "apply_operator",
    "mask",
    "mask_text",
    "per_distinct",
    "pseudonym",
    "pseudonymise",
    "redact",
    "redact_finding",
]

logger = logging.getLogger(__name__)

PSEUDONYM_PREFIX = "p_"
REDACTED = "[REDACTED]"
_HEX_CHARS = 32
_HINT_CHARS = 4
_HINT_MIN_LENGTH = 8


class MaskingOperator(StrEnum):
    """What happens to a column's values before they are stored."""

    NONE = "none"
    HMAC = "hmac"
    MASK = "mask"
    REDACT = "redact"
    DROP = "drop"


def pseudonym(value: object, key: bytes) -> str:
    """The pseudonym of one value (its canonical string form)."""
    digest = hmac.digest(key, str(value).encode(), "sha256")
    return PSEUDONYM_PREFIX + digest[: _HEX_CHARS // 2].hex()


def _as_strings(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_string(values.type):
        return values
    if pa.types.is_large_string(values.type) or pa.types.is_dictionary(values.type):
        return values.cast(pa.string())
    if pa.types.is_boolean(values.type):
        return pc.if_else(values, "true", "false")
    return pc.cast(values, pa.string())


def per_distinct(
    values: pa.Array | pa.ChunkedArray, operator: Callable[[pa.Array], pa.Array]
) -> pa.Array:
    """Apply a string operator once per distinct value, then spread the results.

    Ids, emails and categories repeat across rows, so the operator sees each value once
    (a column of distinct values costs one hash pass more). Values are converted to
    their string form after deduplication, so ``42`` and ``"42"`` give the same result.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    encoded = values.dictionary_encode()
    distinct = operator(_as_strings(encoded.dictionary))
    return pc.take(distinct, encoded.indices)


def _keyed_states(key: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    """HMAC-SHA256's inner and outer SHA-256 states after the padded key (RFC 2104)."""
    block = hashlib.sha256().block_size
    padded = (hashlib.sha256(key).digest() if len(key) > block else key).ljust(block, b"\0")
    inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in padded))
    outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in padded))
    return inner, outer


class Pseudonymiser:
    """:func:`pseudonym` for one key, remembering the values it has already hashed.

    HMAC-SHA256 hashes the padded key before every message: each value starts from
    copies of the two keyed SHA-256 states, computed once (half the work per value).
    The same ids come back in every block of an ingestion, so a pseudonymiser kept for
    the length of one ingestion run hashes each distinct value once; it remembers at
    most ``capacity`` values (later ones are hashed every time, never evicted).
    """

    def __init__(self, key: bytes, *, capacity: int = 1 << 18) -> None:
        """Pseudonymise with ``key``, remembering up to ``capacity`` values."""
        self._inner, self._outer = _keyed_states(key)
        self._fingerprint = hmac.digest(key, b"entai-pseudonymiser", "sha256")
        self._capacity = capacity
        # What was hashed, as two aligned arrays: looked up with one vectorised
        # ``index_in`` per call rather than a dictionary probe per value.
        self._values = pa.array([], type=pa.string())
        self._pseudonyms = pa.array([], type=pa.string())

    def __repr__(self) -> str:
        return f"Pseudonymiser(remembered={len(self._values)}, capacity={self._capacity})"

    def uses_key(self, key: bytes) -> bool:
        """Whether this pseudonymiser was made with ``key``."""
        other = hmac.digest(key, b"entai-pseudonymiser", "sha256")
        return hmac.compare_digest(self._fingerprint, other)

    def _hash(self, value: str) -> str:
        message = self._inner.copy()
        message.update(value.encode())
        signed = self._outer.copy()
        signed.update(message.digest())
        return PSEUDONYM_PREFIX + signed.digest()[: _HEX_CHARS // 2].hex()

    def strings(self, strings: pa.Array) -> pa.Array:
        """The pseudonym of each (non-null) string of a string array."""
        known = len(self._values)
        at = pc.index_in(strings, value_set=self._values).fill_null(-1).to_numpy().copy()
        new = np.flatnonzero(at < 0)
        fresh = strings.take(pa.array(new))
        hashed = pa.array([self._hash(v) for v in fresh.to_pylist()], type=pa.string())
        at[new] = known + np.arange(new.size)
        every = pa.concat_arrays([self._pseudonyms, hashed]) if new.size else self._pseudonyms
        found = every.take(pa.array(at))
        room = min(self._capacity - known, new.size)
        if room > 0:
            self._values = pa.concat_arrays([self._values, fresh.slice(0, room)])
            self._pseudonyms = pa.concat_arrays([self._pseudonyms, hashed.slice(0, room)])
        return found

    def __call__(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Pseudonymise every value (once per distinct value); nulls stay null."""
        return per_distinct(values, self.strings)


def pseudonymise(values: pa.Array | pa.ChunkedArray, key: bytes) -> pa.Array:
    """HMAC-pseudonymise every value (once per distinct value); nulls stay null."""
    return Pseudonymiser(key, capacity=0)(values)


def _mask_strings(strings: pa.Array) -> pa.Array:
    length = pc.utf8_length(strings)
    keeps_hint = pc.greater_equal(length, _HINT_MIN_LENGTH)
    tail = pc.if_else(keeps_hint, pc.utf8_slice_codeunits(strings, start=-_HINT_CHARS), "")
    stars = pc.binary_repeat("*", pc.subtract(length, pc.if_else(keeps_hint, _HINT_CHARS, 0)))
    return pc.binary_join_element_wise(stars, tail, "")


def mask(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Replace characters by ``*``, keeping the last 4 of values of 8+ characters.

    Per row, not per distinct value: the kernels cost about what deduplication does.
    """
    return _mask_strings(_as_strings(values))


def mask_text(text: str) -> str:
    """:func:`mask` for one string."""
    hint = text[-_HINT_CHARS:] if len(text) >= _HINT_MIN_LENGTH else ""
    return "*" * (len(text) - len(hint)) + hint


def redact(values: pa.Array | pa.ChunkedArray, token: str = REDACTED) -> pa.Array:
    """Replace every non-null value by ``token``."""
    strings = _as_strings(values)
    return pc.if_else(pc.is_valid(strings), token, pa.scalar(None, pa.string()))


def redact_finding(kind: PiiKind, text: str) -> str:
    """What a redacted finding inside free text becomes: ``[REDACTED:<KIND>]``."""
    return f"[REDACTED:{kind.upper()}]"


def _finding_replacer(operator: MaskingOperator, key: bytes) -> Callable[[PiiKind, str], str]:
    if operator == MaskingOperator.HMAC:
        return lambda kind, text: pseudonym(canonical_finding(kind, text), key)
    if operator == MaskingOperator.MASK:
        return lambda kind, text: mask_text(text)
    return redact_finding


def apply_operator(
    values: pa.Array | pa.ChunkedArray,
    operator: MaskingOperator,
    key: bytes,
    *,
    free_text: bool = False,
    pseudonymiser: Pseudonymiser | None = None,
) -> pa.Array | pa.ChunkedArray | None:
    """Apply ``operator`` to a column; None means the column is dropped.

    Args:
        values: The column.
        operator: The masking operator.
        key: The HMAC key (used by ``hmac`` only).
        free_text: Apply the operator to PII found inside the text, not the value.
        pseudonymiser: Pseudonymises whole values for ``hmac`` (made with ``key``);
            by default a new one.

    Raises:
        ValueError: if ``pseudonymiser`` was made with another key.
    """
    if operator == MaskingOperator.DROP:
        return None
    if operator == MaskingOperator.NONE:
        return values
    if free_text:
        replacer = _finding_replacer(operator, key)
        return per_distinct(values, lambda strings: scrub_column(strings, replacer))
    if operator == MaskingOperator.HMAC:
        return _checked(pseudonymiser, key)(values)
    if operator == MaskingOperator.MASK:
        return mask(values)
    return redact(values)


def _checked(pseudonymiser: Pseudonymiser | None, key: bytes) -> Pseudonymiser:
    if pseudonymiser is None:
        return Pseudonymiser(key, capacity=0)
    if not pseudonymiser.uses_key(key):
        raise ValueError("the pseudonymiser was made with another HMAC key")
    return pseudonymiser
