"""Masking operators and the HMAC key's resolution."""

from __future__ import annotations

import hashlib
import hmac
import stat
from pathlib import Path

import pyarrow as pa
import pytest

from entai.shared.core import ConfigError
from entai.shared.data import (
    MaskingOperator,
    Pseudonymiser,
    apply_operator,
    mask,
    pseudonym,
    pseudonymise,
    redact,
)
from entai.shared.settings import load_settings, resolve_hmac_key

KEY = b"unit-test-key-0123456789abcdef"


def test_pseudonyms_are_stable_distinct_and_keyed() -> None:
    ids = pa.array([f"user-{i}" for i in range(5000)] * 2 + [None])
    out = pseudonymise(ids, KEY).to_pylist()
    assert out[:5000] == out[5000:10000]
    assert len(set(out[:5000])) == 5000
    assert out[-1] is None
    assert all(p.startswith("p_") and len(p) == 34 for p in out[:10])
    assert pseudonymise(ids, b"another-key-0123456789").to_pylist()[0] != out[0]


def test_int_and_string_ids_join() -> None:
    assert pseudonymise(pa.array([42]), KEY) == pseudonymise(pa.array(["42"]), KEY)


def test_mask_keeps_a_hint_only_on_long_values() -> None:
    out = mask(pa.array(["4111111111111111", "abc", None])).to_pylist()
    assert out == ["************1111", "***", None]


def test_redact_and_drop() -> None:
    assert redact(pa.array(["x", None])).to_pylist() == ["[REDACTED]", None]
    assert apply_operator(pa.array(["x"]), MaskingOperator.DROP, KEY) is None


def test_free_text_operator_applies_to_findings_only() -> None:
    notes = pa.array(["mail jo@x.org today", "nothing here"])
    out = apply_operator(notes, MaskingOperator.HMAC, KEY, free_text=True)
    assert out is not None
    first, second = out.to_pylist()
    assert first.startswith("mail p_") and first.endswith(" today")
    assert second == "nothing here"


def test_production_without_key_is_a_startup_error() -> None:
    settings = load_settings(security={"mode": "production"})
    with pytest.raises(ConfigError, match="hmac_key"):
        resolve_hmac_key(settings)


def test_short_key_is_refused() -> None:
    with pytest.raises(ConfigError):
        resolve_hmac_key(load_settings(security={"hmac_key": "short"}))


def test_configured_key_and_key_file(tmp_path: Path) -> None:
    assert resolve_hmac_key(load_settings(security={"hmac_key": KEY.decode()})) == KEY
    path = tmp_path / "key"
    path.write_bytes(KEY + b"\n")
    settings = load_settings(security={"mode": "production", "hmac_key_file": str(path)})
    assert resolve_hmac_key(settings) == KEY


def test_embedded_default_key_is_created_once(tmp_path: Path) -> None:
    settings = load_settings(home=str(tmp_path))
    first = resolve_hmac_key(settings)
    assert resolve_hmac_key(settings) == first
    mode = (tmp_path / "hmac_key").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_operators_on_repeated_and_dictionary_values_match_per_row() -> None:
    rows = ["4111111111111111", "abc", None, "4111111111111111", "mail jo@x.org", "abc"]
    plain = pa.array(rows)
    for values in (plain, plain.dictionary_encode(), pa.chunked_array([plain[:2], plain[2:]])):
        assert mask(values).to_pylist() == [
            *["************1111", "***", None, "************1111", "*********.org", "***"]
        ]
        assert pseudonymise(values, KEY).to_pylist() == [
            None if v is None else pseudonym(v, KEY) for v in rows
        ]
        scrubbed = apply_operator(values, MaskingOperator.REDACT, KEY, free_text=True)
        assert scrubbed is not None
        card = "[REDACTED:CARD]"
        assert scrubbed.to_pylist() == [card, "abc", None, card, "mail [REDACTED:EMAIL]", "abc"]


@pytest.mark.parametrize("key", [KEY, b"k" * 64, b"long-key-" * 20])
def test_column_pseudonyms_are_hmac_sha256_for_any_key_length(key: bytes) -> None:
    values = ["u1", "", "\u00e9t\u00e9", "42"]
    expected = ["p_" + hmac.new(key, v.encode(), hashlib.sha256).hexdigest()[:32] for v in values]
    assert pseudonymise(pa.array(values), key).to_pylist() == expected
    assert [pseudonym(v, key) for v in values] == expected


def test_pseudonymiser_remembers_up_to_its_capacity_and_keeps_pseudonyms() -> None:
    pseudonymiser = Pseudonymiser(KEY, capacity=3)
    first = pseudonymiser(pa.array(["a", "b", "a", None]))
    assert first.to_pylist() == [
        pseudonym("a", KEY),
        pseudonym("b", KEY),
        pseudonym("a", KEY),
        None,
    ]
    assert repr(pseudonymiser) == "Pseudonymiser(remembered=2, capacity=3)"
    values = pa.array(["b", "c", "d", "e"])
    assert pseudonymiser(values) == pseudonymise(values, KEY)  # remembered or not, the same
    assert repr(pseudonymiser) == "Pseudonymiser(remembered=3, capacity=3)"
    assert pseudonymiser.uses_key(KEY) and not pseudonymiser.uses_key(KEY + b"x")


def test_a_pseudonymiser_of_another_key_is_refused() -> None:
    other = Pseudonymiser(b"another-key-0123456789")
    with pytest.raises(ValueError, match="another HMAC key"):
        apply_operator(pa.array(["u1"]), MaskingOperator.HMAC, KEY, pseudonymiser=other)
