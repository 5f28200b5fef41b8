"""Plots of a benchmark (matplotlib, Agg backend: no display needed).

Both functions take the results dictionary that ``lsr benchmark`` writes as
``results.json`` (:meth:`lsr.eval.benchmark.BenchmarkResult.to_dict`), so a
plot can be redrawn from a saved run::

    python -m lsr.eval.plots results.json [OUT_DIR]

* :func:`plot_latency_vs_effectiveness`: one point per system, x = median
  single-thread latency per query (log scale; retrieval, and end-to-end with
  query encoding where measured), y = the benchmark's first metric.
* :func:`plot_latency_distribution`: per-query retrieval latency of each
  system as a box plot (whiskers at the 1st and 99th percentiles).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Mapping

_STYLE = {"lsr": ("tab:blue", "o"), "pisa": ("tab:green", "s"), "bm25": ("tab:orange", "^")}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str | os.PathLike) -> str:
    fig.tight_layout()
    path = os.fspath(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def _horizontal_boxes(ax, data):
    """Horizontal box plots (quartiles, whiskers at p1/p99, no fliers), filled so they can be coloured."""
    import inspect

    horizontal = ({"orientation": "horizontal"} if "orientation" in inspect.signature(ax.boxplot).parameters
                  else {"vert": False})  # matplotlib >= 3.10 / older
    return ax.boxplot(data, whis=(1, 99), showfliers=False, patch_artist=True, **horizontal)


def _title(result: Mapping[str, Any]) -> str:
    ds = result.get("dataset", {})
    enc = (result.get("encoder") or {}).get("name")
    parts = [str(ds.get("name", "")), f"{ds.get('documents', '?')} docs", f"{ds.get('queries', '?')} queries"]
    if enc:
        parts.append(str(enc))
    return ", ".join(parts)


def plot_latency_vs_effectiveness(result: Mapping[str, Any], path: str | os.PathLike,
                                  metric: str | None = None) -> str:
    """Median latency per query (x, log) against ``metric`` (y; default: the first metric)."""
    plt = _pyplot()
    metric = metric or result["metrics"][0]
    lat = result.get("latency", {})
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    cycle = iter(["tab:blue", "tab:purple", "tab:cyan", "tab:olive", "tab:brown", "tab:pink", "tab:red"])
    for s in result["systems"]:
        y = (s.get("metrics") or {}).get(metric)
        if y is None:
            continue
        color, marker = _STYLE.get(s.get("kind"), ("tab:gray", "o"))
        if s.get("kind") == "lsr":
            color = next(cycle, "tab:gray")
        r = s.get("retrieval_ms")
        e = s.get("end_to_end_ms")
        if r:
            ax.scatter([r["median"]], [y], color=color, marker=marker, s=46, zorder=3, label=s["name"])
        if e:
            ax.scatter([e["median"]], [y], facecolors="none", edgecolors=color, marker=marker, s=46, zorder=3,
                       label=None if r else s["name"])
            if r:
                ax.plot([r["median"], e["median"]], [y, y], color=color, lw=0.8, ls=":", zorder=2)
    ax.legend(fontsize=8, loc="best", framealpha=0.8)
    ax.margins(y=0.15)
    ax.set_xscale("log")
    ax.set_xlabel(f"median latency per query, ms (1 thread, k={lat.get('k', '?')}); "
                  "filled: retrieval, open: + query encoding", fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title(_title(result), fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    return _save(plt, fig, path)


def plot_latency_distribution(result: Mapping[str, Any], path: str | os.PathLike) -> str:
    """Per-query retrieval latency of each system (box plot, whiskers at p1/p99; log scale)."""
    plt = _pyplot()
    names, data, colors = [], [], []
    for s in result["systems"]:
        values = s.get("retrieval_ms_per_query")
        if values:
            names.append(s["name"])
            data.append(values)
            colors.append(_STYLE.get(s.get("kind"), ("tab:gray", "o"))[0])
        values = s.get("end_to_end_ms_per_query")
        if values:
            names.append(s["name"] + " e2e")
            data.append(values)
            colors.append(_STYLE.get(s.get("kind"), ("tab:gray", "o"))[0])
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.42 * max(1, len(names))), dpi=100)
    if data:
        bp = _horizontal_boxes(ax, data)
        ax.set_yticks(range(1, len(names) + 1), names, fontsize=8)
        for patch, c in zip(bp["boxes"], colors):
            patch.set_facecolor(c)
            patch.set_alpha(0.45)
        ax.set_xscale("log")
        ax.invert_yaxis()
    lat = result.get("latency", {})
    ax.set_xlabel(f"latency per query, ms (1 thread, k={lat.get('k', '?')}; box: quartiles, "
                  "whiskers: p1-p99)", fontsize=8)
    ax.set_title(_title(result), fontsize=9)
    ax.grid(True, axis="x", which="both", alpha=0.3)
    return _save(plt, fig, path)


PLOTS = {"latency-vs-effectiveness.png": plot_latency_vs_effectiveness,
         "latency-distribution.png": plot_latency_distribution}


def draw_all(result: Mapping[str, Any], out_dir: str | os.PathLike) -> list[str]:
    """Both plots into ``out_dir``; returns their paths."""
    return [fn(result, os.path.join(os.fspath(out_dir), name)) for name, fn in PLOTS.items()]


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - thin wrapper
    argv = sys.argv[1:] if argv is None else argv
    if not argv or len(argv) > 2:
        print("usage: python -m lsr.eval.plots results.json [OUT_DIR]  (lsr benchmark's results.json)",
              file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        result = json.load(f)
    out = argv[1] if len(argv) > 1 else os.path.dirname(os.path.abspath(argv[0]))
    if "systems" not in result:
        print(f"{argv[0]} is not lsr benchmark's results.json (the peer benchmark's JSON is drawn by "
              "python -m benchmarks.plots)", file=sys.stderr)
        return 2
    for p in draw_all(result, out):
        print(p)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
