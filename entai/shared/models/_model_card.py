"""Model cards: what a model version is for, what it was trained on, how good it is.

A card travels with each registered version (stored as an artifact by the registry)
and is one of the promotion gates: a card that leaves a required section empty is
incomplete, and :meth:`ModelCard.missing` names every such section.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from entai.shared.core import InvalidInputError
from entai.shared.models._fairness import FairnessReport

__all__ = ["ModelCard", "TrainingDataSummary"]


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
        limitations: Known weaknesses, biases, and conditions where it degrades.
        owners: People or teams accountable for the model.
    """

    model_name: str = Field(..., min_length=1)
    intended_use: str = ""
    out_of_scope: str = ""
    training_data: TrainingDataSummary = TrainingDataSummary()
    metrics: dict[str, float] = Field(default_factory=dict)
    segment_metrics: dict[str, dict[str, float]] = Field(default_factory=dict)
    fairness: dict[str, FairnessReport] = Field(default_factory=dict)
    limitations: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()

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
        lines = [
            f"# Model card: {self.model_name}",
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
        lines += ["", "## Metrics"]
        lines += [f"- {k}: {v:.4f}" for k, v in sorted(self.metrics.items())] or ["_missing_"]
        for segment, values in sorted(self.segment_metrics.items()):
            shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(values.items()))
            lines.append(f"- segment {segment}: {shown}")
        for attribute, report in sorted(self.fairness.items()):
            lines += ["", f"## Fairness by {attribute}", *_fairness_lines(report)]
        lines += ["", "## Limitations"]
        lines += [f"- {item}" for item in self.limitations] or ["_missing_"]
        lines += ["", "## Owners", ", ".join(self.owners) or "_missing_"]
        return "\n".join(lines) + "\n"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _fairness_lines(report: FairnessReport) -> list[str]:
    lines = [
        f"Selected: score >= {report.threshold:.4f}; groups under {report.min_group_size}"
        " rows are shown but not compared.",
        "",
    ]
    for name, measure in report.measures().items():
        worst = ", ".join(f"{g}={v:.4f}" for g, v in measure.worst_groups.items())
        shown = f"- {name}: {_number(measure.value)}"
        shown += f" ({measure.rate}: {worst})" if worst else ""
        lines.append(shown + (f"; {measure.reason}" if measure.reason else ""))
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


def _invalid(exc: ValidationError) -> InvalidInputError:
    fields = [".".join(str(p) for p in e["loc"]) for e in exc.errors()]
    return InvalidInputError(
        f"invalid model card: {', '.join(fields)}",
        details={"fields": fields, "errors": [e["msg"] for e in exc.errors()]},
    )
