"""The input hash's UTF-8 check: characters cut by chunk ends, bad bytes, truncation."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from entai.pipelines.ingest import _files as ingest
from entai.shared.core import InvalidInputError

TEXT = "id,note\n1,caf\u00e9 \u20ac5 \U0001f600 ok\n2,\u00fcber\n".encode()


def hash_of(path: Path) -> str:
    return ingest._hash_input(pafs.LocalFileSystem(), [str(path)], "in", text=True)


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 1 << 20])
def test_characters_cut_by_chunk_ends_are_valid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(ingest, "_CHUNK", chunk)
    path = tmp_path / "in.csv"
    path.write_bytes(TEXT)
    expected = hashlib.sha256(b"in.csv\0" + TEXT).hexdigest()
    assert hash_of(path) == f"sha256:{expected}"


@pytest.mark.parametrize("chunk", [1, 4, 1 << 20])
@pytest.mark.parametrize("bad", [b"\xff", b"\xc3(", b"\xe2\x82(", b"\xed\xa0\x80"])
def test_a_bad_byte_is_named_by_its_offset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, bad: bytes
) -> None:
    monkeypatch.setattr(ingest, "_CHUNK", chunk)
    path = tmp_path / "in.csv"
    path.write_bytes(TEXT + bad + b"tail\n")
    with pytest.raises(InvalidInputError, match=f"bad byte at offset {len(TEXT)}\\)"):
        hash_of(path)


@pytest.mark.parametrize("chunk", [1, 3, 1 << 20])
def test_an_input_ending_inside_a_character_is_truncated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(ingest, "_CHUNK", chunk)
    path = tmp_path / "in.csv"
    path.write_bytes(TEXT + "\u20ac".encode()[:2])
    with pytest.raises(InvalidInputError, match="ends inside a UTF-8 character"):
        hash_of(path)
