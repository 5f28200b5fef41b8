"""Paired comparison of two runs: per-metric deltas and significance tests (scipy)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

from lsr.errors import InputError, LsrError

from .metrics import Evaluation, evaluate

TESTS = ("t", "wilcoxon", "both")


@dataclass
class MetricComparison:
    """One metric of a run against a baseline over the same judged queries.

    ``delta`` = run - baseline. ``t_p``: two-sided paired t-test p-value
    (``scipy.stats.ttest_rel``); ``wilcoxon_p``: two-sided Wilcoxon
    signed-rank p-value (``scipy.stats.wilcoxon``, zero differences dropped).
    A test that is not asked for is None. When every per-query difference is
    0 the p-value is 1.0; with fewer than 2 queries it is NaN.
    """

    metric: str
    baseline: float
    run: float
    delta: float
    n: int
    wins: int
    losses: int
    t_stat: float | None = None
    t_p: float | None = None
    wilcoxon_stat: float | None = None
    wilcoxon_p: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Comparison:
    run: Evaluation
    baseline: Evaluation
    test: str
    rows: list[MetricComparison] = field(default_factory=list)

    def to_dict(self, per_query: bool = False) -> dict[str, Any]:
        return {"run": self.run.run, "baseline": self.baseline.run, "test": self.test,
                "num_queries": self.run.num_queries,
                "metrics": [r.to_dict() for r in self.rows],
                "run_evaluation": self.run.to_dict(per_query),
                "baseline_evaluation": self.baseline.to_dict(per_query)}


def _import_stats():
    try:
        from scipy import stats
    except ImportError:
        raise LsrError("scipy is not installed: pip install 'lsr[eval]' (or pip install scipy)") from None
    return stats


def _tests(a: list[float], b: list[float], test: str):
    stats = _import_stats()
    diffs = [x - y for x, y in zip(a, b)]
    t_stat = t_p = w_stat = w_p = None
    n = len(diffs)
    all_zero = all(d == 0 for d in diffs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if test in ("t", "both"):
            if n < 2:
                t_stat, t_p = math.nan, math.nan
            elif all_zero:
                t_stat, t_p = 0.0, 1.0
            else:
                r = stats.ttest_rel(a, b)
                t_stat, t_p = float(r.statistic), float(r.pvalue)
        if test in ("wilcoxon", "both"):
            if n < 2:
                w_stat, w_p = math.nan, math.nan
            elif all_zero:
                w_stat, w_p = 0.0, 1.0
            else:
                try:
                    r = stats.wilcoxon(a, b)
                    w_stat, w_p = float(r.statistic), float(r.pvalue)
                except ValueError:
                    w_stat, w_p = math.nan, math.nan
    return t_stat, t_p, w_stat, w_p


def compare(run, baseline, qrels=None, metrics=None, *, test: str = "both", ties: str = "rank",
            strict: bool = False) -> Comparison:
    """Compare ``run`` with ``baseline`` per metric, paired over the judged queries.

    ``run`` and ``baseline`` are :class:`Evaluation` objects (from
    :func:`evaluate` with the same qrels and metrics) or anything
    :func:`evaluate` takes, then measured against ``qrels`` with
    ``metrics``. ``test``: ``"t"`` (paired t-test), ``"wilcoxon"`` or
    ``"both"``.
    """
    if test not in TESTS:
        raise InputError(f"unknown significance test {test!r} (known: {', '.join(TESTS)})")
    evs = []
    for r in (run, baseline):
        if isinstance(r, Evaluation):
            evs.append(r)
        else:
            if qrels is None:
                raise InputError("compare: qrels are needed to evaluate a run")
            evs.append(evaluate(r, qrels, metrics, ties=ties, strict=strict))
    a, b = evs
    if a.queries != b.queries:
        raise InputError(f"runs {a.run} and {b.run} were evaluated on different queries "
                         "(use the same qrels for both)")
    common = [m for m in a.metrics if m in b.metrics]
    if not common:
        raise InputError(f"runs {a.run} and {b.run} share no metric")
    out = Comparison(run=a, baseline=b, test=test)
    for m in common:
        va, vb = a.values(m), b.values(m)
        t_stat, t_p, w_stat, w_p = _tests(va, vb, test)
        out.rows.append(MetricComparison(
            metric=m, baseline=b.aggregate[m], run=a.aggregate[m],
            delta=a.aggregate[m] - b.aggregate[m], n=len(va),
            wins=sum(x > y for x, y in zip(va, vb)), losses=sum(x < y for x, y in zip(va, vb)),
            t_stat=t_stat, t_p=t_p, wilcoxon_stat=w_stat, wilcoxon_p=w_p))
    return out
