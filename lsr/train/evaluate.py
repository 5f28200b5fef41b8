"""Evaluation during training, through lsr's own index and evaluation layer.

:class:`IndexEvaluator` encodes a dataset's documents and queries with the model being trained
(sentence-transformers' ``encode_document`` / ``encode_query``, as sparse tensors), builds an
lsr index of the documents in a temporary directory (the default quantisation of
:class:`lsr.IndexConfig`), searches it exactly with :class:`lsr.Searcher` and measures the run
with :func:`lsr.eval.metrics.evaluate`. Besides the measures it reports the mean number of
active terms (non-zero weights) per query and per document, and FLOPS, the expected number of
term matches between a query and a document, ``sum_j P_q(j) P_d(j)`` with ``P(j)`` the share of
queries (documents) in which term ``j`` is active (Paria et al., 2020; SPLADE's efficiency
measure). Terms are named by their dimension (``"17"``), so any sparse model fits.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import numpy as np

from .config import EvalConfig


def sparse_rows(t) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR arrays ``(indptr, indices, values)`` of a 2-d torch tensor (sparse COO or dense);
    zeros are dropped."""
    import torch

    if t.is_sparse:
        t = t.coalesce()
        rows, cols = t.indices().cpu().numpy()
        vals = t.values().float().cpu().numpy()
    else:
        nz = torch.nonzero(t, as_tuple=True)
        rows, cols = nz[0].cpu().numpy(), nz[1].cpu().numpy()
        vals = t[nz].float().cpu().numpy()
    keep = vals != 0
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    order = np.lexsort((cols, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    n = int(t.shape[0])
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.add.at(indptr, rows + 1, 1)
    return np.cumsum(indptr), cols.astype(np.int64), vals.astype(np.float32)


def flops(q_indptr, q_idx, d_indptr, d_idx, dim: int) -> float:
    """``sum_j P_q(j) P_d(j)``: the expected number of active terms a query and a document share."""
    nq, nd = len(q_indptr) - 1, len(d_indptr) - 1
    if nq == 0 or nd == 0:
        return 0.0
    pq = np.bincount(q_idx, minlength=dim) / nq
    pd = np.bincount(d_idx, minlength=dim) / nd
    return float(pq @ pd)


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
        self.doc_ids: list[str] = []
        self.doc_texts: list[str] = []
        for did, text in ds.docs_iter():
            self.doc_ids.append(did)
            self.doc_texts.append(text)
        self.name = cfg.dataset

    def __call__(self, model) -> dict[str, Any]:
        import torch

        from lsr import IndexBuilder, Searcher
        from lsr.eval.metrics import evaluate

        t0 = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                D = model.encode_document(self.doc_texts, batch_size=self.cfg.batch_size,
                                          convert_to_sparse_tensor=True, show_progress_bar=False)
                Q = model.encode_query(self.query_texts, batch_size=self.cfg.batch_size,
                                       convert_to_sparse_tensor=True, show_progress_bar=False)
        finally:
            model.train(was_training)
        encode_s = time.perf_counter() - t0
        dim = int(D.shape[1])
        d_ptr, d_idx, d_val = sparse_rows(D)
        q_ptr, q_idx, q_val = sparse_rows(Q)
        vocab = [str(i) for i in range(dim)]
        with tempfile.TemporaryDirectory(prefix="lsr-train-eval-") as tmp:
            with IndexBuilder(f"{tmp}/index", vocabulary=vocab) as b:
                b.add_batch(self.doc_ids, d_ptr, d_idx.astype(np.int32), d_val)
            index = b.index
            queries = {qid: {vocab[j]: float(w) for j, w in zip(q_idx[q_ptr[i]:q_ptr[i + 1]],
                                                                  q_val[q_ptr[i]:q_ptr[i + 1]])}
                       for i, qid in enumerate(self.query_ids)}
            results = Searcher(index).search_batch(queries, k=self.cfg.k, threads=1)
            ev = evaluate(results, self.qrels, list(self.cfg.metrics))
            del index, results
        out: dict[str, Any] = dict(ev.aggregate)
        out.update({
            "query_active_terms": float(np.diff(q_ptr).mean()) if len(q_ptr) > 1 else 0.0,
            "document_active_terms": float(np.diff(d_ptr).mean()) if len(d_ptr) > 1 else 0.0,
            "flops": flops(q_ptr, q_idx, d_ptr, d_idx, dim),
            "eval_queries": len(self.query_ids),
            "eval_documents": len(self.doc_ids),
            "eval_seconds": round(time.perf_counter() - t0, 2),
            "encode_seconds": round(encode_s, 2),
        })
        return out


__all__ = ["IndexEvaluator", "flops", "sparse_rows"]
