"""PII where the contract did not declare it: the columns a batch would store in the clear.

Every string column a contract stores unmasked (pii class ``none``, or a class whose
masking is ``none``) is scanned at ingest with :func:`~entai.shared.data._pii.scan_column`,
unless the contract opts the column out with ``pii_scan: false``. What happens to a row
holding a finding is the platform's policy, :class:`UndeclaredPii` (the setting
``security.undeclared_pii``):

- ``quarantine`` (default): the row goes to the quarantine zone under rule ``pii``, with
  a reason per column and kind (``pii(note): undeclared email found``);
- ``redact``: each finding is replaced in place by ``[REDACTED:<KIND>]``, as in a
  declared free-text column. A finding in a key column quarantines its row whatever
  the policy: masking a key would change which entity the row is about.

Either way the findings are counted per column and kind for the batch's receipt, which
flags the contract with a warning naming each column (:func:`undeclared_pii_warnings`).
The quarantine zone is in the lake too: :func:`scrub_in_clear` replaces the findings in
the quarantined copy of every unmasked column.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import pyarrow as pa

from entai.shared.data._contracts import Column, DataContract
from entai.shared.data._masking import MaskingOperator, redact_finding
from entai.shared.data._pii import ColumnScan, find_pii, scan_column, scrub_column

__all__ = [
    "PiiCounts",
    "UndeclaredPii",
    "merge_pii_counts",
    "undeclared_pii_warnings",
]

PiiCounts = dict[str, dict[str, int]]
"""Per column, per PII kind: how many rows hold at least one finding of that kind."""


class UndeclaredPii(StrEnum):
    """What ingestion does with PII found in a column the contract stores in the clear."""

    QUARANTINE = "quarantine"
    REDACT = "redact"


@dataclass(frozen=True)
class UndeclaredScan:
    """The scan of one batch: each scanned column's findings."""

    columns: dict[str, ColumnScan]

    def counts(self) -> PiiCounts:
        """Per column with findings, per kind: the rows holding it."""
        return {
            name: {str(kind): rows for kind, rows in scan.counts().items()}
            for name, scan in self.columns.items()
            if scan.kinds
        }


def _needs_scan(column: Column) -> bool:
    """Whether a column's values must be scanned row by row.

    A column with allowed values accepts only the values its contract lists: when none
    of those holds PII, no accepted row can (a row with any other value is quarantined,
    and its quarantined copy is scrubbed), so the rows need no scan.
    """
    if not column.scanned_for_pii:
        return False
    return column.allowed is None or any(find_pii(str(v)) for v in column.allowed)


def scan_undeclared(typed: pa.Table, contract: DataContract) -> UndeclaredScan:
    """Scan every column of ``typed`` that the contract stores in the clear."""
    columns: dict[str, ColumnScan] = {}
    for column in contract.columns:
        if _needs_scan(column) and column.name in typed.column_names:
            values = typed.column(column.name).combine_chunks()
            columns[column.name] = scan_column(values, redact_finding)
    return UndeclaredScan(columns)


def quarantines(column: Column, contract: DataContract, policy: UndeclaredPii) -> bool:
    """Whether a finding in ``column`` sends its row to quarantine under ``policy``."""
    return policy == UndeclaredPii.QUARANTINE or column.name in contract.key


def scrub_in_clear(table: pa.Table, contract: DataContract) -> pa.Table:
    """Redact the findings in every column of ``table`` the contract leaves unmasked.

    For quarantined copies: they hold every column as text (a non-string column's
    unparsed value included), so each unmasked column is scrubbed, not only the
    string ones. Columns opted out with ``pii_scan: false`` are left as they are.
    """
    for column in contract.columns:
        if column.operator != MaskingOperator.NONE or not column.pii_scan:
            continue
        if column.name not in table.column_names:
            continue
        index = table.column_names.index(column.name)
        values = table.column(index).combine_chunks()
        table = table.set_column(index, column.name, scrub_column(values, redact_finding))
    return table


def merge_pii_counts(counts: Iterable[Mapping[str, Mapping[str, int]]]) -> PiiCounts:
    """The sum of several batches' counts, columns and kinds sorted."""
    total: PiiCounts = {}
    for batch in counts:
        for name, kinds in batch.items():
            column = total.setdefault(name, {})
            for kind, rows in kinds.items():
                column[kind] = column.get(kind, 0) + rows
    return {name: dict(sorted(total[name].items())) for name in sorted(total)}


def undeclared_pii_warnings(
    contract: DataContract, counts: Mapping[str, Mapping[str, int]], policy: UndeclaredPii
) -> list[str]:
    """One warning per column with findings, naming the column and what it held.

    The warnings flag the contract: the column should be declared PII (or opted out
    of the scan). They name columns, kinds and counts, never values.
    """
    warnings: list[str] = []
    for name, kinds in sorted(counts.items()):
        if not kinds:
            continue
        column = contract.column(name)
        found = ", ".join(f"{kind} in {rows} row(s)" for kind, rows in sorted(kinds.items()))
        handled = (
            "rows quarantined" if quarantines(column, contract, policy) else "findings redacted"
        )
        warnings.append(
            f"contract {contract.source!r} v{contract.version}: column {name!r} is stored in "
            f"the clear but holds {found} ({handled}): declare it PII (pii: free_text, "
            "sensitive or identifier), or set pii_scan: false if these values are not personal"
        )
    return warnings
