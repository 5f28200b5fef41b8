"""MaxSim from compressed document vectors: bytes per token, score error and the change in nDCG@10.

Run from a checkout, after ``python -m benchmarks.rerankers`` (it reuses that run's first stage)::

    python -m benchmarks.colbert_compression --run OUT/scifact/maxsim/run.trec --dataset beir/scifact/test \\
        --queries 100 --depth 20 -o OUT/compression

It stores the token vectors of every candidate document (the top ``depth`` of the
first ``queries`` queries of ``--run``) with the MiniLM ColBERT checkpoint of
:func:`benchmarks.rerankers.minilm_colbert`, uncompressed, then compressed with
each method of :mod:`lsr.rerank.colbert_store` (faiss), reranks from each store,
and prints one row per method: bytes per token, mean and max absolute score error
against the uncompressed vectors (:func:`~lsr.rerank.colbert_store.compression_error`),
nDCG@10 and its change. Writes ``compression.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from .cache import default_cache_dir
from .rerankers import minilm_colbert

METHODS = [("float16", {}), ("residual", {"residual_bits": 8}), ("residual", {"residual_bits": 4}),
           ("pq", {"pq_m": 32}), ("pq", {"pq_m": 16})]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.colbert_compression", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="first-stage TREC run")
    p.add_argument("--dataset", required=True, help="ir_datasets id with docs, queries and qrels")
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--cache", default=default_cache_dir())
    args = p.parse_args(argv)

    from lsr.eval import evaluate, load_dataset
    from lsr.rerank.colbert_store import build_doc_embeddings, compress_doc_embeddings, compression_error
    from lsr.rerank.maxsim import MaxSimConfig, MaxSimReranker
    from lsr.rerank.pipeline import top_k
    from lsr.results import Results

    ds = load_dataset(args.dataset)
    qrels = ds.qrels()
    run = Results.read_trec(args.run)
    subset = run.query_order()[:args.queries]
    keep = set(subset)
    idx = [i for i, q in enumerate(run.query_ids) if q in keep and run.ranks[i] <= args.depth]
    first = Results([run.query_ids[i] for i in idx], [run.doc_ids[i] for i in idx], run.scores[idx], run.ranks[idx])
    needed = set(first.doc_ids)
    texts = {d: t for d, t in ds.docs_iter() if d in needed}
    qtext = {q.id: q.text for q in ds.queries() if q.id in keep}
    sub_qrels = {q: qrels[q] for q in subset if q in qrels}
    model = minilm_colbert(args.cache)
    reranker = MaxSimReranker(MaxSimConfig(model=model, depth=args.depth, batch_size=32))
    os.makedirs(args.output, exist_ok=True)
    base = os.path.join(args.output, "none")
    t0 = time.perf_counter()
    build_doc_embeddings(reranker, sorted(texts.items()), base, "none", overwrite=True)
    build_s = time.perf_counter() - t0
    items = [(qtext[q], [first.doc_ids[i] for i in range(len(first)) if first.query_ids[i] == q]) for q in subset]
    rows = []
    first_ndcg = evaluate(first, sub_qrels, ["nDCG@10"]).aggregate["nDCG@10"]
    for method, params in [("none", {})] + METHODS:
        label = method + "".join(f"-{k.split('_')[-1]}{v}" for k, v in params.items())
        path = base if method == "none" else os.path.join(args.output, label)
        if method != "none":
            compress_doc_embeddings(base, path, method, overwrite=True, **params)
        r = MaxSimReranker(MaxSimConfig(model=model, depth=args.depth, batch_size=32, doc_embeddings=path))
        out = top_k(r.rerank(qtext, first, None), 10)
        ndcg = evaluate(out, sub_qrels, ["nDCG@10"]).aggregate["nDCG@10"]
        err = compression_error(r, path, items, base)
        rows.append({**err, "method": label, "nDCG@10": ndcg})
    base_ndcg = rows[0]["nDCG@10"]
    lines = [f"MaxSim (MiniLM, untrained projection to 128) over {len(texts)} documents, {len(subset)} queries x top "
             f"{args.depth} of {args.run}; first stage nDCG@10 {first_ndcg:.4f}; uncompressed store built in "
             f"{build_s:.0f} s", "",
             "| store | bytes/token | score error mean | score error max | nDCG@10 | change |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['bytes_per_token']:.0f} | {r['mean_abs_error']:.4f} | "
                     f"{r['max_abs_error']:.4f} | {r['nDCG@10']:.4f} | {r['nDCG@10'] - base_ndcg:+.4f} |")
    print("\n".join(lines))
    with open(os.path.join(args.output, "compression.json"), "w") as f:
        json.dump({"rows": rows, "first_stage_nDCG@10": first_ndcg, "documents": len(texts),
                   "queries": len(subset), "depth": args.depth, "run": os.path.abspath(args.run)}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
