"""A ranker's fairness per monitoring window: exposure and NDCG@k per group of items from
the impression log joined to clicks and purchases by request id, with the offline
measures (``ranking_fairness``) and the policy's ranking thresholds; the DriftMonitor
alerting on it like drift; what serving registers."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from alert_sinks import Sink
from credentials import SERVICE, callers
from ranker_logs import GROUPS, impressions, log_served, stream

from entai.actors.core import Metrics
from entai.actors.models import ModelRegistry
from entai.actors.monitoring import DriftMonitor
from entai.deployments.feedback_log import FeedbackLog
from entai.deployments.monitor_registration import ranker_watch_request
from entai.deployments.schemas import Interaction
from entai.shared.core import InvalidInputError, NotFoundError
from entai.shared.data import Lake
from entai.shared.models import (
    FairnessPolicy,
    GroupExposure,
    ModelCard,
    RankingFairnessReport,
    ranking_fairness,
)
from entai.shared.monitoring import (
    RankingWindowFairness,
    fairness_verdicts,
    ranker_lines,
    ranking_fairness_windows,
)
from entai.shared.recommend import InteractionIndex
from entai.shared.settings import load_settings

W = 100.0
R2 = 1.0 / math.log2(3.0)  # position weight of rank 2
R3 = 0.5  # of rank 3
R4 = 1.0 / math.log2(5.0)
POLICY = FairnessPolicy(min_exposure_ratio=0.8, max_ndcg_difference=0.3)


def config(
    min_group_size: int = 1, k: int = 3, groups: tuple[str, ...] = ("A", "B", "C")
) -> RankingWindowFairness:
    columns = {"category": {"k": k, "min_group_size": min_group_size, "groups": list(groups)}}
    return RankingWindowFairness.create(columns, POLICY)


def interactions(rows: list[tuple[str, int, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["request_id", "item_id", "kind"])


SHOWN = impressions(
    [
        ("r1", 1, 1, 10.0), ("r1", 2, 2, 10.0), ("r1", 3, 3, 10.0),
        ("r2", 4, 1, 20.0), ("r2", 1, 2, 20.0),
        ("r3", 3, 1, 150.0), ("r3", 4, 2, 150.0),
    ]
)  # fmt: skip
FEEDBACK = interactions(
    [
        ("r1", 2, "click"),
        ("r2", 1, "click"),
        ("r2", 1, "purchase"),  # the best kind counts: gain 2
        ("r1", 3, "click"),  # arrives during window 1, for a request of window 0
        ("r9", 1, "click"),  # a request that was never shown
    ]
)


def test_exposure_and_ndcg_per_group_exact_with_an_absent_group() -> None:
    first, second = ranking_fairness_windows(config(), SHOWN, FEEDBACK, GROUPS, window_s=W)
    assert (first["start_s"], first["end_s"], first["requests"]) == (0.0, W, 2)
    assert first["labelled_requests"] == 2
    result = first["fairness"]["category"]
    assert result["available"] and result["impressions"] == 5
    a, b, c = (result["groups"][g] for g in ("A", "B", "C"))
    exposure_a, exposure_b = 1.0 + R3 + R2, R2 + 1.0
    total = exposure_a + exposure_b
    assert a["items"] == 3 and a["mean_exposure"] == pytest.approx(exposure_a / 3)
    assert b["items"] == 2 and b["mean_exposure"] == pytest.approx(exposure_b / 2)
    assert a["exposure_share"] == pytest.approx(exposure_a / total)
    assert b["exposure_share"] == pytest.approx(exposure_b / total)
    # a group training saw that got no impression: reported, exposure share 0, no mean
    assert c == {
        "items": 0,
        "sufficient": False,
        "exposure_share": 0.0,
        "mean_exposure": None,
        "ndcg_at_k": None,
        "ndcg_queries": 0,
    }
    # NDCG of A: r1 ranks item 1 (gain 0) above item 3 (the late click, gain 1) -> R2;
    # r2's item 1 was bought -> 1. B: r1's item 2 clicked -> 1; r2's item 4 has no gain.
    assert a["ndcg_at_k"] == pytest.approx((R2 + 1.0) / 2) and a["ndcg_queries"] == 2
    assert b["ndcg_at_k"] == pytest.approx(1.0) and b["ndcg_queries"] == 1
    ratio = (exposure_a / 3) / (exposure_b / 2)
    assert result["measures"] == pytest.approx(
        {"exposure_ratio": ratio, "ndcg_difference": 1.0 - (R2 + 1.0) / 2}
    )
    assert result["worst_groups"]["exposure_ratio"] == pytest.approx(
        {"A": exposure_a / 3, "B": exposure_b / 2}
    )
    assert "['C']" in result["reasons"]["exposure_ratio"]
    assert ratio == pytest.approx(0.871049, abs=1e-6)
    assert result["crossed"] == []  # 0.871 >= 0.8 and 0.185 <= 0.3

    # window 1: no feedback for r3 (r1's late click stays in window 0)
    late = second["fairness"]["category"]
    assert (second["start_s"], second["requests"], second["labelled_requests"]) == (W, 1, 0)
    assert late["measures"]["exposure_ratio"] == pytest.approx(R2)
    assert late["measures"]["ndcg_difference"] is None
    assert "ndcg_at_k" in late["reasons"]["ndcg_difference"]
    assert late["crossed"] == ["exposure_ratio"]
    verdicts = fairness_verdicts(config(), second["fairness"])
    assert verdicts == [("category", "exposure_ratio", True)]  # no NDCG verdict without it


def test_same_numbers_as_the_offline_evaluation_of_the_served_lists() -> None:
    """One definition: a window's numbers are ranking_fairness over its lists as served."""
    (first, _) = ranking_fairness_windows(config(), SHOWN, FEEDBACK, GROUPS, window_s=W)
    offline = ranking_fairness(
        ["r1", "r1", "r1", "r2", "r2"],
        [0.0, 1.0, 1.0, 0.0, 2.0],
        [-1.0, -2.0, -3.0, -1.0, -2.0],
        ["A", "B", "A", "B", "A"],
        attribute="category",
        k=3,
        min_group_size=1,
        expected_groups=["C"],
    )
    assert first["fairness"]["category"]["measures"] == offline.summary() | {
        m: None for m in offline.measures() if m not in offline.summary()
    }


