"""Text to hits: per-query latency from query text to the top-k, encoding and retrieval apart and together.

``python -m benchmarks.text_to_hits --index DIR --queries QUERIES --qrels QRELS --threads 1``

``--index`` is an index built from text with a SPLADE encoder (its manifest records the encoder; e.g.
all of SciFact with ``lsr index --encoder splade-tiny --model-path ../shared/models/splade-tiny``).
The systems, each answering every query one at a time (``encode_queries([text])`` then
``Searcher.search(vector, k)``, the path ``Searcher.search(text)`` takes):

* ``torch``: the index's own query encoder (:func:`lsr.encoders.load_query_encoder` on its record);
* ``onnx``: the same query side exported with :func:`lsr.encoders.onnx.export_onnx` (``--onnx DIR``,
  exported there when absent) and run with onnxruntime, on the same index;
* ``inference-free`` (with ``--inference-free-index DIR``): an index built with the
  ``splade-tiny-inference-free`` preset (same document side, queries are their WordPieces, no model),
  searched with its own recorded query encoder.

Queries are taken in a shuffled order (seeded); for each query the systems run in a shuffled order
too, so that a slow stretch of the machine falls on all of them alike. The first ``--warmup``
queries are run once before timing. Encoders run with ``--threads`` torch / onnxruntime threads
and the search on the calling thread. Prints per system the p50 / p99 of encoding, retrieval and
their total in milliseconds, and nDCG@10 (``lsr.eval``) of the top-k; ``--json FILE`` writes all
figures and the machine's facts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import warnings
from typing import Sequence


def _read_queries(path: str, qrels: dict | None) -> list[tuple[str, str]]:
    from lsr.io import read_queries

    out = [(q.id, q.text) for q in read_queries(path) if q.text]
    if qrels is not None:
        out = [(i, t) for i, t in out if i in qrels]
    return out


def _systems(args) -> dict:
    import lsr
    from lsr.encoders import load_encoder, load_query_encoder
    from lsr.encoders.onnx import export_onnx, is_export

    index = lsr.Index.open(args.index)
    info = index.encoder
    if not info:
        raise SystemExit(f"{args.index}: the index records no encoder (build it from text)")
    systems = {}
    torch_enc = load_query_encoder(info, threads=args.threads)
    systems["torch"] = (torch_enc, lsr.Searcher(index, k=args.k, threads=1))
    onnx_dir = args.onnx
    if not is_export(onnx_dir):
        cfg = info["config"]
        print(f"exporting the index's encoder to {onnx_dir}", file=sys.stderr)
        export_onnx(cfg, onnx_dir)
    onnx_enc = load_encoder(onnx_dir, threads=args.threads)
    systems["onnx"] = (onnx_enc, systems["torch"][1])
    if args.inference_free_index:
        ix2 = lsr.Index.open(args.inference_free_index)
        if not ix2.encoder:
            raise SystemExit(f"{args.inference_free_index}: the index records no encoder")
        systems["inference-free"] = (load_query_encoder(ix2.encoder, threads=args.threads),
                                     lsr.Searcher(ix2, k=args.k, threads=1))
    return systems


def run(argv: Sequence[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.text_to_hits", description=__doc__.split("\n\n")[0])
    p.add_argument("--index", required=True, help="index built from text with a SPLADE encoder")
    p.add_argument("--queries", required=True, help="queries (BEIR queries.jsonl, JSONL or TSV)")
    p.add_argument("--qrels", help="qrels (TSV as BEIR's, or TREC); only judged queries are run")
    p.add_argument("--onnx", default=os.path.expanduser("~/.cache/lsr-bench/onnx-splade-tiny"),
                   help="ONNX export of the index's encoder (exported there when absent)")
    p.add_argument("--inference-free-index", metavar="DIR",
                   help="index built with the splade-tiny-inference-free preset (adds that system)")
    p.add_argument("--threads", type=int, default=1, help="encoder threads (default 1)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, help="run only the first N (judged) queries")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from lsr.eval import evaluate, read_qrels
    from lsr.results import Results

    torch.set_num_threads(args.threads)
    qrels = read_qrels(args.qrels) if args.qrels else None
    queries = _read_queries(args.queries, qrels)[: args.limit]
    systems = _systems(args)
    names = list(systems)
    rng = random.Random(args.seed)
    order = list(range(len(queries)))
    rng.shuffle(order)

    def one(name: str, text: str, qid: str):
        enc, searcher = systems[name]
        t0 = time.perf_counter()
        vec = enc.encode_queries([text])[0]
        t1 = time.perf_counter()
        res = searcher.search(vec, query_id=qid)
        t2 = time.perf_counter()
        return (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t2 - t0) * 1e3, res

    # the searcher warns about query terms it ignores (unknown, or rounded to 0); these are not news here
    warnings.simplefilter("ignore", UserWarning)
    for i in order[: args.warmup]:
        for name in names:
            one(name, queries[i][1], queries[i][0])
    times = {n: {"encode": [], "retrieve": [], "total": []} for n in names}
    results = {n: [] for n in names}
    for i in order:
        qid, text = queries[i]
        sys_order = names[:]
        rng.shuffle(sys_order)
        for name in sys_order:
            e, r, t, res = one(name, text, qid)
            times[name]["encode"].append(e)
            times[name]["retrieve"].append(r)
            times[name]["total"].append(t)
            results[name].append(res)
    out: dict = {"queries": len(queries), "k": args.k, "threads": args.threads, "index": os.path.abspath(args.index),
                 "systems": {}}
    try:
        from lsr.eval.benchmark import machine_facts

        out["machine"] = machine_facts()
    except ImportError:
        pass
    for name in names:
        row: dict = {}
        for part, ms in times[name].items():
            a = np.asarray(ms)
            row[part] = {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
                         "mean": float(a.mean())}
        if qrels is not None:
            judged = {qid: qrels[qid] for qid, _ in queries}
            ev = evaluate(Results.concat(results[name]), judged, ["nDCG@10"])
            row["nDCG@10"] = float(next(iter(ev.aggregate.values())))
        out["systems"][name] = row
    # do the systems answer alike? (top-k doc ids per query, against the first system)
    ref = [[h.doc_id for h in r] for r in results[names[0]]]
    for name in names[1:]:
        same = sum(ref[j] == [h.doc_id for h in r] for j, r in enumerate(results[name]))
        out["systems"][name]["same_top_k_as_" + names[0]] = same
    print(f"text to top-{args.k}, {len(queries)} queries one at a time, {args.threads} thread(s); ms")
    print(f"{'system':<16}{'enc p50':>9}{'enc p99':>9}{'ret p50':>9}{'ret p99':>9}{'tot p50':>9}{'tot p99':>9}"
          f"{'nDCG@10':>9}")
    for name in names:
        r = out["systems"][name]
        nd = f"{r['nDCG@10']:.4f}" if "nDCG@10" in r else "-"
        print(f"{name:<16}{r['encode']['p50']:9.3f}{r['encode']['p99']:9.3f}{r['retrieve']['p50']:9.3f}"
              f"{r['retrieve']['p99']:9.3f}{r['total']['p50']:9.3f}{r['total']['p99']:9.3f}{nd:>9}")
    for name in names[1:]:
        print(f"{name}: same top-{args.k} as {names[0]} for {out['systems'][name]['same_top_k_as_' + names[0]]} "
              f"of {len(queries)} queries")
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)
        os.replace(tmp, args.json)
    return out


if __name__ == "__main__":
    run()
