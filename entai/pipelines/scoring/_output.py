"""Where a batch scoring writes, and what it has finished: the resume bookkeeping.

An output directory (local or any ``pyarrow.fs`` URI) holds::

    _scoring.json            the manifest: model, input, parts plan, run id, status
    part-00000.parquet       the scores of part 0, written atomically when it is done
    part-00001.parquet       ...

A part's file is its record of completion: it appears whole (a temporary sibling
renamed, or one object-store put) or not at all, so the parts written are exactly
the parts finished. A rerun that finds a manifest for the same model version, input
fingerprint and plan scores only the parts without a file; the parts are disjoint
and cover the input, so once every file exists the output holds every input row
exactly once. Anything else in the way (another model, a changed input, a directory
that is not a scoring's) is a :class:`~entai.shared.core.ConflictError` that says
how to go on (``--restart`` or another ``--output``).
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from entai.pipelines.scoring._input import Part
from entai.shared.core import ConflictError, NotFoundError
from entai.shared.data import Lake

__all__ = ["MANIFEST", "Resumption", "ScoringOutput", "begin_run", "finish_run", "part_name"]

MANIFEST = "_scoring.json"
_PART = re.compile(r"^part-(\d{5,})\.parquet$")


def part_name(index: int) -> str:
    """The file name of part ``index``'s scores."""
    return f"part-{index:05d}.parquet"


class ScoringOutput:
    """One scoring's output directory.

    Args:
        root: A local directory or a ``pyarrow.fs`` URI.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self._lake = Lake(root)

    def __repr__(self) -> str:
        return f"ScoringOutput(root={self.root!r})"

    @property
    def base(self) -> str:
        """The directory's path in its filesystem."""
        return self._lake.base

    def _entries(self) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self.base, recursive=False, allow_not_found=True)
        return list(self._lake.fs.get_file_info(selector))

    def manifest(self) -> dict[str, Any] | None:
        """The manifest, or None when there is none."""
        try:
            found: dict[str, Any] = self._lake.read_json(self._lake.path(MANIFEST))
        except NotFoundError:
            return None
        return found

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        """Replace the manifest (atomically)."""
        self._lake.write_json(self._lake.path(MANIFEST), dict(manifest))

    def finished(self) -> set[int]:
        """The indexes of the parts whose scores are written."""
        found = set()
        for info in self._entries():
            match = _PART.match(info.base_name)
            if match and info.type == pafs.FileType.File:
                found.add(int(match.group(1)))
        return found

    def foreign(self) -> list[str]:
        """Visible entries that are neither the manifest nor a part (nor temporaries)."""
        return sorted(
            info.base_name
            for info in self._entries()
            if info.base_name != MANIFEST
            and not info.base_name.startswith(".")
            and not _PART.match(info.base_name)
        )

    def write_part(self, index: int, table: pa.Table) -> None:
        """Write part ``index``'s scores whole (a rewrite replaces them whole)."""
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        self._lake.write_bytes(self._lake.path(part_name(index)), buffer.getvalue())

    def part_rows(self, indexes: Sequence[int]) -> dict[int, int]:
        """Rows in each written part, from the files' footers."""
        rows = {}
        for index in indexes:
            with self._lake.fs.open_input_file(self._lake.path(part_name(index))) as handle:
                rows[index] = pq.ParquetFile(handle).metadata.num_rows
        return rows

    def clear(self) -> None:
        """Delete the manifest, every part and leftover temporary file."""
        for info in self._entries():
            name = info.base_name
            if info.type == pafs.FileType.File and (
                name == MANIFEST or name.startswith(".tmp-") or _PART.match(name)
            ):
                self._lake.fs.delete_file(info.path)

    def drop_temporaries(self) -> None:
        """Delete temporary files an interrupted writer left behind."""
        for info in self._entries():
            if info.type == pafs.FileType.File and info.base_name.startswith(".tmp-"):
                self._lake.fs.delete_file(info.path)