def test_ties_rank_by_served_position_and_equal_groups_give_ratio_one() -> None:
    """Tied scores do not matter (the served rank does); equal mean exposure -> 1.0."""
    shown = impressions(
        [("q1", 1, 1, 5.0), ("q1", 2, 2, 5.0), ("q2", 2, 1, 6.0), ("q2", 1, 2, 6.0)]
    )
    (window,) = ranking_fairness_windows(
        config(groups=()), shown, interactions([]), GROUPS, window_s=W
    )
    result = window["fairness"]["category"]
    assert result["measures"]["exposure_ratio"] == 1.0
    assert result["groups"]["A"]["exposure_share"] == 0.5
    assert result["worst_groups"]["exposure_ratio"] == pytest.approx(
        {"A": (1 + R2) / 2, "B": (1 + R2) / 2}
    )
    assert fairness_verdicts(config(), window["fairness"]) == [
        ("category", "exposure_ratio", False)
    ]


def test_planted_exposure_bias_is_flagged_and_an_unbiased_stream_is_not() -> None:
    watched = config(min_group_size=50, k=4)
    (biased,) = ranking_fairness_windows(
        watched, stream(True), interactions([]), GROUPS, window_s=W
    )
    (fair,) = ranking_fairness_windows(watched, stream(False), interactions([]), GROUPS, window_s=W)
    ratio = ((R3 + R4) / 2) / ((1.0 + R2) / 2)
    assert biased["fairness"]["category"]["measures"]["exposure_ratio"] == pytest.approx(ratio)
    assert ratio == pytest.approx(0.570642, abs=1e-6)
    assert fairness_verdicts(watched, biased["fairness"]) == [("category", "exposure_ratio", True)]
    assert fair["fairness"]["category"]["measures"]["exposure_ratio"] == pytest.approx(1.0)
    assert fairness_verdicts(watched, fair["fairness"]) == [("category", "exposure_ratio", False)]


def test_small_groups_give_no_verdict_and_unknown_columns_are_unavailable() -> None:
    watched = RankingWindowFairness.create(
        {"category": {"k": 3, "min_group_size": 10}, "seller": {"k": 3}}, POLICY
    )
    (window,) = ranking_fairness_windows(
        watched, SHOWN.iloc[:5], FEEDBACK, {**GROUPS, "other": {}}, window_s=W
    )
    assert window["fairness"]["category"]["measures"] == {
        "exposure_ratio": None,
        "ndcg_difference": None,
    }
    assert window["fairness"]["seller"] == {
        "available": False,
        "reason": "the served ranker does not attribute its items by 'seller'",
    }
    assert fairness_verdicts(watched, window["fairness"]) == []


