"""Promotion gates: may this model version take this alias?

Pure logic: the registry gathers the facts (the candidate's metrics, card and
registrant, the current holder's metrics, the approver) and :func:`check_promotion`
runs every gate, returning every failure with a reason, never just the first.

Gates, for aliases the policy gates (``champion`` by default):

- ``metric_thresholds``: each ``min_metrics`` / ``max_metrics`` bound holds on the
  candidate's validation metrics;
- ``model_card``: a card exists and is complete;
- ``not_worse_than_champion``: on a validation set BOTH versions were evaluated on
  (same dataset id), the candidate's primary metric is not worse than the current
  holder's by more than ``tolerance``; when they share no evaluation set the gate
  fails and asks for a re-evaluation on a common set;
- ``fairness`` (when the policy sets fairness thresholds): the fairness reports in the
  candidate's model card meet every threshold for every required attribute: a binary
  classifier's reports (``ModelCard.fairness``) the selection-rate thresholds, a
  ranker's (``ModelCard.ranking_fairness``: a card with ranking reports and no binary
  ones is a ranker's) the exposure and NDCG thresholds. A measure that could not be
  computed, a missing report, or a policy with no threshold for the candidate's kind
  fails the gate. Each failure carries the measure's value, the threshold and the
  lowest and highest groups with their rates;
- ``distinct_approver``: the approver is not the registrant (four-eyes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from entai.shared.core import PromotionRejectedError
from entai.shared.models._fairness import Disparity
from entai.shared.models._model_card import ModelCard

__all__ = [
    "Candidate",
    "FairnessPolicy",
    "GateFailure",
    "PromotionPolicy",
    "PromotionVerdict",
    "check_promotion",
]


class FairnessPolicy(BaseModel):
    """Fairness thresholds a gated promotion must meet (see ``entai.shared.models._fairness``).

    Example (settings YAML, ``registry.policy.fairness``)::

        fairness:
          attributes: [region]
          max_demographic_parity_difference: 0.1
          max_equalized_odds_difference: 0.1
          min_disparate_impact_ratio: 0.8
          ranking_attributes: [category]
          min_exposure_ratio: 0.5
          max_ndcg_difference: 0.2

    Attributes:
        attributes: Attributes a binary classifier must have been evaluated by; empty
            means every attribute its card reports (and at least one).
        max_demographic_parity_difference: Upper bound on the selection-rate gap.
        max_equalized_odds_difference: Upper bound on the larger of the TPR/FPR gaps.
        min_disparate_impact_ratio: Lower bound on lowest/highest selection rate.
        ranking_attributes: Attributes a ranker must have been evaluated by; empty
            means every attribute its card reports (and at least one).
        min_exposure_ratio: Lower bound on a ranker's lowest/highest mean exposure
            per item of a group.
        max_ndcg_difference: Upper bound on a ranker's gap in NDCG@k between groups.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    attributes: tuple[str, ...] = ()
    max_demographic_parity_difference: float | None = Field(None, ge=0.0, le=1.0)
    max_equalized_odds_difference: float | None = Field(None, ge=0.0, le=1.0)
    min_disparate_impact_ratio: float | None = Field(None, ge=0.0, le=1.0)
    ranking_attributes: tuple[str, ...] = ()
    min_exposure_ratio: float | None = Field(None, ge=0.0, le=1.0)
    max_ndcg_difference: float | None = Field(None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _some_threshold(self) -> FairnessPolicy:
        if not self.bounds() and not self.ranking_bounds():
            raise ValueError("fairness policy sets no threshold")
        return self

    def bounds(self) -> list[tuple[str, float, bool]]:
        """``(measure, threshold, is_upper_bound)`` for every binary-classifier threshold set."""
        given = [
            ("demographic_parity_difference", self.max_demographic_parity_difference, True),
            ("equalized_odds_difference", self.max_equalized_odds_difference, True),
            ("disparate_impact_ratio", self.min_disparate_impact_ratio, False),
        ]
        return [(m, bound, upper) for m, bound, upper in given if bound is not None]

    def ranking_bounds(self) -> list[tuple[str, float, bool]]:
        """``(measure, threshold, is_upper_bound)`` for every ranker threshold set."""
        given = [
            ("exposure_ratio", self.min_exposure_ratio, False),
            ("ndcg_difference", self.max_ndcg_difference, True),
        ]
        return [(m, bound, upper) for m, bound, upper in given if bound is not None]


class PromotionPolicy(BaseModel):
    """Which gates a promotion must pass.

    Attributes:
        min_metrics: Lower bounds on validation metrics, e.g. ``{"valid_auc": 0.7}``.
        max_metrics: Upper bounds, e.g. ``{"valid_logloss": 0.5}``.
        primary_metric: The metric champion and challenger are compared on.
        higher_is_better: Direction of ``primary_metric``.
        tolerance: How much worse than the champion the candidate may be.
        require_card: A complete model card is required.
        require_distinct_approver: The approver must not be the registrant.
        fairness: Fairness thresholds; None turns the fairness gate off.
        gated_aliases: Aliases whose assignment goes through the gates.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_metrics: dict[str, float] = Field(default_factory=lambda: {"valid_auc": 0.7})
    max_metrics: dict[str, float] = Field(default_factory=dict)
    primary_metric: str = "valid_auc"
    higher_is_better: bool = True
    tolerance: float = Field(0.01, ge=0.0)
    require_card: bool = True
    require_distinct_approver: bool = True
    fairness: FairnessPolicy | None = None
    gated_aliases: tuple[str, ...] = ("champion",)


@dataclass(frozen=True)
class Candidate:
    """What the gates know about one model version.

    Attributes:
        version: The version number.
        registrant: Who registered it.
        metrics: Its metrics on its own validation set.
        validation_dataset_id: Id of that validation set.
        evaluations: Metrics per evaluation dataset id (including the validation set).
        card: Its model card, if one was stored.
    """

    version: int
    registrant: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    validation_dataset_id: str | None = None
    evaluations: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    card: ModelCard | None = None

    def all_evaluations(self) -> dict[str, Mapping[str, float]]:
        """Evaluations keyed by dataset id, the validation metrics included."""
        out = dict(self.evaluations)
        if self.validation_dataset_id and self.metrics:
            out.setdefault(self.validation_dataset_id, self.metrics)
        return out


@dataclass(frozen=True)
class GateFailure:
    """One failed gate, why, and the numbers behind it (e.g. a fairness measure's value,
    threshold and worst groups)."""

    gate: str
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """As a JSON-ready mapping."""
        out: dict[str, Any] = {"gate": self.gate, "reason": self.reason}
        if self.details:
            out["details"] = dict(self.details)
        return out


@dataclass(frozen=True)
class PromotionVerdict:
    """The outcome of all gates for one promotion request.

    ``measured`` holds the numbers gates checked beyond the registered metrics (the
    fairness measures per attribute), so an approval's audit entry records them too.
    """

    alias: str
    version: int
    gates_checked: tuple[str, ...]
    failures: tuple[GateFailure, ...] = ()
    measured: Mapping[str, Any] = field(default_factory=dict)

    @property
    def approved(self) -> bool:
        """True when no gate failed."""
        return not self.failures

    def details(self) -> dict[str, Any]:
        """Structured summary for audit entries and error details."""
        out: dict[str, Any] = {
            "alias": self.alias,
            "version": self.version,
            "gates_checked": list(self.gates_checked),
            "failures": [f.to_dict() for f in self.failures],
        }
        if self.measured:
            out["measured"] = dict(self.measured)
        return out

    def raise_if_rejected(self, model: str) -> None:
        """Raise when any gate failed.

        Raises:
            PromotionRejectedError: naming every failed gate and its reason.
        """
        if self.approved:
            return
        reasons = "; ".join(f"{f.gate}: {f.reason}" for f in self.failures)
        raise PromotionRejectedError(
            f"promotion of {model!r} version {self.version} to {self.alias!r} refused: {reasons}",
            details={"model": model, **self.details()},
        )


def check_promotion(
    policy: PromotionPolicy,
    *,
    alias: str,
    candidate: Candidate,
    incumbent: Candidate | None,
    approver: str,
) -> PromotionVerdict:
    """Run every gate ``policy`` requires for giving ``alias`` to ``candidate``.

    Args:
        policy: The gates and their thresholds.
        alias: The alias requested; aliases the policy does not gate pass unchecked.
        candidate: The version to promote.
        incumbent: The version holding ``alias`` now, if any.
        approver: The principal approving the promotion.

    Returns:
        The verdict, with every failed gate.
    """
    if alias not in policy.gated_aliases:
        return PromotionVerdict(alias=alias, version=candidate.version, gates_checked=())
    gates: list[str] = ["metric_thresholds"]
    failures = _thresholds(policy, candidate)
    if policy.require_card:
        gates.append("model_card")
        failures += _card(candidate)
    if incumbent is not None and incumbent.version != candidate.version:
        gates.append("not_worse_than_champion")
        failures += _comparison(policy, candidate, incumbent)
    measured: dict[str, Any] = {}
    if policy.fairness is not None:
        gates.append("fairness")
        fairness_failures, measured["fairness"] = _fairness(policy.fairness, candidate)
        failures += fairness_failures
    if policy.require_distinct_approver:
        gates.append("distinct_approver")
        if not approver.strip() or approver == candidate.registrant:
            failures.append(
                GateFailure(
                    "distinct_approver",
                    f"approver {approver!r} registered this version; "
                    "another principal with models:approve must approve it",
                )
            )
    return PromotionVerdict(
        alias=alias,
        version=candidate.version,
        gates_checked=tuple(gates),
        failures=tuple(failures),
        measured=measured,
    )


def _thresholds(policy: PromotionPolicy, candidate: Candidate) -> list[GateFailure]:
    failures: list[GateFailure] = []
    bounds = [(m, v, True) for m, v in policy.min_metrics.items()]
    bounds += [(m, v, False) for m, v in policy.max_metrics.items()]
    for metric, bound, is_min in sorted(bounds):
        value = candidate.metrics.get(metric)
        if value is None:
            failures.append(GateFailure("metric_thresholds", f"metric {metric!r} was not recorded"))
        elif (value < bound) if is_min else (value > bound):
            side = "below the minimum" if is_min else "above the maximum"
            failures.append(
                GateFailure("metric_thresholds", f"{metric}={value:.4f} is {side} {bound}")
            )
    return failures


def _card(candidate: Candidate) -> list[GateFailure]:
    if candidate.card is None:
        return [GateFailure("model_card", "no model card is stored for this version")]
    missing = candidate.card.missing()
    if missing:
        return [GateFailure("model_card", f"model card is incomplete: missing {missing}")]
    return []


def _common_dataset(candidate: Candidate, incumbent: Candidate) -> str | None:
    mine, theirs = candidate.all_evaluations(), incumbent.all_evaluations()
    preferred = candidate.validation_dataset_id
    if preferred and preferred in mine and preferred in theirs:
        return preferred
    shared = sorted(set(mine) & set(theirs))
    return shared[0] if shared else None


def _comparison(
    policy: PromotionPolicy, candidate: Candidate, incumbent: Candidate
) -> list[GateFailure]:
    gate, metric = "not_worse_than_champion", policy.primary_metric
    dataset = _common_dataset(candidate, incumbent)
    if dataset is None:
        return [
            GateFailure(
                gate,
                f"version {candidate.version} (validated on "
                f"{candidate.validation_dataset_id!r}) and the current holder, version "
                f"{incumbent.version} (validated on {incumbent.validation_dataset_id!r}), "
                "share no evaluation dataset; evaluate both on the same dataset first",
            )
        ]
    mine = candidate.all_evaluations()[dataset].get(metric)
    theirs = incumbent.all_evaluations()[dataset].get(metric)
    if mine is None or theirs is None:
        who = candidate.version if mine is None else incumbent.version
        return [GateFailure(gate, f"version {who} has no {metric!r} on dataset {dataset!r}")]
    gap = (theirs - mine) if policy.higher_is_better else (mine - theirs)
    if gap > policy.tolerance:
        return [
            GateFailure(
                gate,
                f"{metric}={mine:.4f} on dataset {dataset!r} is worse than the current "
                f"holder's (version {incumbent.version}: {theirs:.4f}) by {gap:.4f}, "
                f"more than the tolerance {policy.tolerance}",
            )
        ]
    return []


class _Reports(Protocol):
    """What the gate reads of a binary or a ranking fairness report."""

    @property
    def attribute(self) -> str: ...

    @property
    def insufficient(self) -> tuple[str, ...]: ...

    def measures(self) -> dict[str, Disparity]: ...


def _fairness(
    policy: FairnessPolicy, candidate: Candidate
) -> tuple[list[GateFailure], dict[str, dict[str, float | None]]]:
    """Failures of the fairness thresholds, and every measure checked per attribute.

    A card with ranking reports and no binary ones is a ranker's: the ranking
    thresholds apply to it; otherwise the binary ones do.
    """
    gate = "fairness"
    card = candidate.card
    binary: Mapping[str, _Reports] = card.fairness if card is not None else {}
    ranking: Mapping[str, _Reports] = card.ranking_fairness if card is not None else {}
    ranker = bool(ranking) and not binary
    reports = ranking if ranker else binary
    bounds = policy.ranking_bounds() if ranker else policy.bounds()
    required = policy.ranking_attributes if ranker else policy.attributes
    wanted = required or tuple(sorted(reports))
    if not wanted:
        reason = (
            "no fairness evaluation is recorded for this version (its model card has no "
            "fairness section); train it with fairness.columns set"
        )
        return [GateFailure(gate, reason)], {}
    if not bounds:
        kind, names = (
            ("a ranker", "min_exposure_ratio, max_ndcg_difference")
            if ranker
            else ("a binary classifier", "the selection-rate thresholds")
        )
        reason = f"the fairness policy sets no threshold for {kind} ({names})"
        return [GateFailure(gate, reason, {"recorded": sorted(reports)})], {}
    failures: list[GateFailure] = []
    measured: dict[str, dict[str, float | None]] = {}
    for attribute in wanted:
        report = reports.get(attribute)
        if report is None:
            failures.append(
                GateFailure(
                    gate,
                    f"no {'ranking ' if ranker else ''}fairness evaluation by {attribute!r} "
                    "is recorded for this version",
                    {"attribute": attribute, "recorded": sorted(reports)},
                )
            )
            continue
        measured[attribute] = {m: d.value for m, d in report.measures().items()}
        failures += _fairness_bounds(bounds, report)
    return failures, measured


def _fairness_bounds(bounds: list[tuple[str, float, bool]], report: _Reports) -> list[GateFailure]:
    failures: list[GateFailure] = []
    measures = report.measures()
    for measure, bound, upper in bounds:
        disparity = measures[measure]
        value = disparity.value
        details: dict[str, Any] = {
            "attribute": report.attribute,
            "measure": measure,
            "value": value,
            "threshold": bound,
            "bound": "max" if upper else "min",
            "rate": disparity.rate,
            "worst_groups": dict(disparity.worst_groups),
            "insufficient_groups": list(report.insufficient),
        }
        where = f"{report.attribute}: {measure}"
        if value is None:
            reason = f"{where} cannot be computed ({disparity.reason})"
            failures.append(GateFailure("fairness", reason, details))
        elif (value > bound) if upper else (value < bound):
            side = "above the maximum" if upper else "below the minimum"
            worst = ", ".join(f"{g}={v:.4f}" for g, v in disparity.worst_groups.items())
            reason = f"{where}={value:.4f} is {side} {bound} ({disparity.rate}: {worst})"
            failures.append(GateFailure("fairness", reason, details))
    return failures
