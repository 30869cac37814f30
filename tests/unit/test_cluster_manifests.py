"""Static checks of the deployment artefacts: cluster/, the Dockerfile, the lock.

Docker and Kubernetes are not available here, so the manifests are checked the way a
reviewer would: they parse; the Serve config passes Ray's own schema and its
``import_path`` and deployments resolve; every ``entai`` command they run exists; the
image and the manifests pin the Ray version of the lock; secrets appear only as
``secretKeyRef``; the pods' environment loads into valid production settings. The
NetworkPolicies, the Secrets and every pod template are validated against Kubernetes'
own JSON schemas (kubernetes-validate, strict: unknown fields fail), and the policies
are evaluated against the traffic the platform needs and the ports it must not expose.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import shlex
import tomllib
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
KUBERAY = CLUSTER / "kuberay"
SERVE_CONFIG = CLUSTER / "serve_config.yaml"
DOCKERFILE = ROOT / "Dockerfile"
MANIFESTS = sorted(CLUSTER.rglob("*.yaml"))
ROLE_LABEL = "entai.io/role"

# Environment variables that carry secrets: each must come from a Kubernetes Secret.
SECRET_ENV = {
    "RAY_AUTH_TOKEN",
    "ENTAI_SECURITY__HMAC_KEY",
    "ENTAI_SECURITY__SERVICE_SECRET",
    "ENTAI_ONLINE_STORE__URL",
    "ENTAI_MLFLOW__TRACKING_URI",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
}
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|HMAC|_KEY(_ID)?$|CREDENTIAL|_DSN$")
# Variables that name files: the files come from a volume (checked below), not the value.
TLS_FILE_ENV = ("RAY_TLS_SERVER_CERT", "RAY_TLS_SERVER_KEY", "RAY_TLS_CA_CERT")
NETWORK_POLICIES = KUBERAY / "networkpolicies.yaml"
K8S_VERSION = "1.33"
PART_OF = {"app.kubernetes.io/part-of": "entai"}
CREDENTIAL_IN_URL = re.compile(r"://[^/\s:@]+:[^/\s@]+@")
# Placeholders a Secret's value takes the place of, for loading the pods' settings.
PLACEHOLDERS = {
    "ENTAI_SECURITY__HMAC_KEY": "k" * 32,
    "ENTAI_SECURITY__SERVICE_SECRET": "s" * 32,
    "ENTAI_ONLINE_STORE__URL": "redis://redis.entai.svc:6379/0",
    "ENTAI_MLFLOW__TRACKING_URI": "postgresql://pg.entai.svc:5432/mlflow",
}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def walk(node: Any) -> Iterator[Any]:
    """Every mapping, list and scalar inside ``node``."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def containers(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every container of every pod template in a manifest."""
    for node in walk(doc):
        if isinstance(node, dict) and isinstance(node.get("containers"), list):
            yield from node["containers"]