def test_items_the_ranker_does_not_know_form_the_missing_group() -> None:
    shown = impressions([("q", 7, 1, 1.0), ("q", 1, 2, 1.0)])
    (window,) = ranking_fairness_windows(
        config(groups=()), shown, interactions([]), GROUPS, window_s=W
    )
    assert set(window["fairness"]["category"]["groups"]) == {"<missing>", "A"}


def test_config_from_the_card_and_policy_round_trips() -> None:
    report = RankingFairnessReport(
        attribute="category",
        k=5,
        min_group_size=20,
        groups=(
            GroupExposure(group="A", items=30, queries=3, sufficient=True, exposure=3.0),
            GroupExposure(group="B", items=30, queries=3, sufficient=True, exposure=2.0),
        ),
        exposure_ratio=ranking_fairness(
            ["q"], [1], [1], ["A"], attribute="category"
        ).exposure_ratio,
        ndcg_difference=ranking_fairness(
            ["q"], [1], [1], ["A"], attribute="category"
        ).ndcg_difference,
    )
    card = ModelCard(model_name="ranker", ranking_fairness={"category": report})
    columns = RankingWindowFairness.columns_of(card)
    assert columns == {"category": {"k": 5, "min_group_size": 20, "groups": ["A", "B"]}}
    watched = RankingWindowFairness.create(
        columns, FairnessPolicy(min_exposure_ratio=0.7, ranking_attributes=("category",))
    )
    assert watched.bounds == (("exposure_ratio", 0.7, False),)
    assert watched.alerted("category") and not watched.alerted("seller")
    assert RankingWindowFairness.from_dict(watched.to_dict()) == watched


def test_bad_logs_fail_with_a_clear_error() -> None:
    with pytest.raises(InvalidInputError, match="impressions lack column"):
        ranking_fairness_windows(config(), SHOWN.drop(columns="rank"), FEEDBACK, GROUPS, window_s=W)
    with pytest.raises(InvalidInputError, match="window_s"):
        ranking_fairness_windows(config(), SHOWN, FEEDBACK, GROUPS, window_s=0)


# -- the DriftMonitor's ranker path (no Ray: the class, on a lake in a temp dir) ----------


