"""Exact search on a real collection: SciFact passages encoded by the real splade-tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest

import lsr
from lsr.config import IndexConfig, QuantizationConfig

from brute import SEARCHERS, doc_matrix, query_vector, topk

N_DOCS, N_QUERIES = 300, 40

pytestmark = pytest.mark.slow   # encodes 300 SciFact passages with the real model, then every processor


def _splade(model, tok, texts, max_length):
    """Plain SPLADE: max over tokens of log(1 + relu(MLM logits)), masked by attention."""
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), 32):
            enc = tok(texts[i:i + 32], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            logits = model(**enc).logits
            w = torch.log1p(torch.relu(logits)) * enc["attention_mask"].unsqueeze(-1)
            w = w.max(dim=1).values
            for row in w:
                nz = torch.nonzero(row).squeeze(1)
                out.append({tok.convert_ids_to_tokens(int(j)): float(row[j]) for j in nz})
    return out


@pytest.fixture(scope="module")
def encoded(splade_tiny, scifact_dir):
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(splade_tiny)
    model = AutoModelForMaskedLM.from_pretrained(splade_tiny).eval()
    docs, ids = [], []
    with open(scifact_dir / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            ids.append(r["_id"]); docs.append((r["title"] + " " + r["text"]).strip())
            if len(docs) == N_DOCS:
                break
    queries = []
    with open(scifact_dir / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            queries.append(json.loads(line)["text"])
            if len(queries) == N_QUERIES:
                break
    return ids, _splade(model, tok, docs, 256), _splade(model, tok, queries, 64)


@pytest.mark.parametrize("method,bits", [("auto", 8), ("max", 16), ("fixed", 8), ("float", 8)])
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_real_splade_collection_matches_brute_force(tmp_path, encoded, method, bits):
    ids, dvecs, qvecs = encoded
    scale = 100.0 if method == "fixed" else None
    cfg = IndexConfig(quantization=QuantizationConfig(method=method, bits=bits, scale=scale), run_postings=5000,
                      range_block_docs=16)
    ix = lsr.build_index(list(zip(ids, dvecs)), tmp_path / "ix", cfg)
    assert ix.num_documents == N_DOCS
    assert ix.num_postings > 100 * N_DOCS  # SPLADE expands: real, dense-ish vectors
    vocab = sorted({t for d in dvecs for t in d} | {t for q in qvecs for t in q})
    m = doc_matrix(dvecs, vocab, method, bits, scale)
    for kw in SEARCHERS:
        _check(lsr.Searcher(ix, **kw), ix, m, vocab, ids, qvecs)


def _check(s, ix, m, vocab, ids, qvecs):
    for k in (1, 10, 100, N_DOCS):
        batch = s.search_batch({str(i): q for i, q in enumerate(qvecs)}, k=k).by_query()
        for i, q in enumerate(qvecs):
            exp_d, exp_s = topk(m, query_vector(q, vocab, ix.is_float), k)
            got = batch.get(str(i), [])
            if ix.is_float:
                np.testing.assert_allclose([h.score for h in got], exp_s, rtol=1e-5)
                # same set up to near-ties at the cut
                assert len(set(h.doc_id for h in got) ^ {ids[j] for j in exp_d}) <= 2
            else:
                assert [h.doc_id for h in got] == [ids[j] for j in exp_d]
                assert [h.score for h in got] == exp_s.tolist()
            if k == 10:
                assert list(s.search(q, k=10, query_id=str(i))) == got
