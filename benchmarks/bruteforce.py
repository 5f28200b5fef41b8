"""Brute-force retrieval over unquantised vectors: the reference an index is checked against.

``brute_force_run`` scores every document of a vector collection against
every query with a float64 sparse matrix product (SciPy), independent of the
index code (no quantisation, no posting lists, no pruning), and returns the
top k per query as :class:`lsr.Results`, equal scores ranked by collection
order like the engine. It is how the end-to-end figures in docs/encoders.md
are checked::

    python -m benchmarks.bruteforce VECTORS QUERIES.jsonl -k 1000 -o brute.trec

``QUERIES`` holds vector queries (``{"id", "vector"}``) or text queries
(``{"id", "text"}``); text queries are encoded with the query side recorded
in the collection's ``encoder.json`` (the same path ``lsr search`` takes).
"""

from __future__ import annotations

import argparse
import sys
from typing import Mapping, Sequence

import numpy as np

from lsr.errors import InputError
from lsr.io import iter_vectors, read_encoder_info, read_queries
from lsr.results import Results


def _matrix(rows: Sequence[Mapping[str, float]], vocab: dict[str, int], grow: bool):
    import scipy.sparse as sp

    indptr = [0]
    cols: list[int] = []
    vals: list[float] = []
    for vec in rows:
        for t, w in vec.items():
            j = vocab.get(t)
            if j is None:
                if not grow:
                    continue
                j = vocab[t] = len(vocab)
            cols.append(j)
            vals.append(float(w))
        indptr.append(len(cols))
    return indptr, cols, vals


def brute_force_run(vectors, queries: Sequence[tuple[str, Mapping[str, float]]], k: int = 1000) -> Results:
    """Exact float64 top-k of each ``(query id, {term: weight})`` over a vector collection.

    ``vectors``: anything :func:`lsr.io.iter_vectors` reads (a JSONL file, a
    directory of parts, records). Only positive scores are returned; equal
    scores are ranked by collection order.
    """
    import scipy.sparse as sp

    ids: list[str] = []
    vocab: dict[str, int] = {}
    docs = []
    for doc_id, vec in iter_vectors(vectors):
        ids.append(doc_id)
        docs.append(vec)
    if not ids:
        raise InputError("brute force: the collection is empty")
    di, dc, dv = _matrix(docs, vocab, grow=True)
    D = sp.csr_matrix((np.asarray(dv, np.float64), np.asarray(dc, np.int64), np.asarray(di, np.int64)),
                      shape=(len(ids), len(vocab)))
    del docs
    qids = [q for q, _ in queries]
    qi, qc, qv = _matrix([v for _, v in queries], vocab, grow=False)
    Q = sp.csr_matrix((np.asarray(qv, np.float64), np.asarray(qc, np.int64), np.asarray(qi, np.int64)),
                      shape=(len(qids), len(vocab)))
    S = (D @ Q.T).T.tocsr()   # queries x docs
    out_q: list[str] = []
    out_d: list[str] = []
    out_s: list[float] = []
    out_r: list[int] = []
    for i, qid in enumerate(qids):
        row = S.getrow(i)
        docs_i, scores_i = row.indices, row.data
        keep = scores_i > 0
        docs_i, scores_i = docs_i[keep], scores_i[keep]
        order = np.lexsort((docs_i, -scores_i))[:k]
        for r, j in enumerate(order, 1):
            out_q.append(qid)
            out_d.append(ids[docs_i[j]])
            out_s.append(float(scores_i[j]))
            out_r.append(r)
    return Results(out_q, out_d, np.asarray(out_s, np.float64), np.asarray(out_r, np.int64))


def _load_queries(path: str, vectors) -> list[tuple[str, dict]]:
    qs = read_queries(path)
    texts = [q for q in qs if q.vector is None]
    if texts:
        info = read_encoder_info(vectors)
        if info is None:
            raise InputError(f"{path} holds text queries but {vectors} records no encoder (encoder.json)")
        from lsr.encoders import load_query_encoder

        enc = load_query_encoder(info)
        enc_vecs = enc.encode_queries([q.text for q in texts])
        by_id = {q.id: v for q, v in zip(texts, enc_vecs)}
        return [(q.id, q.vector if q.vector is not None else by_id[q.id]) for q in qs]
    return [(q.id, q.vector) for q in qs]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bruteforce",
                                description="Exact float64 brute-force top-k over unquantised vectors (SciPy), "
                                            "written as a TREC run: the reference an index is checked against.")
    p.add_argument("vectors", help="vector collection: JSONL file or `lsr encode` output directory")
    p.add_argument("queries", help="queries: JSONL {id, vector} or {id, text} (text: encoded with the "
                                   "collection's encoder.json query side), or TSV")
    p.add_argument("-k", type=int, default=1000, help="hits per query (default 1000)")
    p.add_argument("-o", "--output", required=True, help="TREC run file to write")
    p.add_argument("--tag", default="brute", help="run tag (default brute)")
    a = p.parse_args(argv)
    try:
        run = brute_force_run(a.vectors, _load_queries(a.queries, a.vectors), a.k)
        run.write_trec(a.output, tag=a.tag)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(run)} hits to {a.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
