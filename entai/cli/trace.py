"""``entai trace REQUEST_ID``: one request's spans, across the platform's processes, as a tree.

It reads the local trace files (``observability.trace_dir``, default ``<home>/traces``)
that traced processes write when no OTLP endpoint is configured; with one, the spans
are in that backend and the command says so.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text
from rich.tree import Tree

from entai.cli._app import ConfigOption, app, console, settings_from
from entai.shared.core import ConfigError, NotFoundError, SpanNode, read_trace, span_tree

__all__ = ["render_trace", "trace"]


def _label(node: SpanNode, root_start_ns: int) -> Text:
    s = node.span
    label = Text(s.name, style="bold red" if s.status == "ERROR" else "bold")
    label.append(f"  {s.duration_ms:.2f} ms", style="cyan")
    label.append(f"  +{(s.start_ns - root_start_ns) / 1e6:.2f} ms", style="dim")
    label.append(f"  [{s.service}]", style="green")
    if s.links:
        label.append(f"  links {len(s.links)}", style="dim")
    return label


def render_trace(nodes: list[SpanNode]) -> list[Tree]:
    """One rich tree per root span: name, duration, start offset from the first root,
    the process kind that recorded it."""
    first = min(n.span.start_ns for n in nodes)

    def grow(branch: Tree, node: SpanNode) -> Tree:
        for child in node.children:
            grow(branch.add(_label(child, first)), child)
        return branch

    return [grow(Tree(_label(root, first)), root) for root in nodes]


@app.command("trace")
def trace(
    request_id: Annotated[str, typer.Argument(help="The request id (X-Request-ID header).")],
    config: ConfigOption = None,
) -> list[SpanNode]:
    """Print one request's span tree with durations (from the local trace files)."""
    settings = settings_from(config)
    observability = settings.observability
    if observability.otlp_endpoint is not None:
        raise ConfigError(
            f"spans are exported to {observability.otlp_endpoint}: look request "
            f"{request_id} up there (entai trace reads local trace files only)",
            details={"otlp_endpoint": observability.otlp_endpoint},
        )
    trace_dir = observability.trace_dir or settings.home / "traces"
    spans = read_trace(trace_dir, request_id)
    if not spans:
        hint = "" if observability.tracing else " (observability.tracing is off)"
        raise NotFoundError(
            f"no spans for request {request_id} in {trace_dir}{hint}",
            details={"request_id": request_id, "trace_dir": str(trace_dir)},
        )
    nodes = span_tree(spans)
    for tree in render_trace(nodes):
        console.print(tree)
    return nodes