class Auditor:
    def audit(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def principal_for(self, token: str, action: str, resource: str) -> str:
        return "approver"


T0 = math.floor(time.time() / W) * W - 10 * W  # window starts, within today's logs


def test_the_monitor_alerts_on_a_biased_window_like_drift_and_survives_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(
        home=tmp_path / "home",
        lake={"root": str(tmp_path / "lake")},
        monitoring={"window_seconds": W, "grace_s": 0.0, "ranker_refresh_s": 1000.0},
        registry={"policy": {"fairness": {"min_exposure_ratio": 0.8}}},
    ).resolved()
    gauges: dict[tuple[str, str, str], float] = {}

    def gauge(model: str, attribute: str, measure: str, value: float | None) -> None:
        if value is not None:
            gauges[(model, attribute, measure)] = value

    monkeypatch.setattr(Metrics, "fairness_measure", staticmethod(gauge))
    lake = Lake(settings.lake.root)
    fair = stream(False, start=T0)
    log_served(lake, pd.concat([fair, stream(True, start=T0 + W), stream(True, start=T0 + 2 * W)]))
    log_served(lake, stream(True, requests=10, start=T0 + 3 * W), version=2)  # another version
    now = [datetime.fromtimestamp(T0 + 2 * W + 50, UTC)]  # windows 0 and 1 are over
    sink = Sink()

    def monitor() -> DriftMonitor:
        return DriftMonitor(
            settings, sink=sink, auditor=Auditor(), clock=lambda: now[0], callers=callers()
        )

    m = monitor()
    columns = {"category": {"k": 4, "min_group_size": 50, "groups": ["A", "B"]}}
    assert m.watch_ranker("ranker", 1, {}, GROUPS, credential=SERVICE) == "no_fairness"
    assert m.watch_ranker("ranker", 1, columns, GROUPS, credential=SERVICE) == "registered"
    assert m.watch_ranker("ranker", 1, columns, GROUPS, credential=SERVICE) == "unchanged"
    assert m.models() == ["ranker"]
    m.tick()
    report = m.report("ranker")
    assert report["kind"] == "ranker"
    assert [(w["closed"], w["requests"]) for w in report["windows"]] == [
        (True, 100),
        (True, 100),
        (False, 100),
    ]  # version 2's requests are left out
    ratios = [w["fairness"]["category"]["measures"]["exposure_ratio"] for w in report["windows"]]
    assert ratios == pytest.approx([1.0, 0.570642, 0.570642], abs=1e-6)
    assert [(e["feature"], e["method"], e["level"]) for e in sink.events] == [
        ("category", "exposure_ratio", "warn")
    ]
    assert gauges[("ranker", "category", "exposure_ratio")] == pytest.approx(0.570642, abs=1e-6)
    (alert,) = report["alerts"]
    assert alert["key"] == ["ranker", "category", "exposure_ratio"] and alert["level"] == "warn"
    lines = ranker_lines(report)
    assert lines[-4] == (
        "  fairness by category: exposure_ratio 0.571 (beyond the threshold), "
        "ndcg_difference - (400 impressions)"
    )
    assert lines[-1] == "alert category/exposure_ratio: warn"

    # a restarted monitor reloads the ranker; the judged windows are not judged again
    now[0] = datetime.fromtimestamp(T0 + 3 * W + 1, UTC)  # window 2 is over too
    m = monitor()
    assert m.watch_ranker("ranker", 1, columns, GROUPS, credential=SERVICE) == "unchanged"
    m.tick()
    assert [(e["method"], e["level"]) for e in sink.events][-1] == ("exposure_ratio", "alert")
    assert len(sink.events) == 2
    m.refresh_ranker(
        "ranker", credential=SERVICE
    )  # again: windows 0-2 already observed, no new transition
    assert len(sink.events) == 2
    m.acknowledge("ranker", "category", "exposure_ratio", "token")
    acked = m.report("ranker")["alerts"][0]
    assert acked["acknowledged_by"] == "approver"

    # late feedback for a request of window 1 updates its numbers, not its verdict
    FeedbackLog(lake).append(
        "ranker", [Interaction(request_id=f"s{int(T0 + W)}-0", item_id=2, kind="click")]
    )
    later = m.refresh_ranker("ranker", credential=SERVICE)
    window1 = later["windows"][1]["fairness"]["category"]
    assert later["windows"][1]["labelled_requests"] == 1
    assert window1["groups"]["B"]["ndcg_at_k"] == pytest.approx(1.0)
    assert len(sink.events) == 2


def test_serving_registers_the_champions_card_columns_and_item_categories() -> None:
    """What a ranker replica sends the monitor: its card's ranking fairness columns and
    the categories of the version's serving index; no card -> no columns."""
    report = ranking_fairness(
        ["q", "q"], [1.0, 0.0], [0.9, 0.1], ["A", "B"], attribute="category", k=5
    )
    cards = {1: ModelCard(model_name="ranker", ranking_fairness={"category": report})}

    class Registry:
        def call(self, method: Any, model: str, version: int) -> ModelCard:
            assert method is ModelRegistry.card and model == "ranker"
            if version not in cards:
                raise NotFoundError("no card")
            return cards[version]

    class Services:
        def registry(self) -> Registry:
            return Registry()

    class Monitor:
        def __init__(self) -> None:
            self.sent: list[tuple[Any, ...]] = []

        def submit(self, method: Any, *args: Any, credential: str) -> str:
            self.sent.append((method.__name__, *args, credential))
            return "ref"

    index = InteractionIndex.from_events(
        pd.DataFrame(
            {
                "user_id": [7],
                "product_id": [1],
                "event_type": ["view"],
                "event_timestamp": [pd.Timestamp("2026-01-01", tz="UTC")],
            }
        ),
        pd.DataFrame({"product_id": [1, 2], "category": ["A", "B"], "price": [1.0, 2.0]}),
        as_of=datetime(2026, 1, 2, tzinfo=UTC),
    )
    request = ranker_watch_request("ranker", Services(), {1: index, 2: index}.get, SERVICE)  # type: ignore[arg-type]
    monitor = Monitor()
    assert request(monitor, 1) == "ref"  # type: ignore[arg-type]
    request(monitor, 2)  # type: ignore[arg-type]
    assert monitor.sent == [
        (
            "watch_ranker",
            "ranker",
            1,
            {"category": {"k": 5, "min_group_size": 30, "groups": ["A", "B"]}},
            {"category": {1: "A", 2: "B"}},
            SERVICE,
        ),
        ("watch_ranker", "ranker", 2, {}, {"category": {1: "A", 2: "B"}}, SERVICE),
    ]
