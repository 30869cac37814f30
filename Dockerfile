# The entai image: one image for the Ray head, workers, Serve replicas and RayJob pods.
#
#   docker build -t registry.example.com/entai/entai:0.1.0-ray2.60.0-py3.11 .
#
# Pinned: the base image by its full version tag (pin the digest too in your registry
# mirror: FROM python:3.11.14-slim-bookworm@sha256:...), and every Python package by the
# project's lock (pip's -c constraints.txt), so the image runs exactly what the tests ran.
# Tag the image with the Ray version it carries; the KubeRay manifests' rayVersion and
# image tag must agree with constraints.txt (tests/unit/test_cluster_manifests.py).
# No secrets are baked in: tokens, keys and DSNs arrive at run time from Kubernetes
# Secrets as environment variables. The container runs as an unprivileged user.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RAY_USAGE_STATS_ENABLED=0

# wget: KubeRay's default readiness/liveness probes call the raylet's health endpoint.
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 entai \
    && useradd --uid 1000 --gid entai --create-home --shell /bin/bash entai

WORKDIR /opt/entai
COPY constraints.txt pyproject.toml README.md ./
COPY entai ./entai
RUN pip install -c constraints.txt . && rm -rf /opt/entai/build

USER entai
WORKDIR /home/entai
ENTRYPOINT ["entai"]
CMD ["--help"]
