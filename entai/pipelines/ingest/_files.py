"""Batch ingestion of files into the lake's raw zone, on Ray Data.

``ingest_file`` reads CSV, Parquet or JSON lines (one file or a directory; local or any
``pyarrow.fs`` URI) with Ray Data (CSV in byte ranges of whole lines, so one large file
keeps every core busy: :mod:`entai.pipelines.ingest._csv_ranges`) and commits in three steps:

1. hash the input bytes (streamed SHA-256; text formats are checked to be UTF-8 on
   the way); an ingest manifest with that hash for the source means a no-op;
2. each Ray Data task validates and masks its block with the pure
   :func:`entai.shared.data._validation.check_batch` (which also scans every string column
   the contract stores in the clear for PII: :mod:`entai.shared.data._undeclared`) and
   stages its own Parquet files
   (accepted rows by event date, quarantined rows by ingest date) under
   ``_staging/ingest/<batch_id>/`` (:mod:`entai.pipelines.ingest._staging`); the driver
   only sees counts and key columns, checks the key's uniqueness across blocks, then
   moves the staged files to ``raw/<source>/date=<event date>/`` and
   ``quarantine/<source>/date=<ingest date>/``;
3. the manifest ``manifests/ingest/<source>/<batch_id>.json`` last: it is the commit
   marker. A run that crashed while moving files is re-run safely: the batch id is
   derived from the input hash and the staged intent lists the paths to replace.

Invariant, checked before the commit: rows in = rows accepted + rows quarantined.
The report and the manifest count the PII found per column and kind and carry one
warning per such column (declare it PII).
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.json as pajson
import pyarrow.parquet as pq

from entai.pipelines.data_context import V1_PARQUET_READER, data_settings
from entai.pipelines.ingest._staging import (
    StagedBatch,
    commit_staged,
    move_duplicates,
    reset_staging,
    stage_block,
    staged_batch,
    staging_dir,
)
from entai.shared.core import ContractViolationError, EntaiError, InvalidInputError
from entai.shared.data import (
    DataContract,
    Lake,
    PiiKind,
    UndeclaredPii,
    check_schema,
    replace_pii,
    undeclared_pii_warnings,
)
from entai.shared.settings import check_hmac_key

__all__ = ["IngestReport", "ingest_file"]

logger = logging.getLogger(__name__)

_FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
}
_CHUNK = 1 << 20
_UTF8_LEADS = ((2, (0xE0, 0xC0)), (3, (0xF0, 0xE0)), (4, (0xF8, 0xF0)))  # bytes, (mask, bits)
_BATCH_ROWS = 200_000  # per validation task: big enough to amortise per-task costs
_QUOTED_ROW = re.compile(r"(got [0-9]+( columns)?):.*$")


@dataclass(frozen=True)
class IngestReport:
    """What one ingestion did; ``rows_in == rows_accepted + rows_quarantined``.

    ``pii_findings`` counts, per column the contract stores in the clear and per PII
    kind, the rows that held it (quarantined or redacted, by ``undeclared_pii``);
    ``warnings`` has one sentence per such column, naming it: declare it PII.
    """

    source: str
    batch_id: str
    input_hash: str
    rows_in: int
    rows_accepted: int
    rows_quarantined: int
    files_written: tuple[str, ...]
    skipped_as_duplicate: bool
    contract_version: int
    pii_findings: dict[str, dict[str, int]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def _input_files(uri: str) -> tuple[pafs.FileSystem, list[str]]:
    fs, path = pafs.FileSystem.from_uri(uri) if "://" in uri else (pafs.LocalFileSystem(), uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise InvalidInputError(f"{uri} does not exist", details={"uri": uri})
    if info.type == pafs.FileType.File:
        files = [info]
    else:
        found = fs.get_file_info(pafs.FileSelector(path, recursive=True))
        files = [f for f in found if f.type == pafs.FileType.File and f.base_name[0] not in "._"]
    if not files:
        raise InvalidInputError(f"{uri} holds no files", details={"uri": uri})
    empty = [f.path for f in files if f.size == 0]
    if empty:
        raise InvalidInputError(f"{uri}: empty file(s) {empty}", details={"uri": uri})
    return fs, sorted(f.path for f in files)


def _format_of(uri: str, files: list[str], fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in set(_FORMATS.values()):
            raise InvalidInputError(f"format {fmt!r} is not csv, parquet or json", details={})
        return fmt
    kinds = {_FORMATS.get("." + name.rsplit(".", 1)[-1].lower()) for name in files}
    if len(kinds) != 1 or None in kinds:
        raise InvalidInputError(
            f"{uri}: cannot tell the format from the file names; pass fmt=csv|parquet|json",
            details={"uri": uri},
        )
    return str(kinds.pop())


def _whole_characters(data: bytes) -> int:
    """The length of ``data`` without a UTF-8 character it ends inside of."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # not a continuation byte: a character starts here
            needs = next((n for n, lead in _UTF8_LEADS if byte & lead[0] == lead[1]), 1)
            return len(data) - back if needs > back else len(data)
    return len(data)


