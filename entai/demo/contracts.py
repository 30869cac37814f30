"""The data contract of the demo's raw e-commerce events, and their ingest.

The Serve app and the stream workers import :data:`EVENTS_CONTRACT` by name; the
ingest (Ray Data) is imported only when :func:`ingest_events` runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from entai.demo.generator import CATEGORIES
from entai.shared.data import DataContract, UndeclaredPii
from entai.shared.settings import EntaiSettings, resolve_hmac_key

if TYPE_CHECKING:
    from entai.pipelines.ingest import IngestReport

__all__ = ["EVENTS_CONTRACT", "ingest_events"]

EVENTS_CONTRACT = DataContract.from_dict(
    {
        "source": "events",
        "purpose": "purchase propensity modelling and recommendations",
        "retention_days": 365,
        "event_time": "event_timestamp",
        "key": ["event_id"],
        "owner": "demo@entai.local",
        "columns": [
            {"name": "event_id", "type": "string", "nullable": False, "regex": "ev-[0-9]+-[0-9]+"},
            {"name": "user_id", "type": "int64", "nullable": False, "min": 0},
            {"name": "user_email", "type": "string", "pii": "identifier", "masking": "hmac"},
            {"name": "product_id", "type": "int64", "nullable": False, "min": 0},
            {"name": "category", "type": "string", "nullable": False, "allowed": list(CATEGORIES)},
            {"name": "price", "type": "float64", "nullable": False, "min": 0.0, "max": 100000.0},
            {
                "name": "event_type",
                "type": "string",
                "nullable": False,
                "allowed": ["view", "cart", "purchase"],
            },
            {"name": "event_timestamp", "type": "timestamp", "nullable": False},
            {"name": "search_query", "type": "string", "pii": "free_text", "masking": "redact"},
        ],
    }
)


def ingest_events(settings: EntaiSettings, events_file: Path) -> IngestReport:
    """Ingest a Parquet file of the demo's events into the raw lake, as ``entai ingest``
    would: the contract checked, PII masked, undeclared PII handled as the settings say."""
    from entai.pipelines.ingest import ingest_file

    return ingest_file(
        EVENTS_CONTRACT,
        str(events_file),
        lake_root=settings.lake.root,
        hmac_key=resolve_hmac_key(settings),
        progress=False,
        undeclared_pii=UndeclaredPii(settings.security.undeclared_pii),
    )
