"""Plain-text tables for evaluations and comparisons (what ``lsr eval`` prints)."""

from __future__ import annotations

import math
from typing import Sequence

from .compare import Comparison
from .metrics import Evaluation


def _fmt(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return f"{v:.{digits}f}"


def _p(v: float | None) -> str:
    if v is None:
        return "-"
    if math.isnan(v):
        return "nan"
    return f"{v:.4f}" if v >= 1e-4 else f"{v:.1e}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = []
    for i, row in enumerate([header, *rows]):
        cells = [str(c).ljust(w) if j == 0 else str(c).rjust(w)
                 for j, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def format_evaluations(evs: Sequence[Evaluation]) -> str:
    """One row per run: name, number of judged queries, the aggregate of each metric."""
    metrics: list[str] = []
    for ev in evs:
        metrics.extend(m for m in ev.metrics if m not in metrics)
    header = ["run", "queries", *metrics]
    rows = [[ev.run, str(ev.num_queries), *[_fmt(ev.aggregate.get(m)) for m in metrics]] for ev in evs]
    return _table(header, rows)


def format_per_query(ev: Evaluation) -> str:
    """One row per judged query (qrels order), then ``all`` with the aggregates."""
    header = ["query", *ev.metrics]
    rows = [[q, *[_fmt(ev.per_query[q][m]) for m in ev.metrics]] for q in ev.queries]
    rows.append(["all", *[_fmt(ev.aggregate[m]) for m in ev.metrics]])
    return _table(header, rows)


def format_comparison(c: Comparison) -> str:
    """Per metric: baseline, run, delta, wins/losses and the p-values asked for."""
    header = ["metric", "baseline", "run", "delta", "win/loss"]
    if c.test in ("t", "both"):
        header.append("p(t-test)")
    if c.test in ("wilcoxon", "both"):
        header.append("p(wilcoxon)")
    rows = []
    for r in c.rows:
        row = [r.metric, _fmt(r.baseline), _fmt(r.run), f"{r.delta:+.4f}", f"{r.wins}/{r.losses}"]
        if c.test in ("t", "both"):
            row.append(_p(r.t_p))
        if c.test in ("wilcoxon", "both"):
            row.append(_p(r.wilcoxon_p))
        rows.append(row)
    title = f"{c.run.run} vs baseline {c.baseline.run} ({c.run.num_queries} queries, paired, two-sided)"
    return title + "\n" + _table(header, rows)
