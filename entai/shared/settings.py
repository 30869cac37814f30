"""One typed settings tree for the whole platform.

Values come, in order of precedence, from keyword arguments, ``ENTAI_*`` environment
variables (nested with ``__``, e.g. ``ENTAI_ONLINE_STORE__TYPE=redis``) and an
optional YAML file (:meth:`EntaiSettings.from_yaml`). Every setting that can carry a
credential is a ``SecretStr`` (the online store's Redis URL, the MLflow tracking URI,
the audit anchors' DSN, the keys, alert webhooks' URLs and headers): they never appear
in ``repr``, and a process that builds or receives settings registers their secret
parts with the log redaction (:func:`entai.shared.core.register_secret`), so they never
appear in its logs or error messages either. Print a URL with
:func:`entai.shared.core.redact_url`.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from entai.shared.core import (
    ConfigError,
    install_redaction,
    read_yaml_mapping,
    register_secret,
    register_url_secrets,
)
from entai.shared.models import PromotionPolicy

if TYPE_CHECKING:
    from entai.shared.governance import AnchorStore

__all__ = [
    "HAPROXY_FENCE_NAME",
    "LOOPBACK_HOSTS",
    "MIN_KEY_BYTES",
    "AuditAnchorSettings",
    "AuthGuardSettings",
    "EntaiSettings",
    "FileAnchorSettings",
    "FileGovernanceStoreSettings",
    "GovernanceStoreSettings",
    "LakeSettings",
    "MemoryOnlineStoreSettings",
    "MlflowSettings",
    "MonitoringSettings",
    "ObservabilitySettings",
    "OnlineStoreSettings",
    "PostgresAnchorSettings",
    "PostgresGovernanceStoreSettings",
    "RaySettings",
    "RedisOnlineStoreSettings",
    "RegistrySettings",
    "SecuritySettings",
    "ServeSettings",
    "SqliteOnlineStoreSettings",
    "StreamSettings",
    "WebhookSettings",
    "audit_anchor_store",
    "check_hmac_key",
    "check_listeners",
    "haproxy_fenced",
    "load_settings",
    "ray_tls_problems",
    "resolve_audit_key",
    "resolve_hmac_key",
    "resolve_service_secret",
    "wildcard_listener_problems",
]

logger = logging.getLogger(__name__)

MIN_KEY_BYTES = 16

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# The file name of the launcher a local head gives Ray Serve as its HAProxy binary
# (RAY_SERVE_HAPROXY_BINARY_PATH): it moves HAProxy's wildcard binds to 127.0.0.1.
HAPROXY_FENCE_NAME = "entai-haproxy-fence"
_LOOPBACK = LOOPBACK_HOSTS
_MIN_HMAC_KEY_BYTES = 16


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RaySettings(_Section):
    """How entai reaches (or starts) its Ray cluster."""

    address: str | None = Field(None, description="Ray address to join; None starts a local head.")
    namespace: str = "entai"
    num_cpus: int | None = Field(None, ge=1, description="CPUs for a local head; None = all.")
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = Field(8265, ge=1, le=65535)
    dashboard_agent_port: int = Field(
        52365,
        ge=1,
        le=65535,
        description=(
            "The head's dashboard agent (it runs Ray jobs); Ray's default port. Left at "
            "the default and taken by another local Ray, `entai up` picks a free one."
        ),
    )


class ScoringSettings(_Section):
    """The platform's batch scoring service (``entai score`` against a running platform)."""

    warm_workers: int = Field(
        2,
        ge=0,
        description=(
            "Scoring workers the scoring service starts with the platform, so the first "
            "`entai score` finds them warm; each keeps XGBoost and its last booster in "
            "memory while idle. A run that asks for more starts the rest, which then stay. "
            "0: start them with the first run."
        ),
    )


class LakeSettings(_Section):
    """Where the data lake lives: a local directory or a pyarrow.fs URI (s3://, gs://)."""

    root: str = ".entai/lake"


class _OnlineStoreBase(_Section):
    num_shards: int = Field(4, ge=1, le=1024)
    tombstone_retention_s: float = Field(
        7 * 86400.0,
        gt=0.0,
        description=(
            "How long an erased entity key stays tombstoned: writes of it dated up to the "
            "erasure are dropped (a stream replay or a late event cannot bring it back)."
        ),
    )


class MemoryOnlineStoreSettings(_OnlineStoreBase):
    """Online values live in the FeatureShard actors' memory: a restarted shard starts
    empty (tests and throwaway runs; not durable)."""

    type: Literal["memory"] = "memory"


class SqliteOnlineStoreSettings(_OnlineStoreBase):
    """Each FeatureShard actor writes its own SQLite file (WAL) on local disk and
    acknowledges a write once it is committed; serving replicas on the same machine read
    the files in place. The embedded (one machine) default."""

    type: Literal["sqlite"] = "sqlite"
    path: Path | None = Field(
        None, description="Directory of the shard files; None is <home>/online."
    )
    synchronous: Literal["full", "normal"] = Field(
        "full",
        description=(
            "full: every commit is fsynced (an acknowledged write survives a power cut); "
            "normal: fsync at checkpoints only (survives a process crash, not a power cut)."
        ),
    )


