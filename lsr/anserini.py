"""Export an lsr index as Anserini's ``JsonVectorCollection``, for users who index with Lucene.

:func:`export_index` writes one JSON line per document,
``{"id": "<doc id>", "contents": "", "vector": {"<term>": <impact>, ...}}``,
into ``part-NNNNN.jsonl`` files of at most ``docs_per_file`` documents each, in
the index's document order, plus ``lsr-export.json`` (what was exported, from
which index, with which quantisation). Anserini indexes the directory with::

    python -m pyserini.index.lucene --collection JsonVectorCollection --input DIR --index LUCENE_DIR \\
        --generator DefaultLuceneDocumentGenerator --impact --pretokenized

and its impact searcher (``LuceneImpactSearcher``) with integer query weights
then scores each document as lsr does, Σ query weight × impact.

Impacts are integers, as Anserini requires (it reads each weight as an int):
an 8- or 16-bit index exports its stored impacts as they are; a float index is
quantised on export with ``scale = (2**bits - 1) / largest weight`` and
``floor(weight * scale + 0.5)`` (postings that round to 0 are left out), the
scale recorded in ``lsr-export.json``. A document with no postings is written
with an empty vector (Anserini skips it). Terms with white space in them are
refused: Anserini's pre-tokenised path splits on it.

The index is term-major; the documents are written a range at a time
(:mod:`lsr.index.kernels.invert`: one counting pass, then one pass over the
postings per range of at most ``range_postings`` postings), so memory stays
bounded on a collection of any size. The output is written in a sibling
directory and renamed into place; ``overwrite`` replaces only an earlier export
(or an empty directory).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError
from .outputs import marked_dir_check, move_into_place, refuse_input_overlap, start_output_dir

FORMAT = "lsr-anserini-json-vector"
VERSION = 1
MARKER = "lsr-export.json"
_PART = "part-{:05d}.jsonl"
_SLICE_POSTINGS = 1 << 20


@dataclass(frozen=True)
class ExportStats:
    """What :func:`export_index` wrote."""

    path: str
    documents: int
    postings: int
    files: int
    empty_documents: int
    scale: float
    seconds: float


_replaceable = marked_dir_check(MARKER, FORMAT, "files", "Anserini export")


def export_index(index, out_dir: str | os.PathLike, *, bits: int = 8, docs_per_file: int = 1_000_000,
                 range_postings: int = 1 << 26, overwrite: bool = False, progress: bool = False) -> ExportStats:
    """Write ``index`` (an :class:`lsr.Index` or its path) to ``out_dir`` as a ``JsonVectorCollection``.

    ``bits``: the impact range a float index is quantised to (8 or 16); ignored for quantised
    indexes. ``docs_per_file``: documents per ``part-NNNNN.jsonl``. ``range_postings``: postings
    held in memory at once while the documents are assembled (about 5 bytes each).
    """
    import time

    import orjson

    from lsr.index import Index
    from lsr.index.kernels.invert import doc_lengths, invert_range
    from lsr.progress import Progress

    t0 = time.perf_counter()
    if not isinstance(index, Index):
        index = Index.open(index)
    for name, v in (("docs_per_file", docs_per_file), ("range_postings", range_postings)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise InputError(f"{name} must be a positive integer, got {v!r}")
    scale, cap = index.integer_scale(bits)
    spaced = next((t for t in index.terms if not t or any(c.isspace() for c in t)), None)
    if spaced is not None:
        raise InputError(f"{index.path}: the term {spaced!r} is empty or holds white space, which Anserini's "
                         "pre-tokenised indexing would split; this index cannot be exported as a JsonVectorCollection")
    refuse_input_overlap(out_dir, [index.path])
    out, build = start_output_dir(out_dir, overwrite, _replaceable, "an Anserini export")
    try:
        n_docs = index.num_documents
        bundle = index.postings_arrays
        df = np.diff(np.asarray(index.term_offsets))
        buf = np.empty(int(df.max()) if len(df) else 1, np.int32)
        lengths = doc_lengths(bundle, n_docs, buf)
        terms = index.terms
        files: list[str] = []
        written = empty = 0
        handle = None
        with Progress("lsr anserini export", total=n_docs, unit="docs", enabled=progress) as bar:
            first = 0
            while first < n_docs:
                # the next range: as many documents as fit in range_postings (at least one)
                ends = np.cumsum(lengths[first:], dtype=np.int64)
                last = first + max(1, int(np.searchsorted(ends, range_postings, side="right")))
                indptr = np.zeros(last - first + 1, np.int64)
                np.cumsum(lengths[first:last], out=indptr[1:])
                t_ids = np.empty(int(indptr[-1]), np.int32)
                imps = np.empty(int(indptr[-1]), index.postings_impacts.dtype)
                invert_range(bundle, first, last, indptr, t_ids, imps, buf)
                # the JSON lines, a slice of about a million postings at a time (Python objects cost
                # tens of bytes a posting, the arrays above a few)
                a_doc = first
                while a_doc < last:
                    fit = int(np.searchsorted(indptr[a_doc - first + 1:], indptr[a_doc - first] + _SLICE_POSTINGS,
                                              side="right"))
                    b_doc = a_doc + max(1, fit)
                    lo, hi = int(indptr[a_doc - first]), int(indptr[b_doc - first])
                    if index.is_float:
                        q = np.floor(imps[lo:hi].astype(np.float64) * scale + 0.5).astype(np.int64)
                    else:
                        q = imps[lo:hi].astype(np.int64)
                    ids = index.doc_ids(np.arange(a_doc, b_doc))
                    ip = (indptr[a_doc - first:b_doc - first + 1] - lo).tolist()
                    tl, ql = t_ids[lo:hi].tolist(), q.tolist()
                    for i, did in enumerate(ids):
                        if (a_doc + i) % docs_per_file == 0:
                            if handle is not None:
                                handle.close()
                            files.append(_PART.format(len(files)))
                            handle = open(os.path.join(build, files[-1]), "wb")
                        a, b = ip[i], ip[i + 1]
                        vec = {terms[t]: w for t, w in zip(tl[a:b], ql[a:b]) if w > 0}
                        empty += not vec
                        written += len(vec)
                        handle.write(orjson.dumps({"id": did, "contents": "", "vector": vec}) + b"\n")
                    bar.update(b_doc - a_doc)
                    a_doc = b_doc
                first = last
        if handle is not None:
            handle.close()
        marker: dict[str, Any] = {
            "format": FORMAT, "version": VERSION, "documents": n_docs, "postings": written,
            "empty_documents": empty, "files": files,
            "source": {"path": os.path.abspath(index.path), "counts": index.manifest["counts"],
                       "impact_dtype": index.manifest["impact_dtype"], "quantization": index.quantization,
                       "encoder": index.encoder},
            "quantization": ({"method": "float-to-int", "bits": bits, "scale": scale, "max_impact": cap,
                              "rounding": "floor(weight * scale + 0.5)"} if index.is_float
                             else {"method": "as-stored", "scale": 1.0}),
        }
        with open(os.path.join(build, MARKER), "w", encoding="utf-8") as f:
            json.dump(marker, f, indent=1, ensure_ascii=False)
        move_into_place(build, out, _replaceable)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return ExportStats(out, n_docs, written, len(files), empty, scale, time.perf_counter() - t0)


__all__ = ["ExportStats", "export_index"]
