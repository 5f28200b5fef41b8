"""Evaluation during training, through lsr's own encoder, index and evaluation layer.

:class:`IndexEvaluator` saves the model being trained into a temporary directory, loads it
with :func:`lsr.encoders.load_encoder` (the sentence-transformers checkpoint reader of
:mod:`lsr.encoders.st_layout`, lsr's fast encoding path), builds an lsr index of the dataset's
documents with :func:`lsr.build_index_from_text` (the default quantisation of
:class:`lsr.IndexConfig`), searches it exactly with :class:`lsr.Searcher` and measures the run
with :func:`lsr.eval.metrics.evaluate`. So each evaluation also checks that the checkpoint
written at the end will load in lsr. Besides the measures it reports the mean number of active
terms (non-zero weights) per query and per document (postings / documents of the index), and
FLOPS, the expected number of term matches between a query and a document,
``sum_j P_q(j) P_d(j)`` with ``P(j)`` the share of queries (documents) in which term ``j`` is
active (Paria et al., 2020; SPLADE's efficiency measure).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

import numpy as np

from .config import EvalConfig


def flops_of(query_vectors: list[dict[str, float]], doc_frequency, num_docs: int) -> float:
    """``sum_j P_q(j) P_d(j)`` from query vectors and a term's document frequency (``doc_frequency(term)``)."""
    if not query_vectors or num_docs == 0:
        return 0.0
    share: dict[str, int] = {}
    for v in query_vectors:
        for t, w in v.items():
            if w > 0:
                share[t] = share.get(t, 0) + 1
    return float(sum(c * doc_frequency(t) for t, c in share.items()) / (len(query_vectors) * num_docs))


class IndexEvaluator:
    """Measures a sparse model on a dataset through an lsr index (module docstring)."""

    def __init__(self, cfg: EvalConfig) -> None:
        from lsr.eval.datasets import load_dataset

        self.cfg = cfg
        ds = load_dataset(cfg.dataset)
        qrels = ds.qrels()
        queries = [q for q in ds.queries() if q.id in qrels]
        if cfg.queries:
            queries = queries[: cfg.queries]
        self.query_ids = [q.id for q in queries]
        self.query_texts = [q.text for q in queries]
        self.qrels = {q: qrels[q] for q in self.query_ids}
        self._tmp = tempfile.TemporaryDirectory(prefix="lsr-train-eval-")
        self.corpus = os.path.join(self._tmp.name, "corpus.jsonl")
        n = 0
        with open(self.corpus, "w", encoding="utf-8") as f:
            for did, text in ds.docs_iter():
                f.write(json.dumps({"_id": did, "text": text}) + "\n")
                n += 1
        self.num_docs = n
        self.name = cfg.dataset

    def __call__(self, model) -> dict[str, Any]:
        from lsr import Searcher, build_index_from_text
        from lsr.encoders import load_encoder
        from lsr.encoders.heads import clear_model_cache
        from lsr.eval.metrics import evaluate

        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="step-", dir=self._tmp.name) as tmp:
            model_dir = os.path.join(tmp, "model")
            model.save(model_dir, create_model_card=False)
            try:
                encoder = load_encoder(model_dir)
                index = build_index_from_text(self.corpus, os.path.join(tmp, "index"), encoder=encoder,
                                              batch_size=self.cfg.batch_size)
                encode_s = time.perf_counter() - t0
                qvecs = encoder.encode_queries(self.query_texts)
                results = Searcher(index).search_batch(list(zip(self.query_ids, qvecs)), k=self.cfg.k)
                ev = evaluate(results, self.qrels, list(self.cfg.metrics))
                df = np.diff(index.term_offsets)
                vocab = index.vocab
                fl = flops_of(qvecs, lambda t: int(df[vocab[t]]) if t in vocab else 0, index.num_documents)
                doc_terms = index.num_postings / max(index.num_documents, 1)
                del index, results
            finally:
                clear_model_cache()
        out: dict[str, Any] = dict(ev.aggregate)
        out.update({
            "query_active_terms": float(np.mean([len(v) for v in qvecs])) if qvecs else 0.0,
            "document_active_terms": float(doc_terms),
            "flops": fl,
            "eval_queries": len(self.query_ids),
            "eval_documents": self.num_docs,
            "eval_seconds": round(time.perf_counter() - t0, 2),
            "index_seconds": round(encode_s, 2),
        })
        return out


__all__ = ["IndexEvaluator", "flops_of"]
