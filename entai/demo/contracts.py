"""The data contract of the demo's raw e-commerce events."""

from __future__ import annotations

from entai.demo.generator import CATEGORIES
from entai.shared.data import DataContract

__all__ = ["EVENTS_CONTRACT"]

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