def _first_bad_byte(data: bytes) -> int | None:
    """The offset of the first byte of ``data`` that is not UTF-8, or None if all are.

    Arrow's validator screens the chunk fast; Python's strict decoder, which also gives
    the offset, decides.
    """
    bounds = pa.py_buffer(np.array([0, len(data)], dtype=np.int32))
    try:
        pa.StringArray.from_buffers(1, bounds, pa.py_buffer(data)).validate(full=True)
    except pa.ArrowInvalid:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return int(exc.start)
    return None


def _hash_input(fs: pafs.FileSystem, files: list[str], uri: str, text: bool) -> str:
    """SHA-256 of the files' names and bytes; text is checked to be UTF-8 on the way."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.rsplit("/", 1)[-1].encode() + b"\0")
        pending, offset = b"", 0  # bytes of a character cut by a chunk's end; their offset
        with fs.open_input_stream(path) as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
                if text:
                    data = pending + chunk
                    whole = _whole_characters(data)
                    bad = _first_bad_byte(data[:whole])
                    if bad is not None:
                        raise InvalidInputError(
                            f"{uri}: {path} is not UTF-8 text (bad byte at offset {offset + bad})",
                            details={"uri": uri, "file": path, "offset": offset + bad},
                        )
                    pending, offset = data[whole:], offset + whole
        if pending:
            raise InvalidInputError(
                f"{uri}: {path} ends inside a UTF-8 character (truncated?)",
                details={"uri": uri, "file": path},
            )
    return "sha256:" + digest.hexdigest()


def _read(fs: pafs.FileSystem, files: list[str], fmt: str, contract: DataContract) -> Any:
    import ray
    import ray.data

    from entai.pipelines.ingest._csv_ranges import CsvRangeDatasource, read_parts

    if fmt == "csv":
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))  # type: ignore[no-untyped-call]
        parts = read_parts(sum(fs.get_file_info(path).size for path in files), cpus)
        source = CsvRangeDatasource(fs, files, _csv_options(contract))
        return ray.data.read_datasource(source, override_num_blocks=parts)
    if fmt == "parquet":
        return ray.data.read_parquet(files, filesystem=fs, file_extensions=None)
    return ray.data.read_json(files, filesystem=fs, file_extensions=None)


def _file_schema(fs: pafs.FileSystem, path: str, fmt: str, contract: DataContract) -> pa.Schema:
    """The schema of one input file, from its header, footer or first lines only."""
    if fmt == "parquet":
        with fs.open_input_file(path) as handle:
            return pq.read_schema(handle)
    if fmt == "csv":
        with fs.open_input_stream(path) as stream:
            return pacsv.open_csv(stream, convert_options=_csv_options(contract)).schema
    with fs.open_input_stream(path) as stream:
        head = stream.read(_CHUNK)
    lines = head if len(head) < _CHUNK else head[: head.rfind(b"\n") + 1]
    return pajson.read_json(pa.BufferReader(lines)).schema


def _csv_options(contract: DataContract) -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(
        column_types={c.name: pa.string() for c in contract.columns}, strings_can_be_null=True
    )


def _safe_message(exc: BaseException) -> str:
    """An error message without input content: Arrow quotes the offending row."""
    first = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    text = " ".join(first.strip().split("\n", 1)[0].split()) or type(exc).__name__
    text = _QUOTED_ROW.sub(r"\1", text)[:300]
    return replace_pii(text, lambda kind, _found: f"[{PiiKind(kind).upper()}]")


def _root_cause(exc: BaseException) -> BaseException:
    """Our own error in the chain if any, else the innermost cause."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        if isinstance(current, EntaiError):
            return current
        current = getattr(current, "cause", None) or current.__cause__
    return chain[-1]


