"""Training and tuning configuration, loaded from YAML (``entai train --config``).

A config names what to train on (a feature service from a definitions module and a
label source, joined point-in-time), how (XGBoost parameters, rounds, workers, the
time split, baselines), what to evaluate fairness by (``fairness:``) and what to
register (model name, alias, card text). :class:`TuneConfig` adds the search space and
the search's budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from entai.pipelines.training._train import BASELINES, Runner
from entai.shared.core import ConfigError, read_yaml_mapping

__all__ = [
    "CardText",
    "FairnessConfig",
    "RankingFairnessConfig",
    "SearchDimension",
    "TrainConfig",
    "TuneConfig",
]

_DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "tree_method": "hist",
    "max_depth": 5,
    "eta": 0.1,
    "min_child_weight": 5,
    "seed": 0,
}


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CardText(_Config):
    """The human-written parts of the model card; the rest is filled in by training."""

    intended_use: str = ""
    out_of_scope: str = ""
    limitations: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()


class FairnessConfig(_Config):
    """What the validation set's fairness is evaluated by (``entai.shared.models._fairness``).

    Example::

        fairness:
          columns: [region]
          top_fraction: 0.2

    Attributes:
        columns: Protected or segment columns of the training set. A column of the label
            source is kept through the point-in-time join as an extra column and is not a
            model input; a feature of the service may be named too.
        threshold: Scores at or above it count as selected.
        top_fraction: Select this top share of the validation scores instead (the
            threshold becomes that quantile), as a campaign that contacts the top 20%.
        min_group_size: Groups with fewer validation rows are reported, not compared.
        bins: Equal-width score bins of each group's calibration error.
    """

    columns: tuple[str, ...] = Field(..., min_length=1)
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    top_fraction: float | None = Field(None, gt=0.0, lt=1.0)
    min_group_size: int = Field(30, ge=1)
    bins: int = Field(10, ge=1)

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        if len(set(self.columns)) != len(self.columns):
            raise ValueError(f"columns lists a column twice: {list(self.columns)}")
        return self


class RankingFairnessConfig(_Config):
    """What a ranker's held-out ranking is evaluated by (``ranking_fairness``).

    Example (``RankerConfig(fairness=...)``; the same ``columns`` as :class:`FairnessConfig`)::

        fairness:
          columns: [category]
          min_group_size: 30

    Attributes:
        columns: Item (or query) attributes: a column of the ranking examples or of
            the catalogue (joined by ``product_id``), e.g. the product category or a
            seller segment marked ``protected`` or ``segment`` where it is declared.
        min_group_size: Groups with fewer ranked items are reported, not compared.
    """

    columns: tuple[str, ...] = Field(..., min_length=1)
    min_group_size: int = Field(30, ge=1)

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        if len(set(self.columns)) != len(self.columns):
            raise ValueError(f"columns lists a column twice: {list(self.columns)}")
        return self


class TrainConfig(_Config):
    """One training run.

    Attributes:
        model_name: Registered model name.
        feature_service: Feature service the model consumes.
        definitions_module: Module (or ``.py`` path) holding the feature definitions.
        label_source: Parquet or CSV file of entity rows: join keys, timestamp, label.
        label_column: The binary label column.
        timestamp_column: Time of each entity row (the PIT join and split key).
        segment_column: Column to report per-segment metrics on (e.g. ``category``).
        fairness: Columns to evaluate fairness by, and how; the reports go to the
            model card, the run's metrics and ``evaluation.json``.
        oracle_column: Column holding the true probability, when the data is synthetic.
        as_served: PIT join only on rows written by each row's time.
        dataset_id: Save the training set under this id (immutable; None = not saved).
        params: XGBoost parameters.
        num_boost_round: Boosting rounds.
        num_workers: Ray Train workers.
        cpus_per_worker: CPUs (and XGBoost threads) per worker.
        runner: Where training runs: ``auto`` (one Ray task for one worker, Ray Train
            for more), ``task`` (one worker only) or ``ray_train``.
        valid_fraction: Latest share of distinct timestamps used for validation.
        baselines: scikit-learn baselines to fit and log alongside.
        register_model: Register the trained model.
        alias: Alias given on registration (never ``champion``: that needs promotion).
        card: Card text.
    """

    model_name: str = Field(..., min_length=1)
    feature_service: str = Field(..., min_length=1)
    definitions_module: str = Field(..., min_length=1)
    label_source: str = Field(..., min_length=1)
    label_column: str = "label"
    timestamp_column: str = "event_timestamp"
    segment_column: str | None = None
    fairness: FairnessConfig | None = None
    oracle_column: str | None = None
    as_served: bool = False
    dataset_id: str | None = None
    params: dict[str, Any] = Field(default_factory=lambda: dict(_DEFAULT_PARAMS))
    num_boost_round: int = Field(100, ge=1, le=100_000)
    num_workers: int = Field(1, ge=1)
    cpus_per_worker: int = Field(1, ge=1)
    runner: Runner = "auto"
    valid_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    baselines: tuple[str, ...] = ("logistic_regression",)
    register_model: bool = True
    alias: Literal["challenger", "shadow"] | None = "challenger"
    card: CardText = CardText()

    @model_validator(mode="after")
    def _known_baselines(self) -> Self:
        unknown = sorted(set(self.baselines) - set(BASELINES))
        if unknown:
            raise ValueError(f"unknown baselines {unknown}; choose from {list(BASELINES)}")
        return self

    @field_validator("fairness")
    @classmethod
    def _fairness_columns(
        cls, value: FairnessConfig | None, info: ValidationInfo
    ) -> FairnessConfig | None:
        reserved = {str(info.data.get(f)) for f in ("label_column", "timestamp_column")}
        clash = sorted(reserved & set(value.columns if value else ()))
        if clash:
            raise ValueError(f"fairness.columns cannot be the label or timestamp: {clash}")
        return value

    @model_validator(mode="after")
    def _runner_fits_workers(self) -> Self:
        if self.runner == "task" and self.num_workers != 1:
            raise ValueError("runner 'task' trains on one worker; use 'ray_train' or 'auto'")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> Self:
        """Load a config file.

        Raises:
            ConfigError: the file is missing, not YAML, or invalid (naming each field).
        """
        file = Path(path)
        data = read_yaml_mapping(file, "config file")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            fields = [".".join(str(p) for p in e["loc"]) or "<root>" for e in exc.errors()]
            raise ConfigError(
                f"invalid {cls.__name__} in {file}: {', '.join(fields)}",
                details={
                    "errors": [
                        {"field": f, "message": e["msg"]}
                        for f, e in zip(fields, exc.errors(), strict=True)
                    ]
                },
            ) from None


class SearchDimension(_Config):
    """One tuned parameter: ``uniform``/``loguniform`` floats, ``randint``, ``choice``."""

    type: Literal["uniform", "loguniform", "randint", "choice"]
    low: float | None = None
    high: float | None = None
    values: tuple[Any, ...] = ()

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.type == "choice":
            if not self.values:
                raise ValueError("a choice dimension needs values")
        elif self.low is None or self.high is None or self.low >= self.high:
            raise ValueError(f"a {self.type} dimension needs low < high")
        return self


def _default_space() -> dict[str, SearchDimension]:
    return {
        "max_depth": SearchDimension(type="randint", low=3, high=9),
        "eta": SearchDimension(type="loguniform", low=0.03, high=0.3),
        "min_child_weight": SearchDimension(type="loguniform", low=1.0, high=20.0),
        "subsample": SearchDimension(type="uniform", low=0.6, high=1.0),
    }


class TuneConfig(TrainConfig):
    """A tuning run: a training config plus the search.

    Attributes:
        search_space: Parameters to tune; the rest come from ``params``.
        num_samples: Trials.
        max_concurrent: Trials running at once (2 fits a 2-core machine with 1 CPU each).
        cpus_per_trial: CPUs (and XGBoost threads) per trial.
        metric: The validation metric ASHA and the final choice use.
        mode: ``max`` or ``min`` for ``metric``.
        grace_period: Rounds every trial gets before ASHA may stop it.
        reduction_factor: ASHA's halving rate.
        report_every: Rounds between reports to Tune (fewer reports, less overhead).
        seed: Seed of the search.
    """

    search_space: dict[str, SearchDimension] = Field(default_factory=_default_space)
    num_samples: int = Field(6, ge=1)
    max_concurrent: int = Field(1, ge=1)
    cpus_per_trial: int = Field(1, ge=1)
    metric: str = "valid_auc"
    mode: Literal["max", "min"] = "max"
    grace_period: int = Field(10, ge=1)
    reduction_factor: int = Field(3, ge=2)
    report_every: int = Field(5, ge=1)
    seed: int = 0
