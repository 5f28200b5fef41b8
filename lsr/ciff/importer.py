"""Build an lsr index from a CIFF file, reading it message by message."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from typing import Any

import numpy as np

from lsr.config import IndexConfig, QuantizationConfig
from lsr.errors import InputError
from lsr.progress import Progress

from . import common_index_format_v1_pb2 as pb
from .export import METADATA_FORMAT, METADATA_PREFIX
from .stream import CiffFormatError, DelimitedReader

_FLUSH_POSTINGS = 1 << 20   # postings gathered before they go to the builder
_DOC_CHUNK = 1 << 16
_MAX_TF = 65535             # uint16 impacts


def lsr_metadata(description: str) -> dict[str, Any] | None:
    """The ``lsr-metadata:`` JSON object of a description that lsr wrote (:func:`export_index`), else None."""
    for line in description.splitlines():
        if line.startswith(METADATA_PREFIX):
            try:
                meta = json.loads(line[len(METADATA_PREFIX):])
            except ValueError:
                return None
            if isinstance(meta, dict) and meta.get("format") == METADATA_FORMAT:
                return meta
    return None


def _check_header(path: str, h: pb.Header) -> None:
    def bad(what: str) -> CiffFormatError:
        return CiffFormatError(f"{path}: CIFF header: {what}")

    if h.version != 1:
        raise bad(f"version {h.version}, lsr reads version 1")
    for name in ("num_postings_lists", "num_docs", "total_postings_lists", "total_docs",
                 "total_terms_in_collection"):
        if getattr(h, name) < 0:
            raise bad(f"{name} is negative ({getattr(h, name)})")
    if h.total_docs != h.num_docs:
        raise bad(f"num_docs {h.num_docs} differs from total_docs {h.total_docs}: the file holds the records "
                  "of part of a collection, lsr imports a whole one")
    if h.num_postings_lists > h.total_postings_lists:
        raise bad(f"num_postings_lists {h.num_postings_lists} exceeds total_postings_lists {h.total_postings_lists}, "
                  "the vocabulary size")
    if h.total_postings_lists != h.num_postings_lists:
        warnings.warn(f"{path}: the file holds {h.num_postings_lists} of the collection's {h.total_postings_lists} "
                      "postings lists (total_postings_lists): the index has only those terms", stacklevel=3)
    if h.num_docs == 0:
        raise bad("num_docs is 0: no documents to import")
    if not math.isfinite(h.average_doclength) or h.average_doclength < 0:
        raise bad(f"average_doclength {h.average_doclength} is not a finite number >= 0")


def import_index(path: str | os.PathLike, out_dir: str | os.PathLike, config: IndexConfig | None = None, *,
                 overwrite: bool = False, progress: bool = False):
    """Build an lsr index at ``out_dir`` from the CIFF file ``path``; returns the opened :class:`~lsr.index.Index`.

    A plain or gzip-compressed (``.ciff.gz``, as Anserini writes on request) file. CIFF docid ``d`` becomes lsr's document ``d`` (its ``collection_docid`` the external id), each
    postings list a term (vocabulary in file order), each ``tf`` the impact: uint8 when every tf is
    at most 255, else uint16 (a tf above 65535 is an error), quantisation recorded as identity
    (scale 1), so a query's scores are sums of query weight times tf. The DocRecords' ``doclength``
    values are stored as ``doc_lengths.npy``; the header (and its description) goes to the manifest
    entry ``provenance.ciff``; an encoder that an lsr export recorded in the description is recorded
    again, so text queries work. ``config``: the index settings (block sizes, run size);
    quantisation and reorder are the import's own (identity, none) and may not be set.

    The file is checked while it is read; a truncated or corrupt file, header counts that disagree
    with the content, postings lists out of term order (UTF-8 byte order) or a term twice, doc ids
    not ascending or beyond ``num_docs``, a ``df`` or ``cf`` that disagrees with its postings, a tf
    below 1, DocRecords whose docids are not 0, 1, 2, ... or whose ids are empty, repeated or hold
    whitespace each raise :class:`~lsr.ciff.CiffFormatError` (an :class:`~lsr.errors.InputError`),
    and nothing is left at ``out_dir`` or beside it (the build is written aside and renamed into
    place, :class:`~lsr.index.builder.IndexBuilder`; ``overwrite`` replaces an lsr index or an empty
    directory). A header whose ``total_terms_in_collection`` or ``average_doclength`` disagree with the
    doclengths, or whose ``total_postings_lists`` exceeds ``num_postings_lists`` (a partial export), is
    imported with a warning. Memory: about 1 million postings, one postings list, and the builder's run buffer.
    """
    from lsr.index.builder import IndexBuilder

    config = config or IndexConfig()
    if config.quantization != QuantizationConfig() or config.reorder != "none":
        raise InputError("import_index: a CIFF import keeps the tf values and the doc ids as they are; "
                         "quantization and reorder are not settings of it")
    path = os.fspath(path)
    with DelimitedReader(path) as r:
        if r.size == 0:
            raise CiffFormatError(f"{path}: empty file, not a CIFF file")
        h = r.read(pb.Header, "the header")
        _check_header(path, h)
        meta = lsr_metadata(h.description)
        encoder = meta.get("encoder") if meta else None
        if encoder is not None and not isinstance(encoder, dict):
            warnings.warn(f"{path}: the lsr-metadata line names an encoder that is not a JSON object; not recorded")
            encoder = None
        n_docs = h.num_docs
        b = IndexBuilder(out_dir, dataclasses.replace(config, quantization=QuantizationConfig(bits=16)),
                         overwrite=overwrite, encoder=encoder, inputs=[path])
        with b:
            max_tf = _read_postings(r, b, h, progress)
            total_len = _read_doc_records(r, b, n_docs)
            if not r.at_end():
                more = "more data follows" if r.compressed else f"{r.size - r.offset} bytes follow"
                raise CiffFormatError(f"{path}: {more} after the last of the {n_docs} DocRecords the header "
                                      "announces (its counts disagree with the content)")
            # statistics, not counts of messages: writers fill them in differently (Anserini's doclengths are
            # Lucene's lossy norms while its total is exact; some writers leave them 0), so a warning
            avg = total_len / n_docs
            if total_len != h.total_terms_in_collection or \
                    not math.isclose(h.average_doclength, avg, rel_tol=1e-6, abs_tol=1e-9):
                warnings.warn(f"{path}: the header's total_terms_in_collection {h.total_terms_in_collection} and "
                              f"average_doclength {h.average_doclength:.6g} differ from the DocRecords' doclengths "
                              f"(sum {total_len}, average {avg:.6g}); the doclengths are kept, the header's values "
                              "are recorded in the manifest", stacklevel=2)
            # every tf is known now: the narrowest impact type that holds them, kept exactly (identity)
            b.config = dataclasses.replace(b.config, quantization=QuantizationConfig(bits=8 if max_tf <= 255 else 16))
            b.provenance = {"ciff": {
                "file": os.path.basename(path), "version": h.version, "num_postings_lists": h.num_postings_lists,
                "num_docs": h.num_docs, "total_postings_lists": h.total_postings_lists, "total_docs": h.total_docs,
                "total_terms_in_collection": h.total_terms_in_collection,
                "average_doclength": h.average_doclength, "description": h.description}}
    return b.index


def _read_postings(r: DelimitedReader, b, h: pb.Header, progress: bool) -> int:
    """Read the header's postings lists into the builder; returns the largest tf."""
    path, n_docs = r.path, h.num_docs
    prev: bytes | None = None
    max_tf = 0
    docs_parts: list[np.ndarray] = []
    tf_parts: list[np.ndarray] = []
    tid_parts: list[np.ndarray] = []
    pending = 0

    def flush() -> None:
        nonlocal pending
        if pending:
            b.add_postings(np.concatenate(docs_parts), np.concatenate(tid_parts), np.concatenate(tf_parts))
            docs_parts.clear(); tf_parts.clear(); tid_parts.clear()
            pending = 0

    with Progress("ciff import", h.num_postings_lists, unit="terms", enabled=progress) as bar:
        for i in range(h.num_postings_lists):
            what = f"postings list {i}"
            pl = r.read(pb.PostingsList, what)
            term = pl.term
            key = term.encode("utf-8")
            where = f"{path}: {what} (term {term!r})"
            if not term:
                raise CiffFormatError(f"{path}: {what} has an empty term (or is not a PostingsList: the header counts "
                                      f"{h.num_postings_lists} postings lists)")
            if prev is not None and key <= prev:
                raise CiffFormatError(f"{where} {'repeats the term before it' if key == prev else 'is out of order'}"
                                      f": CIFF postings lists come in ascending term order (UTF-8 bytes)")
            prev = key
            ps = pl.postings
            n = len(ps)
            if pl.df != n:
                raise CiffFormatError(f"{where}: df {pl.df} but {n} postings")
            tid = b.term_ids([term])[0]
            if n:
                gaps = np.fromiter((p.docid for p in ps), np.int64, count=n)
                tf = np.fromiter((p.tf for p in ps), np.int64, count=n)
                if gaps[0] < 0 or (n > 1 and gaps[1:].min() < 1):
                    j = int(np.flatnonzero(gaps < (np.arange(n) > 0))[0])
                    raise CiffFormatError(f"{where}: doc id gap {int(gaps[j])} at posting {j}: doc ids must "
                                          "ascend strictly (the first one >= 0, every later gap >= 1)")
                docs = np.cumsum(gaps)
                if docs[-1] >= n_docs:
                    raise CiffFormatError(f"{where}: doc id {int(docs[-1])} but the header counts {n_docs} "
                                          f"documents (doc ids 0..{n_docs - 1})")
                lo, hi = int(tf.min()), int(tf.max())
                if lo < 1:
                    raise CiffFormatError(f"{where}: tf {lo}: every posting's tf must be at least 1")
                if hi > _MAX_TF:
                    raise CiffFormatError(f"{where}: tf {hi} is above {_MAX_TF}, the largest impact lsr stores "
                                          "as an integer (uint16)")
                if pl.cf != int(tf.sum()):
                    raise CiffFormatError(f"{where}: cf {pl.cf} but its postings' tf values sum to {int(tf.sum())}")
                max_tf = max(max_tf, hi)
                docs_parts.append(docs)
                tf_parts.append(tf)
                tid_parts.append(np.full(n, tid, np.int32))
                pending += n
                if pending >= _FLUSH_POSTINGS:
                    flush()
            elif pl.cf != 0:
                raise CiffFormatError(f"{where}: cf {pl.cf} but no postings")
            bar.update()
        flush()
    return max_tf


def _read_doc_records(r: DelimitedReader, b, n_docs: int) -> int:
    """Read the header's DocRecords into the builder (ids, lengths); returns the sum of their lengths."""
    total = 0
    for a in range(0, n_docs, _DOC_CHUNK):
        ids, lens = [], []
        for d in range(a, min(n_docs, a + _DOC_CHUNK)):
            rec = r.read(pb.DocRecord, f"DocRecord {d}")
            if rec.docid != d:
                raise CiffFormatError(f"{r.path}: DocRecord {d} has docid {rec.docid}: the DocRecords must "
                                      f"number the documents 0, 1, 2, ... in order")
            if rec.doclength < 0:
                raise CiffFormatError(f"{r.path}: DocRecord {d} has a negative doclength ({rec.doclength})")
            cid = rec.collection_docid
            if not cid or cid.split() != [cid]:
                raise CiffFormatError(f"{r.path}: DocRecord {d} has collection_docid {cid!r}: lsr needs a "
                                      "non-empty external id without whitespace")
            ids.append(cid)
            lens.append(rec.doclength)
        b.add_doc_ids(ids)
        b.add_doc_lengths(np.asarray(lens, np.int64))
        total += sum(lens)
    return total