def _staged(
    uri: str, fs: pafs.FileSystem, files: list[str], fmt: str, **kwargs: Any
) -> StagedBatch:
    """Read, validate, mask and stage with Ray Data; the blocks' summed summaries."""
    contract: DataContract = kwargs["contract"]
    # The CSV plan is one operator (each range's read fused with its validation). Ray
    # Data's per-operator reservation keeps operators from starving each other; with one
    # operator it only held back half the cores until the first block's size was known
    # (on 2 CPUs: one task at a time for the first second of a 1M-row ingest). Parquet
    # and JSON plans have several operators and keep it.
    one_operator = {"op_resource_reservation_enabled": False} if fmt == "csv" else {}
    with data_settings(
        preserve_order=True,
        enable_progress_bars=bool(kwargs.pop("progress")),
        **V1_PARQUET_READER,
        **one_operator,
    ):
        try:
            for path in files:
                check_schema(_file_schema(fs, path, fmt, contract), contract, where=uri)
            dataset = _read(fs, files, fmt, contract)
            # A CSV range is one block, validated whole in the task that read it (the read
            # fuses with the map); other formats are cut into batches of _BATCH_ROWS.
            batch_rows = None if fmt == "csv" else _BATCH_ROWS
            summaries = dataset.map_batches(
                stage_block, batch_format="pyarrow", batch_size=batch_rows, fn_kwargs=kwargs
            )
            return staged_batch(
                list(summaries.iter_batches(batch_format="pyarrow", batch_size=None))
            )
        except Exception as exc:  # noqa: BLE001 - re-raised below as a clear ingest error
            cause = _root_cause(exc)
            if isinstance(cause, EntaiError):
                named = (
                    cause.message if cause.message.startswith(uri) else f"{uri}: {cause.message}"
                )
                raise type(cause)(named, details={**cause.details, "uri": uri}) from None
            raise InvalidInputError(
                f"{uri} cannot be read as {fmt}: {_safe_message(cause)}",
                details={"uri": uri, "format": fmt},
            ) from None


def _find_manifest(lake: Lake, source: str, input_hash: str) -> dict[str, Any] | None:
    directory = lake.path("manifests", "ingest", source)
    if not lake.exists(directory):
        return None
    for info in lake.fs.get_file_info(pafs.FileSelector(directory)):
        if info.base_name.endswith(".json"):
            manifest: dict[str, Any] = lake.read_json(info.path)
            if manifest.get("input_hash") == input_hash:
                return manifest
    return None


