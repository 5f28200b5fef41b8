"""Measuring a run against qrels with ir-measures, in lsr's rank order.

See the package docstring (:mod:`lsr.eval`) for the tie rule and for how
query-id mismatches between run and qrels are handled.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from lsr.errors import InputError, LsrError
from lsr.results import Results

from .datasets import DEFAULT_METRICS, load_dataset, require_qrels

TIE_RULES = ("rank", "trec_eval")


class EvalWarning(UserWarning):
    """A run/qrels mismatch that does not stop the evaluation."""


def _import_irm():
    try:
        import ir_measures
    except ImportError:
        raise LsrError("ir-measures is not installed: pip install 'lsr[eval]' "
                       "(or pip install ir-measures)") from None
    return ir_measures


# --------------------------------------------------------------------------- metric names
def split_metric_list(spec: str | Iterable[str]) -> list[str]:
    """``"nDCG@10,R(rel=2)@1000"`` or a list of such strings -> single names.

    Commas inside parentheses (``P(rel=2,judged_only=True)@10``) are kept.
    """
    items = [spec] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in items:
        depth, cur = 0, []
        for ch in str(item):
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            if (ch == "," or ch.isspace()) and depth == 0:
                if cur:
                    out.append("".join(cur))
                cur = []
                continue
            cur.append(ch)
        if cur:
            out.append("".join(cur))
    return out


def parse_metrics(metrics: str | Iterable[Any]) -> list:
    """ir-measures ``Measure`` objects from names (ir-measures or trec_eval syntax).

    Accepts ``nDCG@10``, ``RR@10``, ``R(rel=2)@1000``, ``AP``, trec_eval names
    such as ``ndcg_cut_10`` or ``recall.1000``, and Measure objects. Unknown
    or unsupported names raise :class:`~lsr.errors.InputError`.
    """
    irm = _import_irm()
    if isinstance(metrics, str):
        metrics = [metrics]
    names: list[Any] = []
    for m in metrics:
        names.extend(split_metric_list(m) if isinstance(m, str) else [m])
    if not names:
        raise InputError("no metrics given")
    out = []
    for name in names:
        if not isinstance(name, str):
            out.append(name)
            continue
        parsed = None
        err = None
        try:
            parsed = [irm.parse_measure(name)]
        except (NameError, ValueError, AssertionError, TypeError, SyntaxError) as e:
            err = e
            try:
                parsed = list(irm.parse_trec_measure(name))
            except Exception:  # noqa: BLE001
                parsed = None
        if not parsed:
            detail = str(err).split(";")[0] if err else "not a measure"
            raise InputError(f"unknown metric {name!r} ({detail}); use ir-measures names such as "
                             "RR@10, nDCG@10, R@1000, R(rel=2)@1000, AP, P@10")
        for m in parsed:
            if not irm.DefaultPipeline.supports(m):
                raise InputError(f"metric {name!r} is not supported by any installed ir-measures provider")
            out.append(m)
    seen: dict[str, Any] = {}
    for m in out:
        seen.setdefault(str(m), m)
    return list(seen.values())


# --------------------------------------------------------------------------- results
@dataclass
class Evaluation:
    """The measures of one run.

    ``per_query[qid][metric]`` covers every judged query (the qrels' query
    ids, in qrels order); ``aggregate[metric]`` is the ir-measures aggregate
    over them (the mean, for all the usual measures). ``missing``: judged
    queries with no hits in the run (they score 0). ``unjudged``: run queries
    not in the qrels (not evaluated).
    """

    run: str
    metrics: list[str]
    aggregate: dict[str, float]
    per_query: dict[str, dict[str, float]]
    queries: list[str]
    missing: list[str] = field(default_factory=list)
    unjudged: list[str] = field(default_factory=list)
    dataset: str | None = None
    ties: str = "rank"

    @property
    def num_queries(self) -> int:
        return len(self.queries)

    def values(self, metric: str) -> list[float]:
        """Per-query values of ``metric`` in ``queries`` order."""
        return [self.per_query[q][metric] for q in self.queries]

    def to_dict(self, per_query: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "run": self.run, "dataset": self.dataset, "ties": self.ties,
            "num_queries": self.num_queries, "metrics": list(self.metrics),
            "aggregate": dict(self.aggregate),
            "missing_queries": list(self.missing), "unjudged_queries": list(self.unjudged),
        }
        if per_query:
            d["per_query"] = {q: dict(self.per_query[q]) for q in self.queries}
        return d


# --------------------------------------------------------------------------- the run
def _as_results(run) -> tuple[Results, str]:
    if isinstance(run, Results):
        return run, "run"
    if isinstance(run, (str, os.PathLike)):
        return Results.read_trec(run), os.fspath(run)
    raise InputError(f"a run is a lsr.Results or a TREC run file path, not {type(run).__name__}")


def _ordered_run(res: Results, ties: str) -> dict[str, dict[str, float]]:
    """``{qid: {docid: score}}`` with strictly decreasing scores in the evaluated order.

    ``ties="rank"``: the Results' rank order. ``ties="trec_eval"``: score
    descending, then doc id descending (trec_eval's qsort comparator).
    Scores become ``n, n-1, ..., 1`` for a query's n hits, so every
    ir-measures provider sees exactly this order.
    """
    qids, dids = res.query_ids, res.doc_ids
    ranks = res.ranks.tolist()
    scores = res.scores.tolist()
    groups: dict[str, list[int]] = {}
    for i, q in enumerate(qids):
        groups.setdefault(q, []).append(i)
    out: dict[str, dict[str, float]] = {}
    for q, idx in groups.items():
        if ties == "rank":
            idx.sort(key=lambda i: ranks[i])  # stable: equal ranks keep their order
        else:
            idx.sort(key=lambda i: (scores[i], dids[i]), reverse=True)
        n = len(idx)
        d: dict[str, float] = {}
        for pos, i in enumerate(idx):
            did = dids[i]
            if did in d:
                raise InputError(f"run lists document {did!r} twice for query {q!r}")
            d[did] = float(n - pos)
        out[q] = d
    return out


def _sample(ids: Iterable[str], n: int = 5) -> str:
    ids = list(ids)
    shown = ", ".join(ids[:n])
    return shown + (f" and {len(ids) - n} more" if len(ids) > n else "")


def _resolve_qrels(qrels) -> tuple[dict[str, dict[str, int]], str | None, list[str] | None]:
    """``(qrels, dataset name, default metrics)`` from a dict, a Dataset or a spec."""
    if isinstance(qrels, Mapping):
        out: dict[str, dict[str, int]] = {}
        for q, judged in qrels.items():
            if not isinstance(judged, Mapping):
                raise InputError(f"qrels for query {q!r} must map doc id to relevance")
            row = {}
            for d, r in judged.items():
                if isinstance(r, bool) or not isinstance(r, (int, float)) or float(r) != int(r):
                    raise InputError(f"qrels: relevance of {d!r} for query {q!r} must be an integer, got {r!r}")
                row[str(d)] = int(r)
            out[str(q)] = row
        if not out:
            raise InputError("the qrels are empty")
        return out, None, None
    if qrels is None:
        raise InputError("no qrels: give a dataset (--dataset) or a qrels file (--qrels)")
    ds = load_dataset(qrels)
    return require_qrels(ds), ds.name, ds.default_metrics()


def evaluate(run, qrels, metrics=None, *, ties: str = "rank", strict: bool = False,
             name: str | None = None) -> Evaluation:
    """Measure ``run`` against ``qrels``.

    ``run``: :class:`lsr.Results` (e.g. a search just made) or a TREC run
    file path. ``qrels``: ``{qid: {docid: rel}}``, a :class:`Dataset`, or a
    dataset spec / qrels file for :func:`load_dataset`. ``metrics``: names or
    ir-measures objects (default: the dataset family's, see
    :data:`DEFAULT_METRICS`; ``nDCG@10, RR@10, R@1000`` for plain qrels).
    ``ties``: ``"rank"`` (lsr's order) or ``"trec_eval"``. ``strict``: make
    run queries missing from the qrels an error instead of a warning.
    """
    if ties not in TIE_RULES:
        raise InputError(f"unknown tie rule {ties!r} (known: {', '.join(TIE_RULES)})")
    irm = _import_irm()
    res, run_name = _as_results(run)
    run_name = name or run_name
    qrels_d, ds_name, ds_metrics = _resolve_qrels(qrels)
    measures = parse_metrics(metrics if metrics is not None
                             else (ds_metrics or list(DEFAULT_METRICS["generic"])))
    where = f" of {ds_name}" if ds_name else ""
    if len(res) == 0:
        raise InputError(f"run {run_name} is empty: it has no hits to evaluate")
    run_d = _ordered_run(res, ties)
    judged = [q for q in qrels_d]
    unjudged = [q for q in run_d if q not in qrels_d]
    if len(unjudged) == len(run_d):
        raise InputError(
            f"none of the {len(run_d)} query ids of run {run_name} ({_sample(run_d)}) is in the "
            f"qrels{where} ({len(qrels_d)} queries: {_sample(judged)}); wrong dataset or qrels?")
    if unjudged:
        msg = (f"{len(unjudged)} of {len(run_d)} query ids of run {run_name} are not in the "
               f"qrels{where} and are not evaluated: {_sample(unjudged)}")
        if strict:
            raise InputError(msg)
        warnings.warn(msg, EvalWarning, stacklevel=2)
    missing = [q for q in judged if q not in run_d]
    if missing:
        warnings.warn(f"{len(missing)} of {len(judged)} judged queries{where} have no hits in run "
                      f"{run_name} and score 0: {_sample(missing)}", EvalWarning, stacklevel=2)
    judged_docs = set()
    for q in run_d:
        if q in qrels_d:
            judged_docs.update(d for d in run_d[q] if d in qrels_d[q])
            if judged_docs:
                break
    if not judged_docs:
        warnings.warn(f"no document retrieved by run {run_name} is judged in the qrels{where}: "
                      "do the run and the qrels use the same document ids?", EvalWarning, stacklevel=2)

    eval_run = {q: d for q, d in run_d.items() if q in qrels_d}
    names = [str(m) for m in measures]
    per_query: dict[str, dict[str, float]] = {q: {} for q in judged}
    try:
        for metric in irm.iter_calc(measures, qrels_d, eval_run):
            row = per_query.get(str(metric.query_id))
            if row is not None:
                row[str(metric.measure)] = float(metric.value)
    except LsrError:
        raise
    except Exception as e:  # noqa: BLE001 - a provider failing on these inputs
        raise InputError(f"ir-measures could not compute {', '.join(names)}: "
                         f"{type(e).__name__}: {e}") from None
    for q in judged:  # metric order; trec_eval -c: a judged query with no hits scores 0
        row = per_query[q]
        per_query[q] = {nm: (0.0 if math.isnan(row.get(nm, 0.0)) else row.get(nm, 0.0)) for nm in names}
    aggregate: dict[str, float] = {}
    for m, nm in zip(measures, names):
        agg = m.aggregator()
        for q in judged:
            agg.add(per_query[q][nm])
        aggregate[nm] = float(agg.result())
    return Evaluation(run=run_name, metrics=names, aggregate=aggregate, per_query=per_query,
                      queries=judged, missing=missing, unjudged=unjudged, dataset=ds_name, ties=ties)
