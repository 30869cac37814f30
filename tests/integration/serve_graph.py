"""The entai Serve graph with Serve deployment options set by a test.

:func:`entai.deployments.app.build_app` takes replica counts from
:class:`~entai.deployments.app.AppArgs` and leaves every other deployment option to
the decorators or a config file. Tests that place replicas on a node role or autoscale
them with short delays need more: :func:`options_app` builds the same graph (the
Ingress alone when it scores, else Ingress -> Model) with the given ``options`` on
every deployment, as a config file's ``deployments:`` overrides would.
"""

from __future__ import annotations

from typing import Any, cast

from ray.serve import Application, Deployment

from entai.deployments.app import AppArgs, Ingress, Model

__all__ = ["options_app"]


def options_app(args: AppArgs, **options: Any) -> Application:
    """``build_app(args)``'s graph with ``Deployment.options(**options)`` on each deployment.

    ``ray_actor_options`` replaces the decorator's, so give ``num_cpus`` again.
    """
    ingress = cast("Deployment", Ingress).options(**options)
    if args.score_in_ingress:
        return ingress.bind(None, args)
    model = cast("Deployment", Model).options(**options)
    return ingress.bind(model.bind(args), args)