def ingest_file(
    contract: DataContract,
    uri: str,
    *,
    lake_root: str,
    hmac_key: bytes,
    batch_id: str | None = None,
    progress: bool = True,
    fmt: str | None = None,
    undeclared_pii: UndeclaredPii = UndeclaredPii.QUARANTINE,
) -> IngestReport:
    """Ingest one file (or a directory of files) for ``contract.source``.

    Args:
        contract: The source's data contract.
        uri: Local path or ``pyarrow.fs`` URI of a CSV, Parquet or JSON-lines input.
        lake_root: Root of the lake (local path or URI).
        hmac_key: Pseudonymisation key (see ``masking.resolve_hmac_key``).
        batch_id: Id of this batch; by default derived from the input hash.
        progress: Show Ray Data's progress bars.
        fmt: ``csv``, ``parquet`` or ``json``; by default from the file extension.
        undeclared_pii: What PII found in a column the contract stores in the clear
            does: quarantine its row (default) or redact it in place
            (``security.undeclared_pii``).

    Returns:
        The report; ``skipped_as_duplicate`` when this input was already ingested.

    Raises:
        InvalidInputError: the input is missing, empty, not UTF-8 or malformed.
        ContractViolationError: the input's columns cannot satisfy the contract.
        ConfigError: the HMAC key is too short.
    """
    check_hmac_key(hmac_key)
    fs, files = _input_files(uri)
    kind = _format_of(uri, files, fmt)
    input_hash = _hash_input(fs, files, uri, text=kind != "parquet")
    lake = Lake(lake_root)
    previous = _find_manifest(lake, contract.source, input_hash)
    if previous is not None:
        logger.info("input already ingested", extra={"batch_id": previous["batch_id"]})
        fields = {k: previous[k] for k in IngestReport.__dataclass_fields__ if k in previous}
        fields.update(
            files_written=tuple(previous["files_written"]),
            warnings=tuple(previous.get("warnings", ())),
            skipped_as_duplicate=True,
        )
        return IngestReport(**fields)
    batch = batch_id or f"{contract.source}-{input_hash.removeprefix('sha256:')[:16]}"
    reset_staging(lake, batch)
    try:
        staged = _staged(
            uri,
            fs,
            files,
            kind,
            contract=contract,
            hmac_key=hmac_key,
            batch_id=batch,
            lake_root=lake.base if lake.is_local else lake.root,
            run_id=uuid.uuid4().hex,
            undeclared_pii=undeclared_pii,
            progress=progress,
        )
        move_duplicates(lake, staged, contract, batch)
        if staged.rows_in != staged.accepted + staged.quarantined:
            raise ContractViolationError(
                f"{uri}: rows in ({staged.rows_in}) != accepted + quarantined",
                details={"rows_in": staged.rows_in, "accepted": staged.accepted},
            )
    except BaseException:
        reset_staging(lake, batch)
        raise
    written = commit_staged(lake, staged, batch)
    warnings = undeclared_pii_warnings(contract, staged.pii_findings, undeclared_pii)
    for warning in warnings:
        logger.warning(
            warning, extra={"source": contract.source, "pii_findings": staged.pii_findings}
        )
    report = IngestReport(
        source=contract.source,
        batch_id=batch,
        input_hash=input_hash,
        rows_in=staged.rows_in,
        rows_accepted=staged.accepted,
        rows_quarantined=staged.quarantined,
        files_written=tuple(written),
        skipped_as_duplicate=False,
        contract_version=contract.version,
        pii_findings=staged.pii_findings,
        warnings=tuple(warnings),
    )
    manifest = {
        **asdict(report),
        "format": kind,
        "input_uri": uri,
        "contract_fingerprint": contract.fingerprint,
        "quarantine_rules": dict(sorted(staged.rules.items())),
        "undeclared_pii": str(undeclared_pii),
        "created_at": datetime.now(UTC).isoformat(),
    }
    lake.write_json(lake.path("manifests", "ingest", contract.source, f"{batch}.json"), manifest)
    lake.fs.delete_dir(staging_dir(lake, batch))
    logger.info(
        "ingested batch",
        extra={
            k: manifest[k] for k in ("batch_id", "rows_in", "rows_accepted", "rows_quarantined")
        },
    )
    return report
