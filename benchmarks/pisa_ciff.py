"""CIFF to PISA and back, for the interop checks between lsr and PISA (``peers`` tier).

pyterrier-pisa's ``PisaIndex.from_ciff`` / ``to_ciff`` call ``pyciff`` (the
PISA project's Rust ``ciff`` crate with Python bindings), which publishes wheels
for CPython 3.8–3.10 only and whose source build needs crates.io; neither is
available on the Python 3.11 machines this project runs on. This module does
the same two conversions in Python, following the crate's mapping
(``pisa-engine/ciff``, ``ciff_to_pisa`` / ``pisa_to_ciff``), with lsr's CIFF
message reader and writer:

* :func:`ciff_to_pisa`: a CIFF file → PISA's uncompressed binary collection
  (``inv.docs``: ``[1, num_docs]`` then one ``[df, doc ids...]`` sequence per
  term; ``inv.freqs``: ``[df, tfs...]`` per term; ``inv.sizes``:
  ``[num_docs, doclengths...]``; all little-endian uint32) with ``fwd.terms`` /
  ``fwd.documents`` and their binary lexicons, laid out as ``from_ciff`` leaves
  them, so that :class:`pyterrier_pisa.PisaIndex` opens it;
* :func:`pisa_to_ciff`: a PISA index's binary collection and lexicons → a CIFF
  file (gaps, ``df``, ``cf`` = Σ tf; header totals from the sizes).

PISA itself then indexes, compresses and searches (``PisaIndex(...).quantized()``),
and PISA's own indexer makes the index that :func:`pisa_to_ciff` reads, so the
searches compared in the tests are PISA's; only the file conversion stands in
for pyciff.
"""

from __future__ import annotations

import os

import numpy as np


def _u32(values) -> bytes:
    return np.asarray(values, dtype="<u4").tobytes()


def ciff_to_pisa(ciff_path: str | os.PathLike, index_dir: str | os.PathLike) -> str:
    """Write the PISA binary collection of ``ciff_path`` into the new directory ``index_dir``
    (``inv.docs``, ``inv.freqs``, ``inv.sizes``, ``fwd.terms``, ``fwd.documents``, ``fwd.termlex``,
    ``fwd.doclex``, ``pt_meta.json``); returns ``index_dir``. Terms must come sorted (lsr's and
    Anserini's exports are), as PISA's lexicon needs."""
    import json

    from lsr.ciff import DelimitedReader
    from lsr.ciff import common_index_format_v1_pb2 as pb
    from benchmarks.peers import load_pisathon

    d = os.fspath(index_dir)
    os.makedirs(d)
    with DelimitedReader(ciff_path) as r:
        h = r.read(pb.Header, "the header")
        with open(os.path.join(d, "inv.docs"), "wb") as fd, open(os.path.join(d, "inv.freqs"), "wb") as ff, \
                open(os.path.join(d, "fwd.terms"), "w", encoding="utf-8") as ft:
            fd.write(_u32([1, h.num_docs]))
            prev = None
            for i in range(h.num_postings_lists):
                pl = r.read(pb.PostingsList, f"postings list {i}")
                if prev is not None and pl.term <= prev:
                    raise ValueError(f"terms out of order: {prev!r} then {pl.term!r}")
                prev = pl.term
                gaps = np.fromiter((p.docid for p in pl.postings), dtype=np.int64, count=len(pl.postings))
                tfs = np.fromiter((p.tf for p in pl.postings), dtype=np.int64, count=len(pl.postings))
                fd.write(_u32([len(gaps)]) + _u32(np.cumsum(gaps)))
                ff.write(_u32([len(tfs)]) + _u32(tfs))
                ft.write(pl.term + "\n")
        sizes = np.empty(h.num_docs, np.int64)
        with open(os.path.join(d, "fwd.documents"), "w", encoding="utf-8") as fdoc:
            for i in range(h.num_docs):
                rec = r.read(pb.DocRecord, f"document record {i}")
                if rec.docid != i:
                    raise ValueError(f"document records out of order: {rec.docid} at position {i}")
                sizes[i] = rec.doclength
                fdoc.write(rec.collection_docid + "\n")
    with open(os.path.join(d, "inv.sizes"), "wb") as fs:
        fs.write(_u32([h.num_docs]) + _u32(sizes))
    pisathon = load_pisathon()
    pisathon.build_binlex(os.path.join(d, "fwd.terms"), os.path.join(d, "fwd.termlex"))
    pisathon.build_binlex(os.path.join(d, "fwd.documents"), os.path.join(d, "fwd.doclex"))
    with open(os.path.join(d, "pt_meta.json"), "w") as f:   # what PisaIndex.from_ciff writes
        json.dump({"type": "sparse_index", "format": "pisa", "package_hint": "pyterrier-pisa", "stemmer": "none"}, f)
    return d


def _sequences(path: str):
    """The ``[length, values...]`` uint32 sequences of a PISA binary collection file."""
    data = np.fromfile(path, dtype="<u4")
    i = 0
    while i < len(data):
        n = int(data[i])
        yield data[i + 1:i + 1 + n]
        i += 1 + n


def pisa_to_ciff(index_dir: str | os.PathLike, ciff_path: str | os.PathLike,
                 description: str = "from PISA (benchmarks.pisa_ciff)") -> None:
    """Write the CIFF file of a PISA index directory (``inv.docs`` / ``inv.freqs`` / ``inv.sizes``,
    ``fwd.terms``, ``fwd.documents``, as pyterrier-pisa's indexers leave them)."""
    from lsr.ciff import common_index_format_v1_pb2 as pb
    from lsr.ciff import write_delimited

    d = os.fspath(index_dir)
    with open(os.path.join(d, "fwd.terms"), encoding="utf-8") as f:
        terms = f.read().splitlines()
    with open(os.path.join(d, "fwd.documents"), encoding="utf-8") as f:
        titles = f.read().splitlines()
    docs = _sequences(os.path.join(d, "inv.docs"))
    n_docs = int(next(docs)[0])
    sizes = next(_sequences(os.path.join(d, "inv.sizes"))).astype(np.int64)
    if len(sizes) != n_docs or len(titles) != n_docs:
        raise ValueError(f"{d}: {n_docs} documents, {len(sizes)} sizes, {len(titles)} titles")
    h = pb.Header(version=1, num_postings_lists=len(terms), num_docs=n_docs, total_postings_lists=len(terms),
                  total_docs=n_docs, total_terms_in_collection=int(sizes.sum()),
                  average_doclength=float(sizes.sum()) / n_docs if n_docs else 0.0, description=description)
    with open(ciff_path, "wb") as out:
        write_delimited(out, h)
        n = 0
        for term, ids, tfs in zip(terms, docs, _sequences(os.path.join(d, "inv.freqs"))):
            ids = ids.astype(np.int64)
            gaps = np.diff(ids, prepend=0)
            pl = pb.PostingsList(term=term, df=len(ids), cf=int(tfs.sum()))
            pl.postings.extend(pb.Posting(docid=int(g), tf=int(t)) for g, t in zip(gaps.tolist(), tfs.tolist()))
            write_delimited(out, pl)
            n += 1
        if n != len(terms):
            raise ValueError(f"{d}: {len(terms)} terms but {n} postings lists")
        for i, (title, size) in enumerate(zip(titles, sizes.tolist())):
            write_delimited(out, pb.DocRecord(docid=i, collection_docid=title, doclength=int(size)))
