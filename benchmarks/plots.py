"""Plots of the peer benchmark (``python -m benchmarks.peer_bench --peers ...``; matplotlib, Agg backend).

The peer benchmark writes a JSON with ``rows`` (one per engine, setting and
k); these draw it, and ``python -m benchmarks.plots peers.json [OUT_DIR]``
redraws a saved run:

* :func:`plot_peer_latency`: per-query single-thread latency of every
  engine and setting, one panel per k (box plot, whiskers at p1/p99, log
  scale); the approximate settings are labelled with their recall@k against
  the exact top k, lsr's default with a star.
* :func:`plot_peer_tradeoff`: median latency (x, log) against recall@k (y),
  one panel per k: where each engine stands between speed and exactness.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Mapping

from lsr.eval.plots import _horizontal_boxes, _pyplot, _save

_PEER_COLORS = {"lsr": "tab:blue", "pisa": "tab:green", "bmp": "tab:purple", "seismic": "tab:red",
                "lucene": "tab:orange", "scipy": "tab:gray"}
_PEER_MARKERS = {"lsr": "o", "pisa": "s", "bmp": "D", "seismic": "v", "lucene": "^", "scipy": "P"}


def _peer_title(result: Mapping[str, Any]) -> str:
    c = result.get("collection", {})
    docs = c.get("documents")
    parts = [f"{c.get('kind', '?')} collection", f"{docs:,} docs" if isinstance(docs, int) else "? docs",
             f"{result.get('queries', '?')} queries", "1 thread"]
    commit = (result.get("environment") or {}).get("git_commit")
    if commit:
        parts.append(f"commit {str(commit)[:7]}")
    return ", ".join(parts)


def _peer_exact(row: Mapping[str, Any]) -> bool:
    """Whether a row's answers were exact (measured; what the engine claims where not measured)."""
    return bool(row.get("exact", row.get("claims_exact")))


def _peer_label(row: Mapping[str, Any]) -> str:
    label = f"{row['engine']} {row['setting']}" + (" *" if row.get("default") else "")
    if not _peer_exact(row):
        label += f" (R@{row['k']} {row.get('recall_at_k', float('nan')):.2f})"
    return label


def _peer_ks(result: Mapping[str, Any]) -> list[int]:
    return sorted({int(r["k"]) for r in result["rows"]})


def plot_peer_latency(result: Mapping[str, Any], path: str | os.PathLike) -> str:
    """Per-query latency of every engine and setting of a peer benchmark, one panel per k (box plot:
    quartiles, whiskers at p1/p99, log scale); approximate settings labelled with recall@k."""
    plt = _pyplot()
    ks = _peer_ks(result)
    n_rows = max([sum(1 for r in result["rows"] if r["k"] == k) for k in ks] + [1])
    fig, axes = plt.subplots(1, max(1, len(ks)), figsize=(6.0 * max(1, len(ks)), 1.0 + 0.3 * n_rows), dpi=100,
                             squeeze=False)
    for ax, k in zip(axes[0], ks):
        rows = [r for r in result["rows"] if r["k"] == k and r.get("latencies_ms")]
        if not rows:
            continue
        bp = _horizontal_boxes(ax, [r["latencies_ms"] for r in rows])
        ax.set_yticks(range(1, len(rows) + 1), [_peer_label(r) for r in rows], fontsize=7)
        for patch, r in zip(bp["boxes"], rows):
            patch.set_facecolor(_PEER_COLORS.get(r["engine"], "tab:gray"))
            patch.set_alpha(0.6 if _peer_exact(r) else 0.3)
        ax.set_xscale("log")
        ax.invert_yaxis()
        ax.set_xlabel(f"ms per query, k={k} (box: quartiles; whiskers: p1, p99)", fontsize=8)
        ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.suptitle(_peer_title(result) + "; * lsr's default; (R@k): approximate", fontsize=9)
    return _save(plt, fig, path)


def plot_peer_tradeoff(result: Mapping[str, Any], path: str | os.PathLike) -> str:
    """Median single-thread latency (x, log) against recall@k against the exact top k (y), one panel
    per k, one point per engine and setting."""
    plt = _pyplot()
    ks = _peer_ks(result)
    fig, axes = plt.subplots(1, max(1, len(ks)), figsize=(5.2 * max(1, len(ks)), 4.2), dpi=100, squeeze=False)
    for ax, k in zip(axes[0], ks):
        seen = set()
        for r in (r for r in result["rows"] if r["k"] == k):
            eng = r["engine"]
            label = eng if eng not in seen else None
            seen.add(eng)
            ax.scatter([r["p50_ms"]], [r.get("recall_at_k", float("nan"))], s=60 if r.get("default") else 30,
                       color=_PEER_COLORS.get(eng, "tab:gray"), marker=_PEER_MARKERS.get(eng, "o"), label=label,
                       edgecolors="black" if r.get("default") else "none", zorder=3)
        ax.set_xscale("log")
        ax.set_xlabel(f"median latency per query, ms, k={k}", fontsize=8)
        ax.set_ylabel(f"recall@{k} against the exact top {k}", fontsize=8)
        ax.set_ylim(-0.03, 1.05)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right", framealpha=0.8)
    fig.suptitle(_peer_title(result) + "; outlined: lsr's default", fontsize=9)
    return _save(plt, fig, path)


PEER_PLOTS = {"peers-latency.png": plot_peer_latency, "peers-tradeoff.png": plot_peer_tradeoff}


def draw_peer_plots(result: Mapping[str, Any], out_dir: str | os.PathLike, prefix: str = "") -> list[str]:
    """Both peer-benchmark plots into ``out_dir`` (names prefixed with ``prefix``); returns their paths."""
    os.makedirs(os.fspath(out_dir), exist_ok=True)
    return [fn(result, os.path.join(os.fspath(out_dir), prefix + name)) for name, fn in PEER_PLOTS.items()]




def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or len(argv) > 2:
        print("usage: python -m benchmarks.plots peers.json [OUT_DIR]  (the JSON of python -m benchmarks.peer_bench "
              "--peers ... --json)", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        result = json.load(f)
    if "rows" not in result:
        print(f"{argv[0]} is not a peer benchmark's JSON (lsr benchmark's results.json: python -m lsr.eval.plots)",
              file=sys.stderr)
        return 2
    out = argv[1] if len(argv) > 1 else os.path.dirname(os.path.abspath(argv[0]))
    for p in draw_peer_plots(result, out):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
