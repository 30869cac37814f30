"""Dashboards and alerts as code: the Grafana dashboard, the Prometheus rules and the
manifests' scrape annotations, checked statically. Whether Ray's endpoint really
exports every metric named here is tests/ray/test_metrics_export.py's job."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from promql_names import dashboard, dashboard_queries, metric_names, panels, queried_metrics, rules

from entai.actors.core import METRICS, MetricSpec

KUBERAY = Path(__file__).resolve().parents[2] / "cluster" / "kuberay"
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def _samples(spec: MetricSpec) -> set[str]:
    """The Prometheus sample names Ray's agent exports for one of entai's metrics."""
    return {f"ray_{spec.name}{suffix}" for suffix in _SUFFIXES[spec.kind]}


EXPORTED = {name for spec in METRICS for name in _samples(spec)}


def test_metric_names_are_read_from_promql_without_functions_labels_or_variables() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, model) (rate(ray_a_bucket{model=~"$model",'
        'code!="x{y}"}[$__rate_interval]))) / ignoring(code) group_left '
        "ray_b_count offset 5m and on (view) time() - max without (pod) (ray_c) > bool 3"
    )
    assert metric_names(expr) == {"ray_a_bucket", "ray_b_count", "ray_c"}


def test_the_dashboard_is_valid_grafana_json() -> None:
    board = dashboard()
    assert board["uid"] == "entai-platform" and board["title"]
    all_panels = list(panels(board))
    ids = Counter(p["id"] for p in all_panels)
    assert all(n == 1 for n in ids.values()), ids
    for panel in all_panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] >= 1, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(set(refs)) == len(refs), panel["title"]
        assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]
    (source,) = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert source["name"] == "datasource" and source["query"] == "prometheus"


def test_the_dashboard_and_the_rules_read_only_metrics_entai_exports() -> None:
    named = queried_metrics()
    assert named, "no metric found in the queries"
    assert named <= EXPORTED, sorted(named - EXPORTED)


def test_every_metric_entai_exports_is_on_the_dashboard() -> None:
    shown = {name for expr in dashboard_queries(dashboard()) for name in metric_names(expr)}
    missing = [spec.name for spec in METRICS if not shown & _samples(spec)]
    assert missing == []


def test_alert_rules_have_an_expression_a_duration_a_severity_and_a_summary() -> None:
    found = rules()
    names = [r["alert"] for r in found]
    assert len(names) == len(set(names)) >= 6
    for rule in found:
        assert re.fullmatch(r"Entai[A-Z][A-Za-z0-9]+", rule["alert"]), rule
        assert rule["expr"].strip() and metric_names(rule["expr"]), rule["alert"]
        assert re.fullmatch(r"\d+[smh]", str(rule["for"])), rule["alert"]
        assert rule["labels"]["severity"] in {"page", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
    alerted = {name for r in found for name in metric_names(r["expr"])}
    for wanted in ("ray_entai_stream_backlog", "ray_entai_alert_level"):
        assert wanted in alerted


def _pod_templates(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(group, rayStartParams, pod template) of every node group of a KubeRay manifest."""
    spec = doc["spec"]
    cluster = spec.get("rayClusterConfig") or spec.get("rayClusterSpec") or spec
    groups = [("head", cluster["headGroupSpec"])]
    groups += [(g["groupName"], g) for g in cluster.get("workerGroupSpecs", [])]
    return [(name, g["rayStartParams"], g["template"]) for name, g in groups]


@pytest.mark.parametrize("manifest", ["raycluster.yaml", "rayservice.yaml", "rayjob.yaml"])
def test_every_ray_pod_is_scraped_on_the_port_ray_exports_metrics_on(manifest: str) -> None:
    doc = yaml.safe_load((KUBERAY / manifest).read_text())
    templates = _pod_templates(doc)
    assert templates
    for group, params, template in templates:
        annotations = template.get("metadata", {}).get("annotations", {})
        assert annotations.get("prometheus.io/scrape") == "true", (manifest, group)
        assert annotations.get("prometheus.io/path") == "/metrics", (manifest, group)
        assert annotations.get("prometheus.io/port") == params.get("metrics-export-port"), (
            manifest,
            group,
        )
        ports = {
            p["containerPort"]: p.get("name")
            for c in template["spec"]["containers"]
            for p in c.get("ports", [])
        }
        assert ports.get(int(annotations["prometheus.io/port"])) == "metrics", (manifest, group)
