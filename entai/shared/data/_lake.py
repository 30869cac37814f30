"""The data lake's layout and filesystem access, in one place.

A lake is a root directory on a local disk or an object store (``s3://``, ``gs://``,
``file://``), resolved once through :func:`pyarrow.fs.FileSystem.from_uri`. Every zone
of the platform lives under it::

    <root>/raw/<source>/            ingested events, partitioned by date
    <root>/quarantine/<source>/     rejected rows with their reasons
    <root>/offline/<view>/          offline feature tables (hive ``date=YYYY-MM-DD``)
    <root>/datasets/<id>/           immutable training sets with their manifest
    <root>/registry/                versioned definitions (``<hash>.json`` + ``current``)
    <root>/manifests/               run manifests
    <root>/audit/                   the hash-chained audit log
    <root>/predictions/             the prediction log (``model=<name>/date=YYYY-MM-DD``)
    <root>/feedback/                a ranker's clicks and purchases (same layout)
"""

from __future__ import annotations

import json
import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from entai.shared.core import ConflictError, InvalidInputError, NotFoundError

__all__ = ["Lake"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=-]*$")


def _checked(kind: str, name: str) -> str:
    """Return ``name`` if it is safe as one path component, else raise."""
    if not _NAME.match(name) or ".." in name:
        raise InvalidInputError(
            f"{kind} name {name!r} is not a valid lake path component "
            "(letters, digits, '_', '.', '-', '=' only)",
            details={"field": kind, "value": name},
        )
    return name


class Lake:
    """The lake root plus helpers to read and write bytes and JSON under it.

    Args:
        root: A local path or a filesystem URI understood by pyarrow.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        if "://" in root:
            fs, path = pafs.FileSystem.from_uri(root)
        else:
            fs, path = pafs.LocalFileSystem(), str(Path(root).resolve())
        self.fs: pafs.FileSystem = fs
        self.base: str = path.rstrip("/")
        self.is_local = isinstance(fs, pafs.LocalFileSystem)

    def __repr__(self) -> str:
        return f"Lake(root={self.root!r})"

    def path(self, *parts: str) -> str:
        """Join path components under the lake's base path."""
        return "/".join([self.base, *parts])

    def raw(self, source: str) -> str:
        """Directory of a source's raw, accepted events."""
        return self.path("raw", _checked("source", source))

    def quarantine(self, source: str) -> str:
        """Directory of a source's rejected rows."""
        return self.path("quarantine", _checked("source", source))

    def offline(self, view: str) -> str:
        """Directory of a feature view's offline table."""
        return self.path("offline", _checked("feature view", view))

    def datasets(self, dataset_id: str) -> str:
        """Directory of one immutable dataset."""
        return self.path("datasets", _checked("dataset", dataset_id))

    def registry(self) -> str:
        """Directory of the versioned definitions registry."""
        return self.path("registry")

    def manifests(self) -> str:
        """Directory of run manifests."""
        return self.path("manifests")

    def audit(self) -> str:
        """Directory of the audit log."""
        return self.path("audit")

    def predictions(self) -> str:
        """Directory of the prediction log."""
        return self.path("predictions")

    def exists(self, path: str) -> bool:
        """Whether a file or directory exists at ``path``."""
        return bool(self.fs.get_file_info(path).type != pafs.FileType.NotFound)

    def makedirs(self, path: str) -> None:
        """Create a directory and its parents (a no-op on object stores)."""
        self.fs.create_dir(path, recursive=True)

    def write_bytes(self, path: str, data: bytes, *, overwrite: bool = True) -> None:
        """Write a file atomically: a reader sees the old content or the new, never part.

        On a local filesystem the bytes go to a temporary sibling that is then renamed;
        object stores publish a single put atomically.

        Raises:
            ConflictError: ``overwrite`` is False and the file exists.
        """
        if not overwrite and self.exists(path):
            raise ConflictError(f"{path} already exists and is immutable", details={"path": path})
        parent = path.rsplit("/", 1)[0]
        self.makedirs(parent)
        if not self.is_local:
            with self.fs.open_output_stream(path) as out:
                out.write(data)
            return
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
        Path(tmp).write_bytes(data)
        if overwrite:
            Path(tmp).replace(path)
            return
        try:
            os.link(tmp, path)  # fails if the target exists: exclusive create
        except FileExistsError as exc:
            raise ConflictError(
                f"{path} already exists and is immutable", details={"path": path}
            ) from exc
        finally:
            Path(tmp).unlink()

    def read_bytes(self, path: str) -> bytes:
        """Read a whole file.

        Raises:
            NotFoundError: there is no file at ``path``.
        """
        try:
            with self.fs.open_input_stream(path) as src:
                return bytes(src.read())
        except FileNotFoundError as exc:
            raise NotFoundError(f"{path} does not exist", details={"path": path}) from exc

    def write_json(self, path: str, value: Any, *, overwrite: bool = True) -> None:
        """Write ``value`` as canonical, sorted JSON (atomically)."""
        text = json.dumps(value, sort_keys=True, indent=2, default=str)
        self.write_bytes(path, text.encode(), overwrite=overwrite)

    def read_json(self, path: str) -> Any:
        """Read a JSON file written by :meth:`write_json`."""
        return json.loads(self.read_bytes(path))

    def list_json(self, directory: str) -> list[Any]:
        """The JSON documents directly under ``directory`` (none if it does not exist)."""
        selector = pafs.FileSelector(directory, recursive=False, allow_not_found=True)
        return [
            self.read_json(info.path)
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File and info.path.endswith(".json")
        ]

    def model_log_files(
        self, kind: str, model: str, days: int, *, now: datetime | None = None
    ) -> dict[str, str]:
        """The Parquet files of ``<root>/<kind>/model=<model>/date=*`` of the last ``days``
        days, in path order, each with a stamp that changes when the file does.

        Args:
            kind: ``predictions`` or ``feedback``.
            model: The model's name.
            days: How many days back (by the ``date=`` partition, UTC).
            now: The current time (timezone-aware); the wall clock by default.

        Returns:
            Path -> ``"<size>:<mtime_ns>"``.
        """
        first = ((now or datetime.now(UTC)) - timedelta(days=days)).strftime("%Y-%m-%d")
        base = self.path(kind, f"model={model}")
        selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        found = {
            info.path: f"{info.size}:{info.mtime_ns}"
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File
            and info.path.endswith(".parquet")
            and info.path.split("date=")[-1][:10] >= first
        }
        return dict(sorted(found.items()))

    def read_parquet(self, path: str, columns: list[str]) -> pd.DataFrame:
        """The ``columns`` of one Parquet file."""
        return pq.read_table(path, columns=columns, filesystem=self.fs).to_pandas()

    def read_model_log(
        self,
        kind: str,
        model: str,
        columns: list[str],
        days: int,
        *,
        now: datetime | None = None,
    ) -> pd.DataFrame:
        """The rows of ``<root>/<kind>/model=<model>/date=*`` for the last ``days`` days,
        file by file in path order (see :meth:`model_log_files`).

        Args:
            kind: ``predictions`` or ``feedback``.
            model: The model's name.
            columns: The columns to read (an empty frame with them when there are no files).
            days: How many days back (by the ``date=`` partition, UTC).
            now: The current time (timezone-aware); the wall clock by default.
        """
        tables = [
            pq.read_table(path, columns=columns, filesystem=self.fs)
            for path in self.model_log_files(kind, model, days, now=now)
        ]
        if not tables:
            return pd.DataFrame({c: [] for c in columns})
        return pa.concat_tables(tables).to_pandas()
