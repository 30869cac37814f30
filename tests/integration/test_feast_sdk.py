"""Feast's own Python SDK reads entai's online features over HTTP.

Feast 0.67's ``type: remote`` online store is pointed at the running Serve application
(port 8123: the shipped graph over real governance, shard and registry actors, see
:func:`test_serve_http.deploy_platform`) and sends entai's bearer token through Feast's
client auth (``kubernetes`` with a ``user_token``, and ``oidc`` with a
``token_env_var``). Feast's dependencies clash with entai's lock, so the SDK lives in a
virtualenv of its own under the repository root (``.venv-feast/``, made by
:mod:`feast_venv` when missing, from PyPI) and runs :mod:`feast_sdk_client` as a
subprocess, once for every call of the module. What the SDK returns must equal
entai's own ``/v1/features/online`` answer for the same request, value for value.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from feast_venv import FeastVenvError, ensure_feast_venv
from test_serve_http import CATEGORIES, Platform, deploy_platform, teardown_platform

from entai.demo import features as demo
from entai.shared.features import FeatureView

pytestmark = pytest.mark.system  # boots a platform of its own: `make test-system` (CI runs it)

FEAST_SCRIPT = Path(__file__).with_name("feast_sdk_client.py")
PORT = 8123
UNKNOWN_USER = 99_999
USERS = [*range(40), UNKNOWN_USER]
ROWS = [{"user_id": u, "category": CATEGORIES[u % 3]} for u in USERS]
REFS = [
    *(f"{demo.user_stats.name}:{f.name}" for f in demo.user_stats.schema[:3]),
    *(f"{demo.user_category_stats.name}:{f.name}" for f in demo.user_category_stats.schema[3:5]),
]


@pytest.fixture(scope="session")
def feast_python() -> Path:
    """The python of ``.venv-feast`` (Feast's SDK), made when missing; fails, never skips."""
    try:
        return ensure_feast_venv()
    except FeastVenvError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="module")
def platform(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    deployed = deploy_platform(tmp_path_factory.mktemp("feast-sdk"), port=PORT, shadow=False)
    yield deployed
    teardown_platform(deployed)


def _view(view: FeatureView) -> dict[str, Any]:
    return {
        "name": view.name,
        "entities": [e.name for e in view.entities],
        "fields": [{"name": f.name, "dtype": str(f.dtype)} for f in view.schema],
        "ttl_s": None if view.ttl is None else view.ttl.total_seconds(),
    }


def _definitions() -> dict[str, Any]:
    """entai's demo definitions, for Feast's registry (Feast resolves services there)."""
    views = (demo.user_category_stats, demo.user_stats)
    return {
        "entities": [
            {"name": e.name, "join_key": e.join_keys[0], "value_type": str(e.value_type)}
            for e in (demo.user, demo.category)
        ],
        "views": [_view(v) for v in views],
        "services": [
            {"name": demo.purchase_propensity.name, "views": [v.name for v in views]},
        ],
    }


CALLS: list[dict[str, Any]] = [
    {"name": "refs", "auth": "kubernetes", "features": REFS},
    {
        "name": "full_names",
        "auth": "kubernetes",
        "features": REFS,
        "full_feature_names": True,
        "include_feature_view_version_metadata": True,
    },
    {"name": "service", "auth": "oidc", "feature_service": demo.purchase_propensity.name},
    {"name": "no_token", "auth": "none", "features": REFS[:1]},
]


@pytest.fixture(scope="module")
def feast_answers(
    feast_python: Path, platform: Platform, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """What Feast's SDK returned for each of :data:`CALLS`, by call name."""
    request = {
        "url": platform.url,
        "home": str(tmp_path_factory.mktemp("feast-repo")),
        "definitions": _definitions(),
        "calls": [{**call, "entity_rows": ROWS} for call in CALLS],
    }
    env = {**os.environ, "ENTAI_TOKEN": platform.analyst}
    done = subprocess.run(
        [str(feast_python), str(FEAST_SCRIPT)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-1000:] + done.stderr[-4000:]
    answers: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answers


def _entai(platform: Platform, body: dict[str, Any]) -> dict[str, list[Any]]:
    """entai's own answer for ``body`` over the same rows: feature name -> values."""
    entities = {k: [row[k] for row in ROWS] for k in ("user_id", "category")}
    response = httpx.post(
        f"{platform.url}/v1/features/online",
        json={**body, "entities": entities},
        headers=platform.headers(platform.analyst),
        timeout=60.0,
    )
    assert response.status_code == 200, response.text
    payload = response.json()
    names = payload["metadata"]["feature_names"]
    return {n: r["values"] for n, r in zip(names, payload["results"], strict=True)}


def _columns(answers: dict[str, Any], call: str) -> dict[str, list[Any]]:
    answer = answers[call]
    assert "columns" in answer, answer.get("error")
    columns: dict[str, list[Any]] = answer["columns"]
    return columns


def test_feature_refs_give_join_keys_first_then_entais_values(
    platform: Platform, feast_answers: dict[str, Any]
) -> None:
    columns = _columns(feast_answers, "refs")
    short = [ref.split(":", 1)[1] for ref in REFS]
    assert list(columns) == ["user_id", "category", *short]
    assert columns["user_id"] == USERS
    assert columns["category"] == [row["category"] for row in ROWS]
    assert {n: columns[n] for n in short} == _entai(platform, {"features": REFS})
    assert all(columns[n][-1] is None for n in short)  # the unknown user


def test_full_feature_names_are_feasts_and_version_metadata_is_accepted(
    platform: Platform, feast_answers: dict[str, Any]
) -> None:
    columns = _columns(feast_answers, "full_names")
    full = [ref.replace(":", "__", 1) for ref in REFS]
    assert list(columns) == ["user_id", "category", *full]
    own = _entai(platform, {"features": REFS, "full_feature_names": True})
    assert {ref: columns[ref.replace(":", "__", 1)] for ref in REFS} == own


def test_a_feature_service_reads_what_was_written(
    platform: Platform, feast_answers: dict[str, Any]
) -> None:
    columns = _columns(feast_answers, "service")
    assert list(columns) == ["user_id", "category", *demo.MODEL_FEATURES]
    features = {n: columns[n] for n in demo.MODEL_FEATURES}
    assert features == _entai(platform, {"feature_service": demo.purchase_propensity.name})
    for i, row in enumerate(ROWS[:-1]):
        written = platform.features[(row["user_id"], row["category"])].tolist()
        assert [features[n][i] for n in demo.MODEL_FEATURES] == written
    assert all(values[-1] is None for values in features.values())
    assert sum(len(v) for v in features.values()) == len(ROWS) * len(demo.MODEL_FEATURES)


def test_feast_without_a_token_is_refused(feast_answers: dict[str, Any]) -> None:
    error = feast_answers["no_token"].get("error", "")
    assert "401" in error, feast_answers["no_token"]
    assert "unauthenticated" in error