class RedisOnlineStoreSettings(_OnlineStoreBase):
    """FeatureShard actors write through to Redis and reload from it on restart."""

    type: Literal["redis"] = "redis"
    url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    key_prefix: str = Field("entai", min_length=1)
    replica_cache_rows: int = Field(
        50_000,
        ge=0,
        description=(
            "Online rows each serving replica keeps of what it read, while Redis reports "
            "every change under the key prefix to it (CLIENT TRACKING, broadcast): a write, "
            "an erasure or a flush of a row drops the copy; 0 reads Redis on every request."
        ),
    )
    replica_cache_max_age_s: float = Field(
        30.0,
        gt=0.0,
        description="Longest a kept row answers before the replica reads it from Redis again.",
    )


def _store_type(value: Any) -> str:
    """The ``type`` tag of an online-store section; a section without one is sqlite."""
    if isinstance(value, dict):
        return str(value.get("type", "sqlite"))
    return str(getattr(value, "type", "sqlite"))


OnlineStoreSettings = Annotated[
    Annotated[SqliteOnlineStoreSettings, Tag("sqlite")]
    | Annotated[MemoryOnlineStoreSettings, Tag("memory")]
    | Annotated[RedisOnlineStoreSettings, Tag("redis")],
    Discriminator(_store_type),
]


class MlflowSettings(_Section):
    """MLflow tracking and registry: SQLite by default, PostgreSQL in production.

    ``tracking_uri`` is a secret: a PostgreSQL URI carries the password.
    """

    tracking_uri: SecretStr = SecretStr("sqlite:///.entai/mlflow.db")
    artifact_root: str = ".entai/mlartifacts"
    experiment: str = "entai"


class RegistrySettings(_Section):
    """Promotion gates of the model registry: metric thresholds, the model card, the
    comparison with the champion, four-eyes approval and, when ``policy.fairness`` sets
    thresholds, the fairness measures (``registry: {policy: {fairness: {...}}}``).
    """

    policy: PromotionPolicy = PromotionPolicy()


class ServeSettings(_Section):
    """Ray Serve ingress: the HTTP proxy and the gRPC proxy (``entai.proto``).

    Every listener binds loopback unless the settings say otherwise. ``host`` is where
    the HTTP proxy listens. Ray binds some listeners on every interface whatever the
    host: the gRPC proxy (Ray 2.60 has no host option for it) and, with
    ``RAY_SERVE_ENABLE_HA_PROXY=1``, HAProxy's stats (8404) and Prometheus metrics
    (9101) pages. entai refuses to start those unless ``wildcard_listeners`` is true,
    an explicit acceptance for hosts fenced by a firewall or NetworkPolicy
    (cluster/kuberay/networkpolicies.yaml). A local head's HAProxy needs no acceptance:
    its launcher moves those pages to 127.0.0.1 (see :func:`haproxy_fenced`).
    """

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    grpc_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description=(
            "Serve's gRPC proxy port, e.g. 9000 (cluster/serve_config.yaml uses 9000). Off "
            "(0 or None) by default: Ray 2.60's gRPC proxy binds every interface."
        ),
    )
    request_timeout_s: float = Field(10.0, gt=0)
    max_body_bytes: int = Field(
        1_048_576,
        ge=1024,
        description=(
            "Largest request body (HTTP) or request message (gRPC) a replica accepts; "
            "larger ones get 413 (RESOURCE_EXHAUSTED) before they are read."
        ),
    )
    tls_note: str | None = Field(
        None,
        description="Where TLS terminates in front of a non-loopback bind (e.g. 'ingress LB').",
    )
    wildcard_listeners: bool = Field(
        False,
        description=(
            "Accept the listeners Ray binds on every interface (the gRPC proxy; HAProxy's "
            "stats and metrics pages). Off: entai refuses to start them."
        ),
    )
    access_log: Literal["failures", "all"] = Field(
        "failures",
        description=(
            "'failures': one line in the replica's log for each request answered 4xx/5xx "
            "or not answered (served predictions are in the prediction log, every request "
            "in the metrics); 'all': Serve's line for every request, about 19 µs of the "
            "replica's CPU per request (bench/access_log.py)."
        ),
    )
    online_read_timeout_s: float = Field(3.0, gt=0.0)
    registry_timeout_s: float = Field(5.0, gt=0.0)
    breaker_failures: int = Field(
        5, ge=1, description="Failures in a row of one dependency that open its breaker."
    )
    breaker_open_s: float = Field(
        5.0, gt=0.0, description="How long an open breaker answers 503 before a probe."
    )

    @model_validator(mode="after")
    def _dependencies_within_the_request(self) -> Self:
        slowest = max(self.online_read_timeout_s, self.registry_timeout_s)
        if slowest >= self.request_timeout_s:
            raise ValueError(
                "online_read_timeout_s and registry_timeout_s must be below request_timeout_s"
            )
        return self


class DriftSettings(_Section):
    """Thresholds of the drift tests (``DriftConfig`` fields)."""

    share_threshold: float = Field(0.5, gt=0.0, le=1.0)
    min_samples: int = Field(100, ge=1)
    small_reference_max: int = Field(1000, ge=0)
    ks_p: float = Field(0.05, gt=0.0, lt=1.0)
    chi2_p: float = Field(0.05, gt=0.0, lt=1.0)
    z_p: float = Field(0.05, gt=0.0, lt=1.0)
    wasserstein_threshold: float = Field(0.1, gt=0.0)
    js_threshold: float = Field(0.1, gt=0.0)


