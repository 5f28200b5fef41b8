"""``lsr eval``: measure run files against a dataset's qrels; compare two runs.

    lsr eval run.trec --dataset msmarco-passage/dev/small
    lsr eval a.trec b.trec --dataset beir/scifact/test --metrics nDCG@10,R@100
    lsr eval run.trec --qrels qrels.txt -m nDCG@10 -m "R(rel=2)@1000" --per-query
    lsr eval new.trec --compare baseline.trec --dataset msmarco-passage/trec-dl-2019/judged --json

A run file ``-`` is read from standard input.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from dataclasses import asdict, dataclass

from lsr.errors import InputError


@dataclass(frozen=True)
class EvalOptions:
    """What ``lsr eval`` was asked to do (built from the command line)."""

    runs: tuple[str, ...]
    dataset: str | None = None
    qrels: str | None = None
    metrics: tuple[str, ...] | None = None
    per_query: bool = False
    compare: str | None = None
    test: str = "both"
    ties: str = "rank"
    strict: bool = False
    json: bool = False

    def __post_init__(self) -> None:
        if not self.runs:
            raise InputError("no run file given")
        if self.dataset is None and self.qrels is None:
            raise InputError("give --dataset (an ir_datasets id, a BEIR directory) or --qrels FILE")
        if self.dataset is not None and self.qrels is not None:
            raise InputError("give --dataset or --qrels, not both")
        if sum(r == "-" for r in (*self.runs, self.compare or "")) > 1:
            raise InputError("standard input ('-') can be read as one run only")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate run files against qrels (ir-measures), compare runs",
        description="Measure TREC run files against a dataset's relevance judgments with "
                    "ir-measures, in lsr's rank order (ties: see docs/evaluation.md). With "
                    "--compare, a paired significance test per metric against a baseline run.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="TREC run file(s) ('-' for stdin)")
    src = p.add_argument_group("judgments (one of)")
    src.add_argument("--dataset", "-d", help="ir_datasets id (irds: prefix optional), BEIR directory "
                     "[DIR:SPLIT], or qrels file; also sets the default metrics")
    src.add_argument("--qrels", help="a qrels file (TREC 'qid iter docid rel' or BEIR TSV)")
    p.add_argument("--metrics", "-m", action="append", metavar="M[,M...]",
                   help="ir-measures names, comma separated, repeatable (e.g. -m RR@10,nDCG@10 "
                        "-m 'R(rel=2)@1000'); default: the dataset's")
    p.add_argument("--per-query", "-q", action="store_true", help="also print per-query values")
    p.add_argument("--compare", "-c", metavar="BASELINE",
                   help="a baseline run: paired test of each RUN against it, per metric")
    p.add_argument("--test", choices=["t", "wilcoxon", "both"], default="both",
                   help="significance test for --compare (default: both)")
    p.add_argument("--ties", choices=["rank", "trec_eval"], default="rank",
                   help="order of equal scores: the run's rank order (default) or trec_eval's "
                        "(doc id descending)")
    p.add_argument("--strict", action="store_true",
                   help="run query ids that are not in the qrels are an error, not a warning")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=run)


def _options(args) -> EvalOptions:
    return EvalOptions(
        runs=tuple(args.runs), dataset=args.dataset, qrels=args.qrels,
        metrics=tuple(args.metrics) if args.metrics else None, per_query=args.per_query,
        compare=args.compare, test=args.test, ties=args.ties, strict=args.strict, json=args.json)


def _json_safe(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_json_safe(v) for v in o]
    return o


def run(args) -> int:
    opts = _options(args)
    from lsr import eval as lev

    tmp = None
    try:
        paths = list(opts.runs)
        baseline_path = opts.compare
        if "-" in paths or baseline_path == "-":
            fd, tmp = tempfile.mkstemp(prefix="lsr-eval-", suffix=".trec")
            with os.fdopen(fd, "wb") as f:   # bytes as they come: the run reader names a bad line
                f.write(sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode())
            paths = [tmp if p == "-" else p for p in paths]
            baseline_path = tmp if baseline_path == "-" else baseline_path
        ds = (lev.load_dataset(opts.dataset) if opts.dataset is not None
              else lev.Dataset.from_files(qrels=opts.qrels))
        metrics = list(opts.metrics) if opts.metrics else None
        names = {tmp: "-"} if tmp else {}
        evs = [lev.evaluate(p, ds, metrics, ties=opts.ties, strict=opts.strict, name=names.get(p, p))
               for p in paths]
        cmps = []
        if baseline_path is not None:
            base = lev.evaluate(baseline_path, ds, metrics, ties=opts.ties, strict=opts.strict,
                                name=names.get(baseline_path, baseline_path))
            cmps = [lev.compare(ev, base, test=opts.test) for ev in evs]
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)

    out = sys.stdout
    if opts.json:
        doc = {"dataset": ds.name, "options": asdict(opts),
               "runs": [ev.to_dict(per_query=opts.per_query) for ev in evs]}
        if cmps:
            doc["baseline"] = cmps[0].baseline.to_dict(per_query=opts.per_query)
            doc["comparisons"] = [{"run": c.run.run, "baseline": c.baseline.run, "test": c.test,
                                   "num_queries": c.run.num_queries,
                                   "metrics": [r.to_dict() for r in c.rows]} for c in cmps]
        json.dump(_json_safe(doc), out, indent=2)
        out.write("\n")
        return 0
    shown = list(evs)
    if cmps and all(ev.run != cmps[0].baseline.run for ev in evs):
        shown.append(cmps[0].baseline)
    out.write(f"dataset: {ds.name}\n")
    out.write(lev.format_evaluations(shown) + "\n")
    if opts.per_query:
        for ev in shown:
            out.write(f"\n# {ev.run}\n{lev.format_per_query(ev)}\n")
    for c in cmps:
        out.write("\n" + lev.format_comparison(c) + "\n")
    return 0
