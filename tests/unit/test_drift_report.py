"""Drift reports: distributions in the watch report, the summary rows, the HTML page."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from entai.shared.core import InvalidInputError
from entai.shared.monitoring import (
    OTHER_LABEL,
    ModelWatch,
    ReferenceProfile,
    WatchLimits,
    column_distribution,
    fmt,
    header_lines,
    render_html,
    summarize,
    table_cells,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
EVIL = 'x<script>"&'


def _frame(n: int, seed: int, *, shift: float = 0.0, cats: tuple[str, ...] = ("a", "b")) -> Any:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(shift, 1, n),
            EVIL: rng.normal(0, 1, n),
            "c": rng.choice(list(cats), n),
            "prediction": rng.random(n),
        }
    )


def _watch() -> ModelWatch:
    config = {
        "version": 3,
        "features": ["x", EVIL, "c"],
        "prediction_column": "prediction",
        "window": {"count": 400, "sample_size": 400},
        "drift_config": {},
        "alert_policy": {},
        "retrain_policy": {},
        "reference_auc": None,
    }
    reference = ReferenceProfile.from_frame(_frame(2000, 0)).to_dict()
    return ModelWatch.create("churn", config, reference, first_seq=0, limits=WatchLimits())


def _drifted(watch: ModelWatch) -> ModelWatch:
    rows = watch.conform(_frame(400, 1, shift=1.5, cats=("a", "b", "new")))
    watch.add(rows, np.arange(400, dtype=np.float64), NOW)
    return watch


def _mean(dist: dict[str, Any], side: str) -> float:
    edges = np.asarray(dist["edges"])
    centres = (edges[:-1] + edges[1:]) / 2
    return float(np.dot(centres, dist[side]))


def test_report_carries_reference_and_last_window_on_the_same_bins() -> None:
    report = _drifted(_watch()).report()
    dists = report["distributions"]
    assert dists["window_id"] == "churn/v3/w0"
    assert set(dists["columns"]) == {"x", EVIL, "c", "prediction"}
    x = dists["columns"]["x"]
    assert x["kind"] == "numeric" and len(x["edges"]) == 21
    assert len(x["reference"]) == len(x["current"]) == 20
    assert sum(x["reference"]) == pytest.approx(1.0) and sum(x["current"]) == pytest.approx(1.0)
    assert _mean(x, "current") - _mean(x, "reference") == pytest.approx(1.5, abs=0.3)
    c = dists["columns"]["c"]
    assert c["kind"] == "categorical"
    new = c["categories"].index("new")
    assert c["new"][new] and c["reference"][new] == 0 and c["current"][new] > 0.2
    assert not any(c["new"][i] for i, label in enumerate(c["categories"]) if label != "new")


def test_before_any_window_closes_the_report_shows_the_reference_alone() -> None:
    report = _watch().report()
    assert report["distributions"]["window_id"] is None
    assert all(d["current"] is None for d in report["distributions"]["columns"].values())
    summary = summarize(report)
    assert summary.window_id is None and summary.rows == ()
    assert "no closed window yet" in header_lines(summary)[1]
    html = render_html(report)
    assert html.count('<figure class="plot"') == 4 and 'class="cur"' not in html


def test_distributions_survive_a_checkpoint_round_trip() -> None:
    watch = _drifted(_watch())
    restored = ModelWatch.from_dict(watch.to_dict(), watch.reference.to_dict(), WatchLimits())
    assert restored.report()["distributions"] == watch.report()["distributions"]


def test_many_categories_fold_into_other_and_shares_still_sum_to_one() -> None:
    ref = ReferenceProfile.from_frame(pd.DataFrame({"c": [f"k{i % 30}" for i in range(300)]}))
    cur = ReferenceProfile.from_frame(pd.DataFrame({"c": [f"k{i % 5}" for i in range(50)]}))
    dist = column_distribution(ref.columns["c"], cur.columns["c"], max_categories=8)
    assert len(dist["categories"]) == 8 and dist["categories"][-1] == OTHER_LABEL
    assert sum(dist["reference"]) == pytest.approx(1, abs=1e-4)  # shares are rounded
    assert sum(dist["current"]) == pytest.approx(1, abs=1e-4)
    assert dist["current"][-1] == 0.0  # the 5 current categories are all shown


def test_summary_rows_name_test_verdict_psi_rates_and_alert() -> None:
    summary = summarize(_drifted(_watch()).report())
    rows = {r.feature: r for r in summary.rows}
    assert list(rows) == ["x", EVIL, "c"]
    assert rows["x"].status == "drift" and rows["x"].method == "wasserstein"
    assert rows["x"].alert == "warn"  # first drifted window: one of three -> WARN
    assert rows[EVIL].status == "no_drift" and rows[EVIL].alert == "ok"
    assert rows["c"].new_category_rate == pytest.approx(1 / 3, abs=0.08)
    cells = table_cells(rows["x"])
    assert cells[:2] == ["x", "wasserstein"] and cells[4] == "yes" and "(major)" in cells[5]
    assert summary.prediction is not None and summary.prediction.feature == "prediction"
    header = "\n".join(header_lines(summary))
    assert "model churn v3" in header and "window churn/v3/w0: 400 rows" in header
    assert "dataset drift: yes" in header and "prediction drift: no" in header
    assert "no labels yet" in header


def test_fmt_prints_dashes_for_missing_numbers() -> None:
    assert fmt(None) == "-" and fmt(float("nan")) == "-" and fmt(0.123456) == "0.123"


def test_a_report_that_is_not_one_is_refused_clearly() -> None:
    with pytest.raises(InvalidInputError, match="not a drift monitor report"):
        summarize({"model": "churn", "windows": []})


def test_html_has_one_plot_per_column_escapes_names_and_loads_nothing() -> None:
    html = render_html(_drifted(_watch()).report())
    figures = re.findall(r'<figure class="plot" data-feature="([^"]*)"', html)
    assert figures == ["x", "x&lt;script&gt;&quot;&amp;", "c", "prediction"]
    assert html.count("<svg") == 4 and html.count("</svg>") == 4
    assert "<script" not in html and "x&lt;script&gt;&quot;&amp;" in html
    for reference in ("http://", "https://", "src=", "href=", "url(", "@import", "//"):
        assert reference not in html
    drifted = re.findall(r'<tr class="drift"><td>([^<]*)</td>', html)
    assert drifted == ["x", "c"]
    assert html.count('<rect class="cur"') == 20 + 20 + 3 + 20