class AlertSettings(_Section):
    """Alert hysteresis and cooldown (``AlertPolicy`` fields)."""

    warn_k: int = Field(1, ge=1)
    alert_k: int = Field(2, ge=1)
    n: int = Field(3, ge=1)
    clear_k: int = Field(3, ge=1)
    cooldown_s: float = Field(3600.0, ge=0.0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.warn_k <= self.alert_k <= self.n:
            raise ValueError("need warn_k <= alert_k <= n")
        return self


class RetrainSettings(_Section):
    """When drift asks for retraining (:class:`entai.shared.monitoring._windows.RetrainPolicy`).

    ``min_interval_s`` limits requests per model in the monitor and runs per model in
    the retraining worker; ``auto_promote`` lets a challenger that passes the
    registry's gates become champion without a person approving it.
    """

    drift_windows: int = Field(2, ge=1)
    auc_margin: float = Field(0.05, ge=0.0)
    min_interval_s: float = Field(6 * 3600.0, ge=0.0)
    auto_promote: bool = False


class WebhookSettings(_Section):
    """One alert webhook: drift alerts are POSTed to ``url`` as JSON.

    The URL is a secret (a chat webhook's path is its credential), and so are the
    header values (e.g. ``Authorization``); logs and errors show only the scheme and host.
    """

    url: SecretStr
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    timeout_s: float = Field(2.0, gt=0.0)
    retries: int = Field(2, ge=0, le=10)


class MonitoringSettings(_Section):
    """Drift monitoring of served champions and the retraining loop.

    A window closes after ``window_count`` rows or at the end of a ``window_seconds``
    bucket, whichever comes first (set one to None to use only the other); the
    monitor's own clock closes idle time windows every ``tick_interval_s``. Tests and
    the demo use small count windows. The retrain worker runs a request when the
    monitor announces it on the bus, and reconciles from the request files every
    ``retrain_resync_s`` (a request whose announcement was lost runs that late).
    A ranker watched for fairness has its windows (``window_seconds``, default one
    hour) recomputed from its impression and feedback logs at most every
    ``ranker_refresh_s``, on the clock.
    """

    window_count: int | None = Field(5000, ge=1)
    window_seconds: float | None = Field(3600.0, gt=0.0)
    grace_s: float = Field(60.0, ge=0.0)
    sample_size: int = Field(2000, ge=1)
    tick_interval_s: float = Field(10.0, gt=0.0)
    reference_sample_size: int = Field(5000, ge=100)
    retrain_resync_s: float = Field(300.0, gt=0.0)
    ranker_refresh_s: float = Field(60.0, gt=0.0)
    drift: DriftSettings = DriftSettings()
    alerts: AlertSettings = AlertSettings()
    retrain: RetrainSettings = RetrainSettings()
    webhooks: list[WebhookSettings] = Field(
        default_factory=list,
        description="Alert webhooks; alerts are always logged, and also sent to these.",
    )

    @model_validator(mode="after")
    def _some_window(self) -> Self:
        if self.window_count is None and self.window_seconds is None:
            raise ValueError("set window_count and/or window_seconds")
        return self

    def window(self) -> dict[str, Any]:
        """The window spec (``WindowSpec`` fields) monitored models get."""
        return {
            "count": self.window_count,
            "seconds": self.window_seconds,
            "grace_s": self.grace_s,
            "sample_size": self.sample_size,
        }


class ObservabilitySettings(_Section):
    """Distributed tracing of requests and events across the platform's processes.

    Off by default: every span call is then a no-op. On, each process that handles a
    request (the ingress replicas, the feature shards, the drift monitor, the stream
    workers) exports its spans to ``otlp_endpoint`` (OTLP over HTTP, e.g.
    ``http://collector:4318/v1/traces``) when set, else as JSON lines to one file per
    process under ``trace_dir`` (default ``<home>/traces``), which ``entai trace``
    reads.
    """

    tracing: bool = False
    otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP traces URL; None writes JSON lines under trace_dir."
    )
    trace_dir: Path | None = Field(None, description="Local span files; None: <home>/traces.")
    sample_ratio: float = Field(
        1.0, ge=0.0, le=1.0, description="Share of new traces recorded (parents decide theirs)."
    )
    export_interval_ms: int = Field(
        1000, ge=10, le=60_000, description="Most time a finished span waits for export."
    )
    service_name: str = Field("entai", min_length=1, max_length=100)


class FileAnchorSettings(_Section):
    """Audit anchors in one file outside the lake (default ``<home>/audit_anchor.json``)."""

    type: Literal["file"] = "file"
    path: Path | None = None


