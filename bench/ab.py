"""A/B of two revisions on the same machine minutes: each bench alternates old and new.

    .venv/bin/python bench/ab.py OLD NEW [--benches online_read,capacity,ingest]
                                         [--rounds 3] [--small] [--bench-args "..."]

Each revision is checked out in a detached git worktree (removed afterwards) and runs
its own copy of each bench script, with ``PYTHONPATH`` set to that worktree so the
script imports that revision's entai; both use this checkout's virtualenv. A round runs
every bench once per revision, the order of the two revisions swapped every round, so
neither always runs first on a warmer or quieter machine.

Every bench already runs entai beside its reference in one process and reports
``ratio`` = entai's cost over the reference's; comparing ratios (rather than raw
seconds) takes out most of what the machine's load does to both sides. Per bench, the
figure kept for a revision is the median of its rounds' ratios; ``change`` = new's over
old's (1.0: unchanged; above: new is slower). The last line is a JSON object whose
``ratio`` is the geometric mean of the benches' ``change`` (lower is better, 1.0 is
parity between the revisions).

``--bench-args`` passes the same arguments to every run (both revisions' scripts must
accept them), e.g. one serving configuration instead of ``bench/serve.py``'s nine:
``--benches serve --bench-args "--modes haproxy --stores redis --scoring ingress --seconds 15"``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_TIMEOUT_S = 1_800


def _worktree(rev: str, parent: Path) -> Path:
    path = parent / rev.replace("/", "_")
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), rev],
        check=True,
    )
    return path


def _run(tree: Path, bench: str, small: bool, extra: list[str]) -> dict[str, Any]:
    """One run of ``tree``'s ``bench/<bench>.py``: its last line, parsed."""
    env = {**os.environ, "PYTHONPATH": str(tree), "RAY_USAGE_STATS_ENABLED": "0"}
    args = [
        sys.executable,
        str(tree / "bench" / f"{bench}.py"),
        *(["--small"] if small else []),
        *extra,
    ]
    started = time.monotonic()
    done = subprocess.run(
        args,
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT_S,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"ab: {bench} at {tree.name} failed (exit {done.returncode}): {tail}")
    figures: dict[str, Any] = json.loads(lines[-1])
    figures["_wall_s"] = round(time.monotonic() - started, 1)
    return figures


def _detail(figures: dict[str, Any]) -> str:
    """The two sides' own figures behind a serving bench's ratio (empty for others)."""
    case = figures.get("ratio_case")
    entai = figures.get("entai", {}).get(case) if case else None
    reference = figures.get("reference")
    if not isinstance(entai, dict) or not isinstance(reference, dict):
        return ""
    return (
        f"(entai {entai.get('rps')} rps p99 {entai.get('p99_ms')} ms; "
        f"reference {reference.get('rps')} rps p99 {reference.get('p99_ms')} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", help="the revision before (e.g. 0d764a5)")
    parser.add_argument("new", help="the revision after (e.g. main)")
    parser.add_argument("--benches", default="online_read,capacity,ingest")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="each bench's quick run")
    parser.add_argument("--bench-args", default="", help="arguments given to every bench run")
    args = parser.parse_args()
    benches = [b for b in args.benches.split(",") if b]
    revisions = {"old": args.old, "new": args.new}
    ratios: dict[str, dict[str, list[float]]] = {b: {"old": [], "new": []} for b in benches}
    with tempfile.TemporaryDirectory(prefix="entai-ab-") as scratch:
        trees = {side: _worktree(rev, Path(scratch)) for side, rev in revisions.items()}
        try:
            for round_no in range(args.rounds):
                order = ["old", "new"] if round_no % 2 == 0 else ["new", "old"]
                for bench in benches:
                    for side in order:
                        figures = _run(trees[side], bench, args.small, shlex.split(args.bench_args))
                        ratios[bench][side].append(float(figures["ratio"]))
                        print(
                            f"round {round_no + 1}/{args.rounds} {bench} {side} "
                            f"({revisions[side]}): ratio {figures['ratio']} "
                            f"in {figures['_wall_s']} s {_detail(figures)}",
                            flush=True,
                        )
        finally:
            for tree in trees.values():
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                    check=False,
                )
    per_bench = {}
    for bench, sides in ratios.items():
        old, new = statistics.median(sides["old"]), statistics.median(sides["new"])
        per_bench[bench] = {
            "old_ratios": sides["old"],
            "new_ratios": sides["new"],
            "old_median": round(old, 4),
            "new_median": round(new, 4),
            "change": round(new / old, 4),
        }
    changes = [figures["change"] for figures in per_bench.values()]
    summary = {
        "old": args.old,
        "new": args.new,
        "rounds": args.rounds,
        "small": args.small,
        "bench_args": args.bench_args,
        "load_after": round(os.getloadavg()[0], 2),
        "benches": per_bench,
        "ratio": round(math.exp(statistics.fmean(math.log(c) for c in changes)), 4),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
