"""Model cards: what a model version is for, what it was trained on, how good it is.

A card travels with each registered version (stored as an artifact by the registry)
and is one of the promotion gates: a card that leaves a required section empty is
incomplete, and :meth:`ModelCard.missing` names every such section. Training fills
the numbers (metrics overall and per segment, fairness, the global explanation's top
features); the registry's record of the version adds its lineage tags and approvals
(:meth:`ModelCard.with_registry_record`) before the card is rendered as Markdown or
as one self-contained HTML page (:mod:`entai.shared.models._model_card_html`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from entai.shared.core import InvalidInputError
from entai.shared.models._fairness import Disparity, FairnessReport, RankingFairnessReport
from entai.shared.models._importance import GlobalExplanation
from entai.shared.models._model_card_html import markdown_page

__all__ = ["Approval", "ModelCard", "TrainingDataSummary"]

# Registry tags that are records of their own, not lineage (metrics, evaluations, card).
_NOT_LINEAGE = ("entai.metrics", "entai.evaluations", "entai.card")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainingDataSummary(_Frozen):
    """Where the training data came from and what it looked like.

    Attributes:
        dataset_id: Manifest id of the training set (lineage to the lake).
        feature_service: Feature service the model consumes.
        definitions_hash: Content hash of the feature definitions used.
        rows: Training rows.
        label_rate: Share of positive labels in training.
        time_range: First and last timestamp of the training rows (ISO 8601).
        validation_dataset_id: Id of the validation set the metrics were computed on.
    """

    dataset_id: str = ""
    feature_service: str = ""
    definitions_hash: str = ""
    rows: int = Field(0, ge=0)
    label_rate: float | None = Field(None, ge=0.0, le=1.0)
    time_range: tuple[str, str] | None = None
    validation_dataset_id: str = ""


class Approval(_Frozen):
    """One alias move of the version: who put it where, when and why.

    Attributes:
        alias: ``champion``, ``challenger`` or ``shadow``.
        kind: ``promote`` (through the gates), ``set`` or ``rollback``.
        by: The approver (or the principal that set the alias).
        reason: Why, as recorded.
        at: When (ISO 8601).
    """

    alias: str
    kind: str = ""
    by: str = ""
    reason: str = ""
    at: str = ""


class ModelCard(_Frozen):
    """A model card (after Mitchell et al., 2019), reduced to what governance checks.

    Attributes:
        model_name: Registered model name.
        intended_use: What decisions the model is meant to support, and for whom.
        out_of_scope: Uses the model must not be put to.
        training_data: Summary of the training and validation data.
        metrics: Evaluation metrics on the validation set (e.g. ``valid_auc``).
        segment_metrics: Metrics per segment (e.g. per category), to show unequal quality.
        fairness: Fairness of the decisions per protected or segment attribute, filled
            from the numbers by training (the promotion gates' fairness thresholds
            read it).
        ranking_fairness: A ranker's exposure and NDCG per group of items (or
            queries), per attribute, filled by the ranker's evaluation (the gates'
            ranking thresholds read it).
        limitations: Known weaknesses, biases, and conditions where it degrades.
        owners: People or teams accountable for the model.
        explanations: Global importance and dependence of the top features on the
            validation set, filled by training.
        version: The registered version the card describes (set when rendered).
        lineage: The version's lineage tags in the registry (set when rendered).
        approvals: The version's alias moves (set when rendered).
    """

    model_name: str = Field(..., min_length=1)
    intended_use: str = ""
    out_of_scope: str = ""
    training_data: TrainingDataSummary = TrainingDataSummary()
    metrics: dict[str, float] = Field(default_factory=dict)
    segment_metrics: dict[str, dict[str, float]] = Field(default_factory=dict)
    fairness: dict[str, FairnessReport] = Field(default_factory=dict)
    ranking_fairness: dict[str, RankingFairnessReport] = Field(default_factory=dict)
    limitations: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()
    explanations: GlobalExplanation | None = None
    version: int | None = None
    lineage: dict[str, str] = Field(default_factory=dict)
    approvals: tuple[Approval, ...] = ()

    def with_registry_record(
        self, version: int, tags: Mapping[str, str], history: Iterable[Mapping[str, Any]]
    ) -> ModelCard:
        """The card of registered ``version``: its lineage tags and its approvals added.

        Args:
            version: The version the card is of.
            tags: The version's registry tags; the ``entai.*`` lineage tags are kept
                (not the metrics, evaluations and card records).
            history: The model's alias history; the moves to ``version`` are kept, in order.
        """
        lineage = {
            k: str(v)
            for k, v in sorted(tags.items())
            if k.startswith("entai.") and k not in _NOT_LINEAGE
        }
        approvals = tuple(
            Approval(
                alias=str(move.get("alias", "")),
                kind=str(move.get("kind", "")),
                by=str(move.get("by", "")),
                reason=str(move.get("reason", "")),
                at=str(move.get("at", "")),
            )
            for move in history
            if _as_int(move.get("version")) == version
        )
        return self.model_copy(
            update={"version": version, "lineage": lineage, "approvals": approvals}
        )

    def missing(self) -> list[str]:
        """Required sections that are empty, by field path (empty when complete)."""
        gaps: list[str] = []
        if not self.intended_use.strip():
            gaps.append("intended_use")
        data = self.training_data
        if not data.dataset_id:
            gaps.append("training_data.dataset_id")
        if data.rows <= 0:
            gaps.append("training_data.rows")
        if not data.feature_service:
            gaps.append("training_data.feature_service")
        if not self.metrics:
            gaps.append("metrics")
        if not any(item.strip() for item in self.limitations):
            gaps.append("limitations")
        if not self.owners:
            gaps.append("owners")
        return gaps

    @property
    def complete(self) -> bool:
        """True when no required section is empty."""
        return not self.missing()

    def to_json(self) -> str:
        """The card as JSON (what the registry stores)."""
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        """Parse a stored card.

        Raises:
            InvalidInputError: the text is not a valid card, naming the bad fields.
        """
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise _invalid(exc) from None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ModelCard:
        """Build a card from a mapping (e.g. a YAML section).

        Raises:
            InvalidInputError: the mapping is not a valid card, naming the bad fields.
        """
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise _invalid(exc) from None

    def to_markdown(self) -> str:
        """A human-readable rendering for the CLI and the MLflow UI."""
        data = self.training_data
        title = self.model_name if self.version is None else f"{self.model_name} v{self.version}"
        lines = [
            f"# Model card: {title}",
            "",
            "## Intended use",
            self.intended_use or "_missing_",
        ]
        if self.out_of_scope:
            lines += ["", "## Out of scope", self.out_of_scope]
        lines += [
            "",
            "## Training data",
            f"- dataset: {data.dataset_id or '_missing_'} ({data.rows:,} rows)",
            f"- feature service: {data.feature_service or '_missing_'}"
            f" (definitions {data.definitions_hash[:12] or '?'})",
            f"- validation dataset: {data.validation_dataset_id or '?'}",
        ]
        if data.label_rate is not None:
            lines.append(f"- label rate: {data.label_rate:.4f}")
        if data.time_range is not None:
            lines.append(f"- time range: {data.time_range[0]} .. {data.time_range[1]}")
        lines += [f"- {k}: {v}" for k, v in self.lineage.items()]
        lines += ["", "## Metrics"]
        lines += [f"- {k}: {v:.4f}" for k, v in sorted(self.metrics.items())] or ["_missing_"]
        for segment, values in sorted(self.segment_metrics.items()):
            shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(values.items()))
            lines.append(f"- segment {segment}: {shown}")
        for attribute, report in sorted(self.fairness.items()):
            lines += ["", f"## Fairness by {attribute}", *_fairness_lines(report)]
        for attribute, ranked in sorted(self.ranking_fairness.items()):
            lines += ["", f"## Ranking fairness by {attribute}", *_ranking_lines(ranked)]
        lines += ["", "## Top features", *_explanation_lines(self.explanations)]
        lines += ["", "## Limitations"]
        lines += [f"- {item}" for item in self.limitations] or ["_missing_"]
        lines += ["", "## Owners", ", ".join(self.owners) or "_missing_"]
        lines += ["", "## Approvals"]
        lines += [
            f"- {a.at}: {a.alias} ({a.kind or 'set'}) by {a.by or '?'}"
            + (f": {a.reason}" if a.reason else "")
            for a in self.approvals
        ] or ["_none recorded_"]
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        """The Markdown rendering as one self-contained HTML page (no external resources)."""
        return markdown_page(self.to_markdown(), title=f"Model card: {self.model_name}")


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _explanation_lines(explanation: GlobalExplanation | None) -> list[str]:
    if explanation is None:
        return ["_not recorded_"]
    lines = [
        f"Mean |contribution| to the margin over {explanation.rows:,} validation rows"
        f" ({explanation.method}; base value {explanation.base_value:.4f}).",
        "",
        "| feature | mean abs contribution | mean contribution |",
        "|---|---|---|",
    ]
    for f in explanation.top:
        lines.append(f"| {f.feature} | {f.mean_abs_contribution:.4f} | {f.mean_contribution:.4f} |")
    for f in explanation.top:
        shown = "; ".join(
            ("missing" if b.mean_value is None else f"~{b.mean_value:.3g}")
            + f": {b.mean_contribution:+.4f} ({b.rows})"
            for b in f.dependence
        )
        if shown:
            lines.append(f"- {f.feature} dependence (value: contribution (rows)): {shown}")
    return lines


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _fairness_lines(report: FairnessReport) -> list[str]:
    lines = [
        f"Selected: score >= {report.threshold:.4f}; groups under {report.min_group_size}"
        " rows are shown but not compared.",
        "",
        *_measure_lines(report.measures()),
    ]
    lines += [
        "",
        "| group | rows | selection rate | TPR | FPR | AUC | mean score | label rate | ECE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for g in report.groups:
        name = g.group if g.sufficient else f"{g.group} (insufficient)"
        cells = [g.selection_rate, g.tpr, g.fpr, g.auc, g.mean_score, g.label_rate, g.ece]
        lines.append(f"| {name} | {g.count} | " + " | ".join(_number(c) for c in cells) + " |")
    return lines


def _measure_lines(measures: Mapping[str, Disparity]) -> list[str]:
    lines = []
    for name, measure in measures.items():
        worst = ", ".join(f"{g}={v:.4f}" for g, v in measure.worst_groups.items())
        shown = f"- {name}: {_number(measure.value)}"
        shown += f" ({measure.rate}: {worst})" if worst else ""
        lines.append(shown + (f"; {measure.reason}" if measure.reason else ""))
    return lines


def _ranking_lines(report: RankingFairnessReport) -> list[str]:
    lines = [
        f"Exposure 1/log2(1 + rank) within the top {report.k} of each query; groups under"
        f" {report.min_group_size} items are shown but not compared.",
        "",
        *_measure_lines(report.measures()),
        "",
        "| group | items | queries | exposure share | relevance share | mean exposure"
        f" | NDCG@{report.k} |",
        "|---|---|---|---|---|---|---|",
    ]
    for g in report.groups:
        name = g.group if g.sufficient else f"{g.group} (insufficient)"
        cells = [g.exposure_share, g.relevance_share, g.mean_exposure, g.ndcg_at_k]
        lines.append(
            f"| {name} | {g.items} | {g.queries} | " + " | ".join(_number(c) for c in cells) + " |"
        )
    return lines


def _invalid(exc: ValidationError) -> InvalidInputError:
    fields = [".".join(str(p) for p in e["loc"]) for e in exc.errors()]
    return InvalidInputError(
        f"invalid model card: {', '.join(fields)}",
        details={"fields": fields, "errors": [e["msg"] for e in exc.errors()]},
    )