class PostgresAnchorSettings(_Section):
    """Audit anchors in a PostgreSQL table: one row per log, created if missing."""

    type: Literal["postgres"] = "postgres"
    dsn: SecretStr
    table: str = Field("entai_audit_anchors", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    log_id: str = Field("entai", min_length=1, description="Names this log in the table.")


def _anchor_type(value: Any) -> str:
    """The ``type`` tag of a store section (audit anchor, governance store); default file."""
    if isinstance(value, dict):
        return str(value.get("type", "file"))
    return str(getattr(value, "type", "file"))


class FileGovernanceStoreSettings(_Section):
    """Governance state in files under the home: ``policy.yaml`` (or ``policy_file``),
    ``tokens/`` and the audit log under the lake root (local lakes only)."""

    type: Literal["file"] = "file"


class PostgresGovernanceStoreSettings(_Section):
    """Governance state in PostgreSQL: policy versions, token records, the bootstrap
    marker and the audit log, in tables named ``<table_prefix>...`` (created if missing)."""

    type: Literal["postgres"] = "postgres"
    dsn: SecretStr
    table_prefix: str = Field("entai_gov_", pattern=r"^[a-z_][a-z0-9_]{0,40}$")


GovernanceStoreSettings = Annotated[
    Annotated[FileGovernanceStoreSettings, Tag("file")]
    | Annotated[PostgresGovernanceStoreSettings, Tag("postgres")],
    Discriminator(_anchor_type),
]

AuditAnchorSettings = Annotated[
    Annotated[FileAnchorSettings, Tag("file")] | Annotated[PostgresAnchorSettings, Tag("postgres")],
    Discriminator(_anchor_type),
]


class AuthGuardSettings(_Section):
    """How a serving replica authenticates requests before reading them.

    A replica decides from its copy of the governance state (refreshed every
    ``cache_ttl_s``); a token that copy does not know is looked up in the governance
    service (at most ``lookup_concurrency`` at once, each within ``governance_timeout_s``)
    and, when unknown, remembered as bad for ``negative_ttl_s``. Each client (peer
    address) may fail ``failure_burst`` times, then ``failure_rate_per_s`` times a
    second; beyond that it gets 429, held back ``refusal_delay_s`` first (a tarpit: a
    client that retries at once is slowed to its connections over the delay; at most
    ``max_delayed`` refusals are held at a time per replica, the rest answered at once,
    so held refusals never take the replica's request slots). Failures are audited as
    one entry per client and ``failure_window_s``.
    """

    cache_ttl_s: float = Field(5.0, gt=0.0)
    max_stale_s: float = Field(
        60.0,
        gt=0.0,
        description=(
            "How long a replica keeps deciding from its last copy of the governance "
            "state while the service does not answer; after that, 503."
        ),
    )
    governance_timeout_s: float = Field(5.0, gt=0.0)
    lookup_concurrency: int = Field(8, ge=1)
    negative_cache_size: int = Field(10_000, ge=1)
    negative_ttl_s: float = Field(30.0, gt=0.0)
    failure_burst: int = Field(20, ge=1)
    failure_rate_per_s: float = Field(1.0, gt=0.0)
    max_clients: int = Field(10_000, ge=1)
    failure_window_s: float = Field(60.0, gt=0.0)
    refusal_delay_s: float = Field(0.5, ge=0.0, le=10.0)
    max_delayed: int = Field(32, ge=0)

    @model_validator(mode="after")
    def _stale_after_ttl(self) -> Self:
        if self.max_stale_s < self.cache_ttl_s:
            raise ValueError("max_stale_s must be at least cache_ttl_s")
        return self


class SecuritySettings(_Section):
    """Tokens, keys, the governance policy, the audit log's key and anchors, and what
    happens to undeclared PII.

    ``audit_key`` (or ``audit_key_file``) keys the audit log's hash chain and signs its
    anchors; it must live outside the lake (a secret store). ``audit_anchor`` is the
    second store the anchors are kept in; ``audit_anchor_every`` how many entries pass
    between anchors (1: every entry). ``governance_store`` is where the policy, the
    tokens and the audit log live (files under the home, or PostgreSQL for a cluster);
    ``bootstrap_secret`` (or its file) is the one-time secret ``entai tokens bootstrap``
    presents to create the first admin token. ``service_secret`` (or its file) signs
    the credentials the platform's own services (registry, drift monitor, retraining,
    Serve replicas) present to the governance service; every platform process reads it
    from the secret store, no user is given it.
    """

    mode: Literal["embedded", "production"] = "embedded"
    network_policy: str | None = Field(
        None,
        description=(
            "What fences the listeners that are not on loopback (the dashboard, Ray's "
            "wildcard listeners), e.g. 'cluster/kuberay/networkpolicies.yaml'; "
            "production refuses such listeners without it."
        ),
    )
    hmac_key: SecretStr | None = None
    hmac_key_file: Path | None = None
    policy_file: Path | None = None
    token_file: Path = Path(".entai/admin_token")
    audit_key: SecretStr | None = None
    audit_key_file: Path | None = None
    audit_anchor: AuditAnchorSettings = FileAnchorSettings()
    audit_anchor_every: int = Field(1, ge=1)
    governance_store: GovernanceStoreSettings = FileGovernanceStoreSettings()
    bootstrap_secret: SecretStr | None = None
    bootstrap_secret_file: Path | None = None
    service_secret: SecretStr | None = None
    service_secret_file: Path | None = None
    auth_guard: AuthGuardSettings = AuthGuardSettings()
    # The values of entai.shared.data.UndeclaredPii, spelled out: importing the data
    # domain here would load pyarrow and pandas on every CLI start.
    undeclared_pii: Literal["quarantine", "redact"] = Field(
        "quarantine",
        description=(
            "PII found at ingest in a column the contract stores in the clear: "
            "'quarantine' the row (default) or 'redact' the finding in place. To allow a "
            "column's values, opt it out in its contract (pii_scan: false)."
        ),
    )

    @field_validator("undeclared_pii", mode="before")
    @classmethod
    def _not_allow(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "allow":
            raise ValueError(
                "'allow' is per column, not platform-wide: set pii_scan: false on the "
                "column in its data contract"
            )
        return value

    def resolved_hmac_key(self) -> bytes | None:
        """The HMAC key from the setting or its file, or None when neither is set."""
        return _configured_key(self.hmac_key, self.hmac_key_file, "hmac_key_file")

    def resolved_audit_key(self) -> bytes | None:
        """The audit key from the setting or its file, or None when neither is set."""
        return _configured_key(self.audit_key, self.audit_key_file, "audit_key_file")

    def resolved_service_secret(self) -> bytes | None:
        """The service-credential secret from the setting or its file, or None."""
        return _configured_key(self.service_secret, self.service_secret_file, "service_secret_file")

    def resolved_bootstrap_secret(self) -> bytes | None:
        """The first-admin bootstrap secret from the setting or its file, or None."""
        return _configured_key(
            self.bootstrap_secret, self.bootstrap_secret_file, "bootstrap_secret_file"
        )


def _configured_key(value: SecretStr | None, path: Path | None, field: str) -> bytes | None:
    if value is not None:
        return value.get_secret_value().encode()
    if path is not None:
        try:
            return path.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(
                f"security.{field} {path} cannot be read: {exc.strerror}",
                details={"field": f"security.{field}"},
            ) from exc
    return None


class StreamSettings(_Section):
    """One event source the platform consumes continuously (``entai up`` starts it).

    Attributes:
        contract: The source's contract: ``"package.module:NAME"`` or a YAML path.
        definitions_module: Importable module whose feature views reading this source
            the consumers update (None: the events only land in the lake).
        consumers: Consumer actors for the source (one consumer group).
        batch_size: Events per micro-batch when the consumer keeps up.
        max_batch_size: Most events per micro-batch: while reads come back full (a
            backlog), each asks for twice as many as the last, up to this.
        block_s: How long one read of the bus waits for events.
        max_attempts: Failed attempts after which an event goes to the dead letters.
        max_backlog: Events on the bus not yet landed above which ``POST /v1/events``
            answers 429 with ``Retry-After`` instead of queueing more.
        redelivery_s: How long a read, unacknowledged event waits before another
            consumer takes it over (its consumer died); longer than one batch takes.
        max_future_skew_s: An event dated more than this many seconds after the
            consumer's clock is quarantined (kept with the dead letters, with the
            reason) instead of landing, so a bad clock cannot pin a feature value.
        mirror_rows: Most raw events a consumer keeps in memory for the views'
            windows (its raw mirror; 0: read each micro-batch's history from the lake).
        mirror_full_listing_s: Most seconds between two listings of every date
            partition of the mirror's history; the micro-batches in between list only
            their own event days and the newest ones, so another writer's change to an
            older day (a file ingest, an erasure's rewrite) reaches the mirror up to
            this much later (0, the default: every micro-batch lists every day, so
            an erasure's rewrite is seen by the next micro-batch; see
            docs/operations.md before raising it).
    """

    contract: str
    definitions_module: str | None = None
    consumers: int = Field(1, ge=1, le=64)
    batch_size: int = Field(500, ge=1, le=50_000)
    max_batch_size: int = Field(2_000, ge=1, le=50_000)
    block_s: float = Field(1.0, gt=0, le=30)
    max_attempts: int = Field(5, ge=1, le=100)
    max_backlog: int = Field(100_000, ge=1)
    redelivery_s: float = Field(60.0, gt=0)
    max_future_skew_s: float = Field(300.0, gt=0)
    mirror_rows: int = Field(2_000_000, ge=0)
    mirror_full_listing_s: float = Field(0.0, ge=0)


class EntaiSettings(BaseSettings):
    """The root of entai's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="ENTAI_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    home: Path = Path(".entai")
    log_level: str = "INFO"
    ray: RaySettings = RaySettings()
    lake: LakeSettings = LakeSettings()
    online_store: OnlineStoreSettings = SqliteOnlineStoreSettings()
    mlflow: MlflowSettings = MlflowSettings()
    registry: RegistrySettings = RegistrySettings()
    serve: ServeSettings = ServeSettings()
    security: SecuritySettings = SecuritySettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    scoring: ScoringSettings = ScoringSettings()
    streams: dict[str, StreamSettings] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, file_secret_settings)

    def model_post_init(self, context: Any, /) -> None:
        self._register_secrets()

    def __setstate__(self, state: dict[Any, Any]) -> None:
        # Settings reach Ray workers pickled: the worker redacts them as the driver does.
        super().__setstate__(state)
        self._register_secrets()

    def _register_secrets(self) -> None:
        """Tell this process's log redaction every secret these settings carry."""
        install_redaction()
        store = self.online_store
        if isinstance(store, RedisOnlineStoreSettings):
            register_url_secrets(store.url.get_secret_value())
        register_url_secrets(self.mlflow.tracking_uri.get_secret_value())
        for key in (self.security.hmac_key, self.security.audit_key):
            if key is not None:
                register_secret(key.get_secret_value())
        anchor = self.security.audit_anchor
        if isinstance(anchor, PostgresAnchorSettings):
            register_url_secrets(anchor.dsn.get_secret_value())
        for hook in self.monitoring.webhooks:
            register_url_secrets(hook.url.get_secret_value())
            for value in hook.headers.values():
                secret = value.get_secret_value()
                register_secret(secret)
                register_secret(secret.rpartition(" ")[2])  # "Bearer <token>"

    @classmethod
    def from_yaml(cls, path: str | Path) -> EntaiSettings:
        """Load settings from a YAML file; environment variables still take precedence."""
        return load_settings(**_env_overrides(read_yaml_mapping(path, "settings file")))

    def resolved(self) -> EntaiSettings:
        """A copy with every relative local path made absolute.

        Ray workers do not share the driver's working directory, so entry points
        resolve paths once before handing settings to actors and tasks. Sections left
        at their defaults follow ``home`` (the lake, MLflow, the admin token file, the
        SQLite online store's directory).
        """

        def absolute(path: Path | None) -> Path | None:
            return None if path is None else path.expanduser().resolve()

        home = self.home.expanduser().resolve()
        explicit = self.model_fields_set
        lake_root = self.lake.root if "lake" in explicit else str(home / "lake")
        if "://" not in lake_root:
            lake_root = str(Path(lake_root).expanduser().resolve())
        tracking = self.mlflow.tracking_uri.get_secret_value()
        artifacts = self.mlflow.artifact_root
        if "mlflow" not in explicit:
            tracking, artifacts = f"sqlite:///{home / 'mlflow.db'}", str(home / "mlartifacts")
        sqlite = "sqlite:///"
        if tracking.startswith(sqlite) and not tracking.startswith(sqlite + "/"):
            tracking = sqlite + str(Path(tracking[len(sqlite) :]).resolve())
        if "://" not in artifacts:
            artifacts = str(Path(artifacts).expanduser().resolve())
        anchor = self.security.audit_anchor
        if isinstance(anchor, FileAnchorSettings):
            anchor = anchor.model_copy(update={"path": absolute(anchor.path)})
        security = self.security.model_copy(
            update={
                "hmac_key_file": absolute(self.security.hmac_key_file),
                "audit_key_file": absolute(self.security.audit_key_file),
                "bootstrap_secret_file": absolute(self.security.bootstrap_secret_file),
                "service_secret_file": absolute(self.security.service_secret_file),
                "audit_anchor": anchor,
                "policy_file": absolute(self.security.policy_file),
                "token_file": absolute(self.security.token_file)
                if "token_file" in self.security.model_fields_set
                else home / "admin_token",
            }
        )
        online = self.online_store
        if isinstance(online, SqliteOnlineStoreSettings):
            directory = home / "online" if online.path is None else absolute(online.path)
            online = online.model_copy(update={"path": directory})
        return self.model_copy(
            update={
                "home": home,
                "lake": self.lake.model_copy(update={"root": lake_root}),
                "online_store": online,
                "mlflow": self.mlflow.model_copy(
                    update={"tracking_uri": SecretStr(tracking), "artifact_root": artifacts}
                ),
                "security": security,
                "observability": self.observability.model_copy(
                    update={"trace_dir": absolute(self.observability.trace_dir) or home / "traces"}
                ),
            }
        )

    def check_secure(self) -> None:
        """Refuse a production configuration that is insecure.

        Raises:
            ConfigError: naming every problem found.
        """
        if self.security.mode != "production":
            return
        problems: list[str] = []
        key = self.security.resolved_hmac_key()
        if key is None:
            problems.append("security.hmac_key (or hmac_key_file) is required in production")
        elif len(key) < _MIN_HMAC_KEY_BYTES:
            problems.append(f"security.hmac_key must be at least {_MIN_HMAC_KEY_BYTES} bytes")
        if self.security.policy_file is None:
            problems.append("security.policy_file is required in production")
        if self.security.resolved_service_secret() is None:
            problems.append(
                "security.service_secret (or service_secret_file) is required in production"
            )
        if os.environ.get("RAY_AUTH_MODE", "token").lower() == "disabled":
            problems.append("Ray token auth is off (RAY_AUTH_MODE=disabled)")
        if self.serve.host not in _LOOPBACK and not self.serve.tls_note:
            problems.append(
                f"serve.host={self.serve.host} is not loopback: terminate TLS in front of it "
                "and say where in serve.tls_note"
            )
        fence = self.security.network_policy
        if self.ray.dashboard_host not in _LOOPBACK and not fence:
            problems.append(
                f"ray.dashboard_host={self.ray.dashboard_host} is not loopback: the dashboard "
                "answers anyone who reaches it with a Ray token; fence it (a NetworkPolicy) "
                "and name the fence in security.network_policy, or reach it through a tunnel"
            )
        problems += wildcard_listener_problems(self.serve, os.environ)
        if self.serve.wildcard_listeners and not fence:
            problems.append(
                "serve.wildcard_listeners is on: name the fence of those listeners in "
                "security.network_policy"
            )
        exposed = self.exposed_listeners(os.environ)
        if exposed:
            problems += [
                f"{', '.join(exposed)} beyond loopback: {problem}"
                for problem in ray_tls_problems(os.environ)
            ]
        if problems:
            raise ConfigError(
                "insecure production configuration: " + "; ".join(problems),
                details={"problems": problems},
            )

    def exposed_listeners(self, environ: Mapping[str, str]) -> list[str]:
        """The listeners these settings (and Ray's environment) put beyond loopback."""
        exposed = []
        if self.serve.host not in _LOOPBACK:
            exposed.append(f"serve.host={self.serve.host}")
        if self.ray.dashboard_host not in _LOOPBACK:
            exposed.append(f"ray.dashboard_host={self.ray.dashboard_host}")
        if self.serve.grpc_port:
            exposed.append(f"the gRPC proxy (port {self.serve.grpc_port})")
        if _haproxy_on(environ) and not haproxy_fenced(environ):
            exposed.append("HAProxy's stats and metrics")
        return exposed


_RAY_TLS_FILES = ("RAY_TLS_SERVER_CERT", "RAY_TLS_SERVER_KEY", "RAY_TLS_CA_CERT")


def _haproxy_on(environ: Mapping[str, str]) -> bool:
    return environ.get("RAY_SERVE_ENABLE_HA_PROXY", "0").strip().lower() in {"1", "true"}


def haproxy_fenced(environ: Mapping[str, str]) -> bool:
    """Whether Serve's HAProxy in ``environ`` runs through entai's loopback launcher.

    A local head sets ``RAY_SERVE_HAPROXY_BINARY_PATH`` to that launcher (named
    ``HAPROXY_FENCE_NAME``), which binds HAProxy's stats and metrics pages on 127.0.0.1.
    """
    binary = environ.get("RAY_SERVE_HAPROXY_BINARY_PATH", "")
    return _haproxy_on(environ) and PurePath(binary).name == HAPROXY_FENCE_NAME


def ray_tls_problems(environ: Mapping[str, str]) -> list[str]:
    """What is missing for Ray's own traffic to be TLS (``RAY_USE_TLS`` and its files)."""
    if environ.get("RAY_USE_TLS", "0").strip().lower() not in {"1", "true"}:
        return ["Ray's TLS is off (set RAY_USE_TLS=1 with " + ", ".join(_RAY_TLS_FILES) + ")"]
    missing = [name for name in _RAY_TLS_FILES if not environ.get(name)]
    return [f"RAY_USE_TLS=1 without {', '.join(missing)}"] if missing else []


def wildcard_listener_problems(serve: ServeSettings, environ: Mapping[str, str]) -> list[str]:
    """The listeners Ray would bind on every interface that the settings did not accept.

    Ray 2.60's gRPC proxy binds ``[::]`` whatever the host; with
    ``RAY_SERVE_ENABLE_HA_PROXY=1`` HAProxy's stats (8404) and metrics (9101) pages bind
    every interface, unless a local head's launcher fences them
    (:func:`haproxy_fenced`). Each needs ``serve.wildcard_listeners: true``.
    """
    if serve.wildcard_listeners:
        return []
    problems = []
    if serve.grpc_port:
        problems.append(
            f"serve.grpc_port={serve.grpc_port}: Ray's gRPC proxy listens on every "
            "interface (it has no host option); set serve.wildcard_listeners: true to accept "
            "that behind a firewall, or leave gRPC off"
        )
    if _haproxy_on(environ) and not haproxy_fenced(environ):
        problems.append(
            "RAY_SERVE_ENABLE_HA_PROXY=1: HAProxy's stats (8404) and metrics (9101) pages "
            "listen on every interface; set serve.wildcard_listeners: true to accept that "
            "behind a firewall, or leave HAProxy off"
        )
    return problems


def check_listeners(serve: ServeSettings, environ: Mapping[str, str] | None = None) -> None:
    """Refuse to start listeners on every interface that the settings did not accept.

    Called before entai starts Serve; in every mode.

    Raises:
        ConfigError: naming each listener and the setting that accepts it.
    """
    problems = wildcard_listener_problems(serve, os.environ if environ is None else environ)
    if problems:
        raise ConfigError(
            "refusing to listen on every interface: " + "; ".join(problems),
            details={"problems": problems, "field": "serve.wildcard_listeners"},
        )


def _env_overrides(file_data: dict[str, Any]) -> dict[str, Any]:
    """File values, minus the top-level sections the environment sets (env wins)."""
    env_sections = EntaiSettings().model_dump(exclude_defaults=True)
    merged = dict(file_data)
    for key, value in env_sections.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def load_settings(**overrides: Any) -> EntaiSettings:
    """Build settings from env and overrides, turning validation errors into ConfigError."""
    try:
        return EntaiSettings(**overrides)
    except ValidationError as exc:
        fields = [".".join(str(p) for p in e["loc"]) for e in exc.errors()]
        summary = "; ".join(f"{f}: {e['msg']}" for f, e in zip(fields, exc.errors(), strict=True))
        raise ConfigError(
            f"invalid settings: {summary}",
            details={
                "errors": [
                    {"field": f, "message": e["msg"]}
                    for f, e in zip(fields, exc.errors(), strict=True)
                ]
            },
        ) from None


def check_hmac_key(key: bytes) -> bytes:
    """Return ``key`` if it is long enough to be a pseudonymisation key.

    Raises:
        ConfigError: if the key is shorter than :data:`MIN_KEY_BYTES`.
    """
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"security.hmac_key must be at least {MIN_KEY_BYTES} bytes",
            details={"field": "security.hmac_key", "min_bytes": MIN_KEY_BYTES},
        )
    return key


def resolve_hmac_key(settings: EntaiSettings) -> bytes:
    """The pseudonymisation key, from settings or the embedded default.

    Production requires ``security.hmac_key`` or ``security.hmac_key_file``. In the
    embedded mode a random key is created once under ``<home>/hmac_key`` (mode 0600)
    and reused, so pseudonyms stay stable across runs. The key is never logged.

    Raises:
        ConfigError: if no key is configured in production, or the key is too short.
    """
    configured = settings.security.resolved_hmac_key()
    if configured is not None:
        register_secret(configured)
        return check_hmac_key(configured)
    if settings.security.mode == "production":
        raise ConfigError(
            "security.hmac_key (or hmac_key_file) is required in production",
            details={"field": "security.hmac_key"},
        )
    key = _embedded_key(settings.home / "hmac_key", "HMAC key")
    register_secret(key)
    return check_hmac_key(key)


def _embedded_key(path: Path, what: str) -> bytes:
    """The random key kept in ``path`` (mode 0600), created on first use.

    The key is written whole to a temporary file first, then linked to ``path``: a
    process that finds the file (services starting together on a new home) reads the
    whole key, never a file created and not yet written.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")  # 0600
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
            try:
                os.link(temporary, path)  # atomic, and only where none exists yet
            except FileExistsError:  # another process created it first: use theirs
                pass
            else:
                logger.info(f"created the embedded {what} file", extra={"path": str(path)})
        finally:
            Path(temporary).unlink()
    return path.read_bytes().strip()


def _outside_lake(settings: EntaiSettings, path: Path, field: str) -> Path:
    """``path``, refused when it lies under a local lake root (a lake writer could reach it).

    Raises:
        ConfigError: naming ``field``.
    """
    root = settings.lake.root
    if "://" not in root and path.resolve().is_relative_to(Path(root).resolve()):
        raise ConfigError(
            f"{field} {path} is under the lake root {root}: keep it outside the lake",
            details={"field": field},
        )
    return path


def resolve_audit_key(settings: EntaiSettings, *, create: bool = True) -> bytes:
    """The audit log's key, from settings or the embedded default.

    Production requires ``security.audit_key`` or ``security.audit_key_file``. In the
    embedded mode a random key is created once under ``<home>/audit_key`` (mode 0600),
    never under the lake root, and reused. The key is never logged.

    Args:
        settings: Platform settings.
        create: Create the embedded key file when it is missing (False: refuse instead,
            e.g. to verify an exported bundle, where a new key would prove nothing).

    Raises:
        ConfigError: naming the field, when no key is configured in production (or the
            embedded file is missing and ``create`` is False), when the key is shorter
            than :data:`MIN_KEY_BYTES`, or when its file lies under the lake root.
    """
    security = settings.security
    return _secret_key(
        settings,
        "audit_key",
        security.resolved_audit_key,
        security.audit_key_file,
        create=create,
    )


def resolve_service_secret(settings: EntaiSettings) -> bytes:
    """The secret the platform's service credentials are signed with.

    Production requires ``security.service_secret`` or ``security.service_secret_file``
    (from the secret store, on every pod). In the embedded mode a random secret is
    created once under ``<home>/service_secret`` (mode 0600). Never under the lake: a
    lake reader could sign service credentials with it.

    Raises:
        ConfigError: naming the field, when none is configured in production, when it
            is shorter than :data:`MIN_KEY_BYTES`, or when its file lies under the lake.
    """
    security = settings.security
    return _secret_key(
        settings, "service_secret", security.resolved_service_secret, security.service_secret_file
    )


def _secret_key(
    settings: EntaiSettings,
    name: str,
    configured_value: Callable[[], bytes | None],
    configured_file: Path | None,
    *,
    create: bool = True,
) -> bytes:
    """``security.<name>``: configured (its file outside the lake), required in
    production, else the embedded ``<home>/<name>`` file; at least MIN_KEY_BYTES."""
    field = f"security.{name}"
    if configured_file is not None:
        _outside_lake(settings, configured_file, f"{field}_file")
    configured = configured_value()
    if configured is None and settings.security.mode == "production":
        raise ConfigError(
            f"{field} (or {name}_file) is required in production", details={"field": field}
        )
    if configured is None:
        path = _outside_lake(settings, settings.home / name, f"{field}_file")
        if not path.exists() and not create:
            raise ConfigError(
                f"no {name.replace('_', ' ')}: set {field} or {name}_file ({path} does not exist)",
                details={"field": field},
            )
        configured = _embedded_key(path, name.replace("_", " "))
    register_secret(configured)
    if len(configured) < MIN_KEY_BYTES:
        raise ConfigError(
            f"{field} must be at least {MIN_KEY_BYTES} bytes",
            details={"field": field, "min_bytes": MIN_KEY_BYTES},
        )
    return configured


def audit_anchor_store(settings: EntaiSettings) -> AnchorStore:
    """The store the audit log's anchors are kept in (``security.audit_anchor``).

    Raises:
        ConfigError: when the anchor file lies under the lake root.
    """
    # Imported here: the governance package pulls in the lake's pyarrow readers, which
    # the CLI's start-up (it imports these settings) does not need.
    from entai.shared.governance import FileAnchorStore, PostgresAnchorStore

    anchor = settings.security.audit_anchor
    if isinstance(anchor, PostgresAnchorSettings):
        return PostgresAnchorStore(
            anchor.dsn.get_secret_value(), table=anchor.table, log_id=anchor.log_id
        )
    path = anchor.path or settings.home / "audit_anchor.json"
    return FileAnchorStore(_outside_lake(settings, path, "security.audit_anchor.path"))