@dataclass(frozen=True)
class Resumption:
    """Where a run starts: its manifest and the parts still to score."""

    manifest: dict[str, Any]
    todo: tuple[Part, ...]
    resumed: bool

    @property
    def run_id(self) -> str:
        """The run's id (kept by every resumption of it)."""
        return str(self.manifest["run_id"])


def _now() -> str:
    return datetime.now(UTC).isoformat()


_IDENTITY = ("model", "model_version", "input_fingerprint", "features", "parts")


def begin_run(
    output: ScoringOutput,
    identity: Mapping[str, Any],
    parts: Sequence[Part],
    *,
    lineage: Mapping[str, Any],
    restart: bool = False,
) -> Resumption:
    """Start a run in ``output``, or resume the interrupted run found there.

    Args:
        output: The output directory.
        identity: ``model``, ``model_version``, ``input_fingerprint`` and ``features``:
            what must be equal for the parts already written to be reused.
        parts: The plan.
        lineage: Recorded in a new run's manifest (input, the model's run, ...).
        restart: Delete what a previous run wrote and start over.

    Raises:
        ConflictError: ``output`` holds another scoring's parts, or files that are not
            a scoring's.
    """
    if restart:
        output.clear()
    plan = [p.to_json() for p in parts]
    wanted = {**dict(identity), "parts": plan}
    manifest = output.manifest()
    if manifest is None:
        strays = output.foreign() + [part_name(i) for i in sorted(output.finished())]
        if strays:
            raise ConflictError(
                f"output {output.root} is not empty ({', '.join(strays[:3])}"
                f"{', ...' if len(strays) > 3 else ''}) and holds no entai scoring; "
                "choose another --output",
                details={"output": output.root, "entries": strays[:10]},
            )
        manifest = {
            **wanted,
            **dict(lineage),
            "run_id": uuid.uuid4().hex,
            "created_timestamp": _now(),
            "status": "running",
            "attempts": 1,
        }
        output.write_manifest(manifest)
        return Resumption(manifest, tuple(parts), resumed=False)
    differs = [k for k in _IDENTITY if manifest.get(k) != wanted[k]]
    if differs:
        was = f"{manifest.get('model')} v{manifest.get('model_version')}"
        raise ConflictError(
            f"output {output.root} holds a scoring by {was} of {manifest.get('input')} that "
            f"differs in {', '.join(differs)}; pass --restart to replace it, or choose "
            "another --output",
            details={"output": output.root, "differs": differs, "run_id": manifest.get("run_id")},
        )
    done = output.finished()
    unplanned = sorted(done - {p.index for p in parts})
    if unplanned:
        raise ConflictError(
            f"output {output.root} holds parts {unplanned[:5]} outside its plan; "
            "pass --restart to score it again",
            details={"output": output.root, "parts": unplanned[:10]},
        )
    todo = tuple(p for p in parts if p.index not in done)
    if todo:
        output.drop_temporaries()
        manifest = {**manifest, "status": "running", "attempts": int(manifest["attempts"]) + 1}
        output.write_manifest(manifest)
    return Resumption(manifest, todo, resumed=bool(done))


def finish_run(output: ScoringOutput, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Check every planned part is written, then mark the run complete with its rows.

    Raises:
        ConflictError: a part is missing (the run is not finished).
    """
    planned = [int(p["index"]) for p in manifest["parts"]]
    missing = sorted(set(planned) - output.finished())
    if missing:
        raise ConflictError(
            f"output {output.root}: parts {missing[:5]} are not written; rerun to finish",
            details={"output": output.root, "missing": missing[:10]},
        )
    rows = output.part_rows(planned)
    done = {
        **dict(manifest),
        "status": "complete",
        "rows": sum(rows.values()),
        "completed_timestamp": _now(),
    }
    output.write_manifest(done)
    return done
