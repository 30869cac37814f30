"""The typed arguments of the Serve application, and what a replica builds from them.

:class:`AppArgs` is what ``build_app`` takes and what a Serve config file's ``args``
validate into; :func:`start_runtime` gives a replica that scores (the Ingress by
default, the Model deployment otherwise) its alias-following model runtime, and
:func:`start_ranker` the ingress its ranker runtime when it serves recommendations.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from entai.actors.backends import configure_mlflow
from entai.actors.services import SERVE_SERVICE, Services, platform_credential
from entai.deployments.model_runtime import ActorAliasWatcher, ModelRuntime, load_mlflow_model
from entai.deployments.monitor_registration import ChampionRegistrar, ranker_watch_request
from entai.deployments.recommend import RankerRuntime, load_mlflow_ranker
from entai.shared.recommend import InteractionIndex
from entai.shared.settings import EntaiSettings, load_settings

__all__ = ["AppArgs", "serve_credential", "settings_of", "start_ranker", "start_runtime"]

_MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_FEATURE_REF = r"^[^:\s]+:[^:\s]+$"


class AppArgs(BaseModel):
    """Arguments of :func:`build_app` (also the ``args`` of a Serve config file).

    Attributes:
        model_name: Registered model this application serves.
        feature_service: The model's feature service (online inputs).
        definitions_module: Importable module holding the feature definitions.
        settings: Platform settings; None reads ``ENTAI_*`` in each replica.
        canary_percent: Share of entities (0-100) answered by ``challenger``.
        shadow: Also score every request with ``shadow`` (logged, never returned).
        prediction_column: Name of the score column in the log and the monitor.
        model_replicas: Fixed Model replicas; None leaves it to the config/autoscaler.
        ingress_replicas: Fixed Ingress replicas; None likewise.
        score_in_ingress: Score in the ingress replica with its own model runtime
            (same alias following and hot swaps), the default: one handle hop less
            per prediction. False deploys the Model deployment (``@serve.batch``,
            replicas of its own) and the ingress calls it; ``model_replicas``,
            ``max_batch_size`` and ``batch_wait_timeout_s`` apply only then.
        max_batch_size: ``@serve.batch`` size on the Model.
        batch_wait_timeout_s: ``@serve.batch`` wait on the Model.
        tap_flush_interval_s: How often served rows are shipped to the log/monitor.
        event_contracts: Event sources accepted by ``POST /v1/events``, each with its
            contract as ``"package.module:NAME"`` or a YAML path.
        ranker_model: Registered ranker answering ``POST /v1/recommend/{model}``
            (its ``champion`` and interaction index, loaded in the ingress; like
            ``model_name``, it needs a champion when a replica starts); None serves
            no recommendations.
        ranker_recent_views: The ranker's online list feature of a user's recently
            viewed item ids (``"view:feature"``, a ``list<int64>`` of a view keyed by
            the user alone): read for every recommendation, it stands in for the
            index's views (:mod:`entai.deployments.stored_user`); None reads nothing
            and ranks from the index and the request's context.
        ranker_category_activity: The ranker's online feature of a user's activity per
            category (``"view:feature"``, a number of a view keyed by the user and a
            string category key, as :func:`entai.shared.recommend.category_activity`
            defines it): read for every recommendation with the recent views (one
            read), it stands in for the index's category activity; None: the index's.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str = Field(pattern=_MODEL_NAME)
    feature_service: str
    definitions_module: str
    settings: EntaiSettings | None = None
    canary_percent: float = Field(0.0, ge=0.0, le=100.0)
    shadow: bool = True
    prediction_column: str = "prediction"
    model_replicas: int | None = Field(None, ge=1)
    ingress_replicas: int | None = Field(None, ge=1)
    score_in_ingress: bool = True
    max_batch_size: int = Field(32, ge=1)
    batch_wait_timeout_s: float = Field(0.002, ge=0.0)
    tap_flush_interval_s: float = Field(1.0, gt=0.0)
    event_contracts: dict[str, str] = Field(default_factory=dict)
    ranker_model: str | None = Field(None, pattern=_MODEL_NAME)
    ranker_recent_views: str | None = Field(None, pattern=_FEATURE_REF, max_length=400)
    ranker_category_activity: str | None = Field(None, pattern=_FEATURE_REF, max_length=400)

    @model_validator(mode="after")
    def _stored_user_features_need_a_ranker(self) -> AppArgs:
        for name in ("ranker_recent_views", "ranker_category_activity"):
            if getattr(self, name) is not None and self.ranker_model is None:
                raise ValueError(f"{name} needs ranker_model")
        return self


def settings_of(args: AppArgs) -> EntaiSettings:
    """The platform settings a replica runs with: ``args.settings`` or ``ENTAI_*``."""
    return (args.settings or load_settings()).resolved()


def serve_credential(settings: EntaiSettings) -> str:
    """The Serve replicas' service credential (the data-plane actors and the monitor
    check it); a replica computes it once at start and hands it to what it starts."""
    return platform_credential(settings, SERVE_SERVICE)


def start_runtime(args: AppArgs, settings: EntaiSettings, credential: str) -> ModelRuntime:
    """A started ModelRuntime following ``args.model_name``'s aliases in the registry
    (``credential``: the replica's, see :func:`serve_credential`)."""
    configure_mlflow(settings.mlflow)
    services = Services.of(settings)
    runtime = ModelRuntime(
        args.model_name,
        ActorAliasWatcher(services.registry()),
        load_mlflow_model,
        on_versions=ChampionRegistrar(args.model_name, services, credential),
    )
    runtime.start()
    return runtime


def start_ranker(name: str, settings: EntaiSettings, credential: str) -> RankerRuntime:
    """A started RankerRuntime following ranker ``name``'s champion in the registry; the
    drift monitor watches each champion's fairness per window (``credential``: the
    replica's, see :func:`serve_credential`)."""
    configure_mlflow(settings.mlflow)
    services = Services.of(settings)

    def index_of(version: int) -> InteractionIndex | None:
        return runtime.index(version)  # the hook runs after start(): ``runtime`` is bound

    request = ranker_watch_request(name, services, index_of, credential)
    runtime = RankerRuntime(
        name,
        ActorAliasWatcher(services.registry()),
        load_mlflow_ranker,
        on_versions=ChampionRegistrar(name, services, credential, request=request),
    )
    runtime.start()
    return runtime
