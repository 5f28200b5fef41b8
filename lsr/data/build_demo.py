"""Rebuild the embedded demo corpus (maintainers only; needs ../shared and torch).

    python lsr/data/build_demo.py ../shared

Encodes 1,000 BEIR SciFact abstracts (every document judged for a test query,
then the first others in corpus order) and the 300 SciFact test queries with
the real splade-tiny model (log(1 + ReLU(MLM logits)), max over tokens, 256 /
64 tokens), and writes the term-weight vectors (no text) as
``scifact-1k.vectors.jsonl.gz`` and ``scifact-test.queries.jsonl.gz`` plus the
test qrels restricted to those documents as ``scifact-1k.qrels.tsv``.
SciFact: abstracts ODC-By 1.0, claims and qrels CC BY 4.0 (Wadden et al., 2020).
"""

from __future__ import annotations

import gzip
import json
import os
import sys

import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer


def splade(model, tok, texts, max_length):
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), 32):
            enc = tok(texts[i:i + 32], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            w = torch.log1p(torch.relu(model(**enc).logits)) * enc["attention_mask"].unsqueeze(-1)
            for row in w.max(dim=1).values:
                nz = torch.nonzero(row).squeeze(1)
                out.append({tok.convert_ids_to_tokens(int(j)): round(float(row[j]), 4) for j in nz})
    return out


def main(shared: str) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    sci = os.path.join(shared, "data", "beir", "scifact")
    model_dir = os.path.join(shared, "models", "splade-tiny")
    qrels = [line.rstrip("\n").split("\t") for line in open(os.path.join(sci, "qrels", "test.tsv"))][1:]
    judged = {d for _, d, _ in qrels}
    corpus = [json.loads(x) for x in open(os.path.join(sci, "corpus.jsonl"), encoding="utf-8")]
    chosen = [r for r in corpus if r["_id"] in judged]
    chosen += [r for r in corpus if r["_id"] not in judged][: 1000 - len(chosen)]
    chosen.sort(key=lambda r: corpus.index(r))
    qids = {q for q, _, _ in qrels}
    queries = [json.loads(x) for x in open(os.path.join(sci, "queries.jsonl"), encoding="utf-8")]
    queries = [q for q in queries if q["_id"] in qids]
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForMaskedLM.from_pretrained(model_dir).eval()
    dvec = splade(model, tok, [(r["title"] + " " + r["text"]).strip() for r in chosen], 256)
    qvec = splade(model, tok, [q["text"] for q in queries], 64)
    with gzip.open(os.path.join(here, "scifact-1k.vectors.jsonl.gz"), "wt", encoding="utf-8") as f:
        for r, v in zip(chosen, dvec):
            f.write(json.dumps({"id": r["_id"], "contents": "", "vector": v}) + "\n")
    with gzip.open(os.path.join(here, "scifact-test.queries.jsonl.gz"), "wt", encoding="utf-8") as f:
        for q, v in zip(queries, qvec):
            f.write(json.dumps({"id": q["_id"], "vector": v}) + "\n")
    with open(os.path.join(here, "scifact-1k.qrels.tsv"), "w") as f:
        for q, d, rel in qrels:
            f.write(f"{q}\t0\t{d}\t{rel}\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared"))