def cluster_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The RayCluster specs a KubeRay manifest carries (one for each kind we use)."""
    kind, spec = doc["kind"], doc["spec"]
    return {
        "RayCluster": [spec],
        "RayService": [spec.get("rayClusterConfig")],
        "RayJob": [spec.get("rayClusterSpec")],
    }.get(kind, [])


def kuberay_docs() -> list[dict[str, Any]]:
    return [load(KUBERAY / f"{name}.yaml") for name in ("raycluster", "rayservice", "rayjob")]


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            pins[name.lower()] = version.strip()
    return pins


def embedded_serve_config() -> dict[str, Any]:
    service = load(KUBERAY / "rayservice.yaml")
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert isinstance(config, dict)
    return config


def serve_configs() -> list[tuple[str, dict[str, Any]]]:
    configs = [("rayservice.yaml serveConfigV2", embedded_serve_config())]
    if SERVE_CONFIG.exists():
        configs.append(("cluster/serve_config.yaml", load(SERVE_CONFIG)))
    return configs


# --- every manifest parses -------------------------------------------------------


def test_every_manifest_parses_to_mappings() -> None:
    expected = {
        "raycluster", "rayservice", "rayjob", "secrets.example", "launcher", "networkpolicies",
    }  # fmt: skip
    assert expected <= {p.name.removesuffix(".yaml") for p in MANIFESTS}
    for path in MANIFESTS:
        docs = list(yaml.safe_load_all(path.read_text()))
        assert docs, path
        assert all(isinstance(d, dict) and d for d in docs), path


def test_kuberay_manifests_are_ray_io_v1_with_autoscaling_roles() -> None:
    for doc in kuberay_docs():
        assert doc["apiVersion"] == "ray.io/v1"
        for spec in cluster_specs(doc):
            assert spec["enableInTreeAutoscaling"] is True, doc["kind"]
            for group in spec["workerGroupSpecs"]:
                assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
                assert group["maxReplicas"] > group["minReplicas"], group["groupName"]
    groups = {
        g["groupName"]: g for g in load(KUBERAY / "raycluster.yaml")["spec"]["workerGroupSpecs"]
    }
    assert {"shard", "serve"} <= {g["labels"][ROLE_LABEL] for g in groups.values()}


def test_node_roles_are_roles_that_placement_knows() -> None:
    from entai.actors.core import Role

    roles: list[str] = []
    for doc in kuberay_docs():
        for spec in cluster_specs(doc):
            groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
            roles += [g["labels"][ROLE_LABEL] for g in groups]
    launcher = load(CLUSTER / "launcher.yaml")
    roles += [t["labels"][ROLE_LABEL] for t in launcher["available_node_types"].values()]
    assert roles
    assert set(roles) <= set(typing.get_args(Role))


def test_rayservice_carries_the_raycluster_spec_and_an_incremental_upgrade() -> None:
    cluster = load(KUBERAY / "raycluster.yaml")
    service = load(KUBERAY / "rayservice.yaml")
    assert service["spec"]["rayClusterConfig"] == cluster["spec"]
    strategy = service["spec"]["upgradeStrategy"]
    assert strategy["type"] == "NewClusterWithIncrementalUpgrade"
    options = strategy["clusterUpgradeOptions"]
    assert options["gatewayClassName"]
    assert 0 < options["stepSizePercent"] <= options["maxSurgePercent"] <= 100
    assert options["intervalSeconds"] > 0


# --- the Serve config ------------------------------------------------------------


@pytest.mark.parametrize("where", ["embedded", "file"])
def test_serve_config_passes_rays_own_schema(where: str) -> None:
    from ray.serve.schema import ServeDeploySchema

    if where == "file" and not SERVE_CONFIG.exists():
        pytest.fail("cluster/serve_config.yaml is missing", pytrace=False)
    config = embedded_serve_config() if where == "embedded" else load(SERVE_CONFIG)
    schema = ServeDeploySchema.model_validate(config)
    assert schema.applications


def test_rayservice_embeds_serve_config_yaml_but_listens_on_the_pod_address() -> None:
    embedded = embedded_serve_config()
    assert embedded["http_options"]["host"] == "0.0.0.0"
    if SERVE_CONFIG.exists():
        source = load(SERVE_CONFIG)
        source["http_options"] = {**source.get("http_options", {}), "host": "0.0.0.0"}
        assert embedded == source, "rayservice.yaml serveConfigV2 drifted from serve_config.yaml"


def test_every_import_path_builds_its_application_with_the_configured_deployments() -> None:
    from ray.serve import Application
    from ray.serve._private.build_app import build_app as build_serve_app

    for where, config in serve_configs():
        for app_config in config["applications"]:
            module_name, _, attr = app_config["import_path"].partition(":")
            assert attr, f"{where}: import_path needs module:attribute"
            target = getattr(importlib.import_module(module_name), attr)
            if isinstance(target, Application):
                app = target
            else:  # an application builder: its one parameter types the config's args
                param = next(iter(inspect.signature(target).parameters))
                args_model = typing.get_type_hints(target)[param]
                app = target(args_model.model_validate(app_config.get("args", {})))
            assert isinstance(app, Application), where
            built = build_serve_app(app, name=app_config["name"])
            names = {d.name for d in built.deployments}
            configured = {d["name"] for d in app_config.get("deployments", [])}
            assert configured <= names, f"{where}: {configured - names} not in the app"


# KubeRay builds the head Service from the head container's named ports and the serve
# Service (and the RayService Gateway) from the one port named `serve`: a proxy port that
# is not a named containerPort of every pod running a proxy is unreachable in-cluster.
SERVE_PORT_NAME = "serve"
K8S_PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")


def named_ports(container: dict[str, Any]) -> dict[int, str]:
    """``containerPort -> name`` of a container; fails on unnamed or clashing ports."""
    ports: dict[int, str] = {}
    for port in container.get("ports", []):
        name = port.get("name", "")
        assert K8S_PORT_NAME.match(name), f"{container['name']}: bad port name {name!r}"
        assert port["containerPort"] not in ports, f"{container['name']}: port declared twice"
        ports[port["containerPort"]] = name
    assert len(set(ports.values())) == len(ports), f"{container['name']}: duplicate names"
    return ports


def proxy_port_problems(spec: dict[str, Any], serve_config: dict[str, Any]) -> list[str]:
    """What keeps the Serve proxies of ``serve_config`` unreachable on a cluster ``spec``.

    The proxies run on the head (``HeadOnly``) or on every node; each of those pods'
    Ray container (index 0, the one KubeRay reads) must name the HTTP port ``serve`` and
    expose the gRPC port under a name of its own.
    """
    http_port = serve_config.get("http_options", {}).get("port", 8000)
    grpc_port = serve_config.get("grpc_options", {}).get("port")
    groups = {"head": spec["headGroupSpec"]}
    if serve_config.get("proxy_location", "EveryNode") != "HeadOnly":
        groups |= {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    problems = []
    for group, body in groups.items():
        ports = named_ports(body["template"]["spec"]["containers"][0])
        if ports.get(http_port) != SERVE_PORT_NAME:
            problems.append(f"{group}: HTTP port {http_port} is not named {SERVE_PORT_NAME!r}")
        if grpc_port is not None and ports.get(grpc_port, SERVE_PORT_NAME) == SERVE_PORT_NAME:
            problems.append(f"{group}: gRPC port {grpc_port} is not exposed under a name")
    return problems


def test_every_serve_proxy_port_is_a_named_port_of_the_pods_that_run_a_proxy() -> None:
    specs = {
        "raycluster.yaml": load(KUBERAY / "raycluster.yaml")["spec"],
        "rayservice.yaml": load(KUBERAY / "rayservice.yaml")["spec"]["rayClusterConfig"],
    }
    for where, config in serve_configs():
        assert config["grpc_options"]["port"], where
        for name, spec in specs.items():
            assert proxy_port_problems(spec, config) == [], f"{name} with {where}"


def test_the_port_check_finds_a_missing_grpc_port_and_proxies_on_workers() -> None:
    config = load(SERVE_CONFIG)
    spec = load(KUBERAY / "raycluster.yaml")["spec"]
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    grpc_port = config["grpc_options"]["port"]
    head["ports"] = [p for p in head["ports"] if p["containerPort"] != grpc_port]
    assert proxy_port_problems(spec, config) == [
        f"head: gRPC port {grpc_port} is not exposed under a name"
    ]
    every_node = {**config, "proxy_location": "EveryNode"}
    problems = proxy_port_problems(load(KUBERAY / "raycluster.yaml")["spec"], every_node)
    assert {p.split(":")[0] for p in problems} == {g["groupName"] for g in spec["workerGroupSpecs"]}


# --- the commands the manifests run ----------------------------------------------


def entai_commands() -> list[tuple[str, list[str]]]:
    """Every ``entai ...`` command line the manifests and the image run."""
    commands = []
    job = load(KUBERAY / "rayjob.yaml")
    commands.append(("rayjob entrypoint", shlex.split(job["spec"]["entrypoint"])))
    for doc in kuberay_docs():  # init containers run the image's entrypoint, `entai`
        for node in walk(doc):
            if isinstance(node, dict) and isinstance(node.get("initContainers"), list):
                for init in node["initContainers"]:
                    commands.append((f"{doc['kind']} {init['name']}", ["entai", *init["args"]]))
    launcher = load(CLUSTER / "launcher.yaml")
    for node in walk(launcher):
        if isinstance(node, str) and re.search(r"(^|[\s;&|])entai\s", node):
            for part in re.split(r"&&|;|\|", node):
                words = shlex.split(part)
                if words and words[0] == "entai":
                    commands.append(("launcher", words))
    return commands


def resolve_command(words: list[str]) -> None:
    """Fail unless ``words`` parse as a real ``entai`` command with its required inputs.

    The command line goes through the command's own parser (so an unknown option, an
    option given to the wrong parameter or a missing required one fails), without
    converting values: the files it names exist only inside the pods.
    """
    import typer.main
    from typer.exceptions import TyperException

    from entai.cli import app

    assert words[0] == "entai"
    command: Any = typer.main.get_command(app)
    rest = words[1:]
    while rest and not rest[0].startswith("-") and getattr(command, "commands", None):
        name = rest.pop(0)
        assert name in command.commands, f"`entai {name}` is not a command ({' '.join(words)})"
        command = command.commands[name]
    assert not getattr(command, "commands", None), f"{' '.join(words)} names a group"
    parser = command.make_parser(command.context_class(command, info_name=command.name))
    try:
        given, extra, _ = parser.parse_args(args=list(rest))
    except TyperException as exc:  # the CLI's usage error: unknown option, missing value
        raise AssertionError(f"{' '.join(words)}: {exc}") from None
    assert not extra, f"{' '.join(words)}: unexpected arguments {extra}"
    missing = [p.opts[0] for p in command.params if p.required and p.name not in given]
    assert not missing, f"{' '.join(words)}: missing required {missing}"


def test_rayjob_entrypoint_is_entai_train() -> None:
    job = load(KUBERAY / "rayjob.yaml")
    assert shlex.split(job["spec"]["entrypoint"])[:2] == ["entai", "train"]


def test_every_entai_command_in_the_manifests_exists() -> None:
    commands = entai_commands()
    assert commands
    for where, words in commands:
        try:
            resolve_command(words)
        except AssertionError as exc:
            raise AssertionError(f"{where}: {exc}") from None


def test_image_entrypoint_is_the_entai_console_script() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r'^ENTRYPOINT \["entai"\]$', text, re.M)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module_name, _, attr = scripts["entai"].partition(":")
    assert callable(getattr(importlib.import_module(module_name), attr))


# --- pins ----------------------------------------------------------------------


def test_the_image_installs_the_lock_and_the_manifests_pin_its_ray_version() -> None:
    import ray

    ray_pin = lock_pins()["ray"]
    assert ray.__version__ == ray_pin  # the tests ran against the lock
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(
        re.fullmatch(rf"ray\[[^]]*\]=={re.escape(ray_pin)}", d) for d in project["dependencies"]
    )

    text = DOCKERFILE.read_text()
    assert re.search(r"^COPY .*\bconstraints\.txt\b", text, re.M)
    assert re.search(r"^RUN pip install -c constraints\.txt \.", text, re.M)
    base = re.search(r"^FROM (\S+)", text, re.M)
    assert base is not None
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base[1]), base[1]
    assert ">=3.11,<3.12" in project["requires-python"]

    images: set[str] = set()
    for doc in kuberay_docs():
        for spec in cluster_specs(doc):
            assert spec["rayVersion"] == ray_pin, doc["kind"]
        images |= {c["image"] for c in containers(doc)}
    assert images
    for image in images:
        tag = re.search(r"-ray(\d+\.\d+\.\d+)\b", image.rsplit(":", 1)[-1])
        assert tag is not None and tag[1] == ray_pin, image


def test_launcher_matches_rays_schema_and_installs_the_lock() -> None:
    import jsonschema
    import ray.autoscaler

    launcher = load(CLUSTER / "launcher.yaml")
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(launcher, schema)
    assert launcher["initialization_commands"] == []
    assert any("-c ~/entai/constraints.txt ~/entai" in c for c in launcher["setup_commands"])
    assert launcher["file_mounts"]["~/entai"] == "."


# --- secrets -------------------------------------------------------------------


def is_secret_env(node: Any) -> bool:
    """Whether ``node`` is an env entry (name + value/valueFrom) that names a secret."""
    if not (isinstance(node, dict) and "name" in node):
        return False
    if "value" not in node and "valueFrom" not in node:
        return False
    if node["name"] in TLS_FILE_ENV:
        return False
    return node["name"] in SECRET_ENV or bool(SECRET_NAME.search(node["name"]))


def test_no_manifest_holds_a_secret_value() -> None:
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc.get("kind") == "Secret":
                assert set(doc["stringData"].values()) == {"REPLACE_ME"}, path
                assert "data" not in doc, path
                continue
            for node in walk(doc):
                if isinstance(node, str):
                    assert not CREDENTIAL_IN_URL.search(node), f"{path}: credential in a URL"
                if is_secret_env(node):
                    assert "value" not in node, f"{path}: {node['name']} is inline"
                    assert set(node["valueFrom"]) == {"secretKeyRef"}, path


def test_pods_take_the_platform_secrets_from_the_example_secrets() -> None:
    declared = {
        (d["metadata"]["name"], key)
        for d in yaml.safe_load_all((KUBERAY / "secrets.example.yaml").read_text())
        for key in d["stringData"]
    }
    for doc in kuberay_docs():
        for container in containers(doc):
            env = {e["name"]: e for e in container["env"]}
            assert env["RAY_AUTH_MODE"]["value"] == "token", container["name"]
            needed = {"RAY_AUTH_TOKEN"}
            if container["name"] != "ray-job-submitter":
                needed |= {"ENTAI_SECURITY__HMAC_KEY", "ENTAI_MLFLOW__TRACKING_URI"}
            assert needed <= set(env), (doc["kind"], container["name"])
            for entry in env.values():
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert (ref["name"], ref["key"]) in declared, ref


def test_the_dockerfile_runs_as_a_user_and_bakes_in_no_secret() -> None:
    text = DOCKERFILE.read_text()
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in {"root", "0", "0:0"}
    for name in re.findall(r"^(?:ENV|ARG)\s+(.*)$", text, re.M):
        assert not SECRET_NAME.search(name.split("=")[0]), name
    assert "secrets.yaml" in (ROOT / ".dockerignore").read_text()


def test_the_pods_environment_is_a_valid_production_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from entai.shared.settings import load_settings

    for doc in kuberay_docs():
        for container in containers(doc):
            env = {e["name"]: e for e in container["env"]}
            if not any(name.startswith("ENTAI_") for name in env):
                continue
            monkeypatch.delenv("ENTAI_HOME", raising=False)
            for name, entry in env.items():  # the whole environment: Ray's TLS, HAProxy...
                monkeypatch.setenv(name, entry.get("value", PLACEHOLDERS.get(name, "x")))
            settings = load_settings()
            settings.check_secure()
            assert settings.security.mode == "production"
            assert "://" in settings.lake.root and "://" in settings.mlflow.artifact_root
            if "ENTAI_ONLINE_STORE__URL" in env:
                assert settings.online_store.type == "redis"
            for name in env:
                monkeypatch.delenv(name)


# --- placement -----------------------------------------------------------------


def test_role_options_prefer_the_role_and_fall_back_to_any_node() -> None:
    from ray._private.label_utils import validate_fallback_strategy, validate_label_selector

    from entai.actors.core import ROLE_LABEL as LABEL
    from entai.actors.core import role_options
    from entai.shared.core import InvalidInputError

    options = role_options("shard")
    assert options["label_selector"] == {LABEL: "shard"} and LABEL == ROLE_LABEL
    assert validate_label_selector(options["label_selector"]) is None
    assert validate_fallback_strategy(options["fallback_strategy"]) is None
    assert "fallback_strategy" not in role_options("serve", strict=True)
    with pytest.raises(InvalidInputError, match="gpu"):
        role_options("gpu")  # type: ignore[arg-type]


def test_the_long_lived_clusters_keep_their_gcs_in_redis_with_a_secret_password() -> None:
    declared = {
        (d["metadata"]["name"], key)
        for d in yaml.safe_load_all((KUBERAY / "secrets.example.yaml").read_text())
        for key in d["stringData"]
    }
    for name in ("raycluster", "rayservice"):
        (spec,) = cluster_specs(load(KUBERAY / f"{name}.yaml"))
        ft = spec["gcsFaultToleranceOptions"]
        host, _, port = ft["redisAddress"].rpartition(":")
        assert host and port.isdigit(), (name, ft["redisAddress"])
        ref = ft["redisPassword"]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) in declared, (name, ref)


def test_clusters_that_serve_run_haproxy_ingress_on_every_node() -> None:
    from entai.actors.core import HAPROXY_SERVE_ENV

    serve_env = HAPROXY_SERVE_ENV  # what a local head runs is what the manifests set
    for name in ("raycluster", "rayservice"):
        pods = list(containers(load(KUBERAY / f"{name}.yaml")))
        assert len(pods) >= 2, name
        for container in pods:
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert {k: env.get(k) for k in serve_env} == serve_env, (name, container["name"])
    launcher = load(CLUSTER / "launcher.yaml")
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = " ".join(launcher[key])
        exported = start.split("&& export ", 1)[1].split("&&", 1)[0].split()
        assert {f"{k}={v}" for k, v in serve_env.items()} <= set(exported), key


def test_serve_replicas_ask_for_the_serve_nodes_and_fall_back_to_any() -> None:
    from entai.actors.core import role_options

    for where, config in (
        ("serve_config.yaml", load(SERVE_CONFIG)),
        ("rayservice.yaml", embedded_serve_config()),
    ):
        for deployment in config["applications"][0]["deployments"]:
            options = deployment["ray_actor_options"]
            placement = {k: options[k] for k in ("label_selector", "fallback_strategy")}
            assert placement == role_options("serve"), (where, deployment["name"])


# --- Kubernetes schemas, NetworkPolicies, Ray TLS ------------------------------------


def pod_templates() -> list[tuple[str, dict[str, Any]]]:
    """Every pod template of the KubeRay manifests (head, worker groups, submitter)."""
    templates = []
    for doc in kuberay_docs():
        for spec in cluster_specs(doc):
            templates.append((f"{doc['kind']} head", spec["headGroupSpec"]["template"]))
            for group in spec["workerGroupSpecs"]:
                templates.append((f"{doc['kind']} {group['groupName']}", group["template"]))
        if doc["kind"] == "RayJob":
            templates.append(("RayJob submitter", doc["spec"]["submitterPodTemplate"]))
    return templates


def policies() -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(NETWORK_POLICIES.read_text()))


def test_policies_secrets_and_pod_templates_pass_the_kubernetes_schemas() -> None:
    import kubernetes_validate

    docs = [*policies(), *yaml.safe_load_all((KUBERAY / "secrets.example.yaml").read_text())]
    assert {d["kind"] for d in docs} == {"NetworkPolicy", "Secret"}
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    for where, template in pod_templates():
        wrapped = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": "entai"},
            "template": template,
        }
        try:
            kubernetes_validate.validate(wrapped, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{where}: {exc.message}") from None


def test_the_schema_check_catches_a_misspelt_policy_field() -> None:
    import kubernetes_validate

    policy = policies()[0]
    policy["spec"]["policyType"] = policy["spec"].pop("policyTypes")
    with pytest.raises(kubernetes_validate.ValidationError, match="policyType"):
        kubernetes_validate.validate(policy, K8S_VERSION, strict=True)


def _labels_match(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    assert set(selector or {}) <= {"matchLabels"}, "only matchLabels is evaluated here"
    wanted = (selector or {}).get("matchLabels", {})
    return all(labels.get(k) == v for k, v in wanted.items())


def _peer_matches(peer: dict[str, Any], source: dict[str, Any]) -> bool:
    if "ipBlock" in peer:
        import ipaddress

        ip = source.get("ip")
        return ip is not None and ipaddress.ip_address(ip) in ipaddress.ip_network(
            peer["ipBlock"]["cidr"]
        )
    if "ip" in source and "pod" not in source:
        return False  # an address outside the cluster is no pod
    if "namespaceSelector" in peer:
        if not _labels_match(peer["namespaceSelector"], source["ns"]):
            return False
    elif source["ns"] != NAMESPACE:
        return False  # a podSelector alone means this namespace
    return _labels_match(peer.get("podSelector"), source.get("pod", {}))


NAMESPACE = {"kubernetes.io/metadata.name": "entai"}


def allowed(
    direction: str, pod: dict[str, str], peer: dict[str, Any], port: int, protocol: str = "TCP"
) -> bool:
    """NetworkPolicy semantics for the fields these policies use: is the connection
    allowed (``ingress``: from ``peer`` to ``pod``; ``egress``: from ``pod`` to ``peer``)?"""
    kind, key, peers_key = {
        "ingress": ("Ingress", "ingress", "from"),
        "egress": ("Egress", "egress", "to"),
    }[direction]
    applying = [
        p["spec"]
        for p in policies()
        if _labels_match(p["spec"]["podSelector"], pod) and kind in p["spec"]["policyTypes"]
    ]
    if not applying:
        return True
    for spec in applying:
        for rule in spec.get(key, []):
            peers = rule.get(peers_key)
            ports = rule.get("ports")
            peer_ok = peers is None or any(_peer_matches(p, peer) for p in peers)
            port_ok = ports is None or any(
                p.get("port") == port and p.get("protocol", "TCP") == protocol for p in ports
            )
            if peer_ok and port_ok:
                return True
    return False


def test_every_entai_pod_is_selected_by_the_default_deny() -> None:
    (deny,) = [p for p in policies() if p["metadata"]["name"] == "entai-default-deny"]
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    for where, template in pod_templates():
        labels = template.get("metadata", {}).get("labels", {})
        assert _labels_match(deny["spec"]["podSelector"], labels), where


def test_the_policies_open_what_the_platform_needs_and_nothing_else() -> None:
    head = {**PART_OF, "ray.io/node-type": "head"}
    worker = {**PART_OF, "ray.io/node-type": "worker"}
    other_ns = {"kubernetes.io/metadata.name": "gateways"}
    gateway = {"ns": other_ns, "pod": {"entai.io/ingress": "true"}}
    stranger = {"ns": NAMESPACE, "pod": {"app": "something-else"}}
    operator = {"ns": {"kubernetes.io/metadata.name": "ray-system"},
                "pod": {"app.kubernetes.io/name": "kuberay-operator"}}  # fmt: skip
    prometheus = {"ns": {"kubernetes.io/metadata.name": "monitoring"},
                  "pod": {"app.kubernetes.io/name": "prometheus"}}  # fmt: skip
    internet = {"ip": "203.0.113.9"}
    # serve ingress: the labelled gateway only, on the proxy ports only
    for port in (8000, 9000):
        assert allowed("ingress", head, gateway, port)
        assert allowed("ingress", worker, gateway, port)  # HAProxy runs on every node
        assert not allowed("ingress", head, stranger, port)
    assert not allowed("ingress", head, gateway, 8265)
    # head <-> workers: every port (GCS, raylets, object transfer, workers)
    for port in (6379, 8076, 10001, 12345, 52365):
        assert allowed("ingress", head, {"ns": NAMESPACE, "pod": worker}, port)
        assert allowed("egress", worker, {"ns": NAMESPACE, "pod": head}, port)
    # the operator reaches the head's dashboard and agent, not the workers or the GCS
    assert allowed("ingress", head, operator, 8265) and allowed("ingress", head, operator, 52365)
    assert not allowed("ingress", worker, operator, 8265)
    assert not allowed("ingress", head, operator, 6379)
    # Prometheus scrapes Ray's and HAProxy's metrics; nobody gets HAProxy's stats page
    assert allowed("ingress", worker, prometheus, 8080) and allowed(
        "ingress", head, prometheus, 9101
    )
    for source in (gateway, stranger, operator, prometheus):
        assert not allowed("ingress", head, source, 8404)
        assert not allowed("ingress", head, source, 10001)  # Ray client
    # egress: DNS, the stores at the ports the manifests name, HTTPS; nothing else out
    dns = {"ns": {"kubernetes.io/metadata.name": "kube-system"}, "pod": {"k8s-app": "kube-dns"}}
    assert allowed("egress", worker, dns, 53, "UDP")
    redis = {"ns": NAMESPACE, "pod": {"app.kubernetes.io/name": "redis"}}
    (cluster,) = cluster_specs(load(KUBERAY / "raycluster.yaml"))
    gcs_port = int(cluster["gcsFaultToleranceOptions"]["redisAddress"].rpartition(":")[2])
    for port in (gcs_port, 6380):  # the GCS's tables; the online store (rediss, secrets example)
        assert allowed("egress", head, redis, port)
    postgres = {"ns": NAMESPACE, "pod": {"app.kubernetes.io/name": "postgresql"}}
    assert allowed("egress", worker, postgres, 5432)
    assert not allowed("egress", worker, postgres, 6379)
    assert allowed("egress", worker, internet, 443)
    assert not allowed("egress", worker, internet, 80)
    assert not allowed("egress", worker, internet, 6379)


def test_every_ray_pod_runs_ray_over_tls_with_a_certificate_from_the_ca_secret() -> None:
    declared = {
        d["metadata"]["name"]: set(d["stringData"])
        for d in yaml.safe_load_all((KUBERAY / "secrets.example.yaml").read_text())
    }
    for where, template in pod_templates():
        if where == "RayJob submitter":  # it talks HTTP to the dashboard, not Ray's gRPC
            continue
        spec = template["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        (init,) = spec["initContainers"]
        init_mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
        words = ["entai", *init["args"]]
        assert words[1:3] == ["tls", "node-cert"], where
        out = words[words.index("--out") + 1]
        ca_dir = words[words.index("--ca-dir") + 1]
        # the CA comes from the Secret, read-only, into the init container only
        (ca_volume,) = [n for n, path in init_mounts.items() if path == ca_dir]
        secret = volumes[ca_volume]["secret"]["secretName"]
        assert {"ca.crt", "ca.key"} <= declared[secret], where
        (tls_volume,) = [n for n, path in init_mounts.items() if path == out]
        assert volumes[tls_volume]["emptyDir"]["medium"] == "Memory", where
        for container in spec["containers"]:
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert env["RAY_USE_TLS"] == "1", where
            mounts = {m["name"]: m for m in container["volumeMounts"]}
            assert ca_volume not in mounts, f"{where}: the CA key reaches {container['name']}"
            assert mounts[tls_volume]["readOnly"] is True
            files = {
                "RAY_TLS_SERVER_CERT": "tls.crt",
                "RAY_TLS_SERVER_KEY": "tls.key",
                "RAY_TLS_CA_CERT": "ca.crt",
            }  # what `entai tls node-cert` writes
            for name, file in files.items():
                assert env[name] == f"{mounts[tls_volume]['mountPath']}/{file}", (where, name)


def test_check_secure_sees_the_listeners_the_manifests_really_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from entai.shared.core import ConfigError
    from entai.shared.settings import load_settings

    serve = embedded_serve_config()
    for doc in kuberay_docs():
        for spec in cluster_specs(doc):
            head = spec["headGroupSpec"]
            (container,) = head["template"]["spec"]["containers"]
            env = {e["name"]: e for e in container["env"]}
            values = {k: e.get("value", PLACEHOLDERS.get(k, "x")) for k, e in env.items()}
            assert values["ENTAI_RAY__DASHBOARD_HOST"] == head["rayStartParams"]["dashboard-host"]
            if doc["kind"] != "RayJob":  # the clusters that serve
                assert values["ENTAI_SERVE__HOST"] == serve["http_options"]["host"]
                assert int(values["ENTAI_SERVE__GRPC_PORT"]) == serve["grpc_options"]["port"]
            assert (
                values["ENTAI_SECURITY__NETWORK_POLICY"] == "cluster/kuberay/networkpolicies.yaml"
            )
            assert (ROOT / values["ENTAI_SECURITY__NETWORK_POLICY"]).exists()
            for name, value in values.items():
                monkeypatch.setenv(name, value)
            load_settings().check_secure()
            # without the fence, or without Ray's TLS, the same pods are refused
            for drop, named in (
                ("ENTAI_SECURITY__NETWORK_POLICY", "security.network_policy"),
                ("RAY_USE_TLS", "Ray's TLS is off"),
            ):
                monkeypatch.delenv(drop)
                with pytest.raises(ConfigError, match=re.escape(named)):
                    load_settings().check_secure()
                monkeypatch.setenv(drop, values[drop])
            for name in values:
                monkeypatch.delenv(name)
