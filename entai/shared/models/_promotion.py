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
- ``distinct_approver``: the approver is not the registrant (four-eyes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from entai.shared.core import PromotionRejectedError
from entai.shared.models._model_card import ModelCard

__all__ = [
    "Candidate",
    "GateFailure",
    "PromotionPolicy",
    "PromotionVerdict",
    "check_promotion",
]


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
    """One failed gate and why."""

    gate: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        """As a JSON-ready mapping."""
        return {"gate": self.gate, "reason": self.reason}


@dataclass(frozen=True)
class PromotionVerdict:
    """The outcome of all gates for one promotion request."""

    alias: str
    version: int
    gates_checked: tuple[str, ...]
    failures: tuple[GateFailure, ...] = ()

    @property
    def approved(self) -> bool:
        """True when no gate failed."""
        return not self.failures

    def details(self) -> dict[str, Any]:
        """Structured summary for audit entries and error details."""
        return {
            "alias": self.alias,
            "version": self.version,
            "gates_checked": list(self.gates_checked),
            "failures": [f.to_dict() for f in self.failures],
        }

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
