"""Domain components shared by every entai service.

Nothing in this package imports ray, redis, fastapi or mlflow (an import-linter
contract enforces it), so all of it is unit-testable without a cluster.
"""
