"""Streaming, bounded-memory index builder.

Documents are parsed in batches; postings are buffered as flat arrays and,
every ``run_postings`` postings, sorted by term (a stable counting sort, so
postings stay in doc order) and spilled to disk as a *run*. Runs cover
ascending, disjoint doc id ranges, so the final merge appends each run's
segment of every term in run order: no heap merge, one sequential pass over
each run. Quantisation happens during the merge, once the global maximum
weight is known, directly into memory-mapped output arrays.

Everything is written into a sibling ``<out>.building-*`` directory that is
renamed into place after the manifest is written: an interrupted build leaves
no directory that opens as an index. The building directory holds
``building.json`` (the pid and host of the building process) until it is moved
into place; a later build into the same parent removes a building directory
whose process is gone, with a warning (:func:`remove_stale_builds`).

``overwrite`` replaces only an lsr index (a directory whose ``manifest.json``
names the index format and that holds no file lsr did not write there) or an
empty directory; a file, any other directory, or an output that equals or
contains an input is refused (:func:`check_replaceable_index`). The new index
takes the old one's place in one ``renameat2(RENAME_EXCHANGE)`` call, so a
reader opening the path finds the old index or the new one, never none; the
old one is then deleted (readers that have it open keep their memory maps).
Where the exchange is unsupported (not Linux, or a file system without it) the
old index is renamed aside and the new one renamed into place, and for the
moment between those two renames the path does not exist.

With ``store_text`` the documents' text goes into a docstore in the index
(:mod:`lsr.index.docstore`). Text to index in one step (an encoder feeding
:meth:`IndexBuilder.add_batch`) is :mod:`lsr.index.text_index`.
"""

from __future__ import annotations

import array
import datetime as _dt
import itertools
import json
import os
import shutil
import socket
import tempfile
import time
import warnings
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from lsr import __version__
from lsr.config import IndexConfig
from lsr.errors import InputError, LsrError
from lsr.io import iter_vector_records, read_vectors_encoder
from lsr.outputs import exchange, refuse_input_overlap

from . import docstore as ds
from . import format as fmt
from .kernels.blockmax import LOCALITY_THRESHOLD, range_locality
from .kernels.build import block_maxima, count_kept, scatter_run, sort_run
from .kernels.postings import low_length, pair_fill, pair_sizes

_MAX_DOCS = np.iinfo(np.int32).max
_PLAIN_NUMBERS = {int, float}


class _Vocab(dict):
    """term -> id, assigning the next id to a new term on lookup."""

    def __missing__(self, term):
        i = len(self)
        self[term] = i
        return i


class IndexBuilder:
    """Build an index from documents added one by one or in array batches.

    Use as a context manager (an exception aborts the build and removes its
    files) or call :meth:`finish` / :meth:`abort` yourself. ``overwrite``
    replaces an lsr index or an empty directory at ``out_dir`` (module
    docstring); ``inputs``: the paths the build reads, which ``out_dir`` may
    not equal or contain. A library installs no signal handler: a process
    killed by a signal it does not handle leaves the ``.building-*`` directory
    to the next build's cleanup::

        with IndexBuilder("idx", IndexConfig()) as b:
            for doc_id, vec in docs:
                b.add(doc_id, vec)
        index = b.index
    """

    def __init__(self, out_dir: str | os.PathLike, config: IndexConfig | None = None, *,
                 overwrite: bool = False, encoder: Mapping[str, Any] | None = None,
                 vocabulary: Sequence[str] | None = None, progress: bool = False,
                 total: int | None = None, store_text: bool = False, inputs: Sequence = ()):
        self.config = config or IndexConfig()
        self.out_dir = os.path.abspath(os.fspath(out_dir))
        self.overwrite = overwrite
        self.encoder = dict(encoder) if encoder is not None else None
        refuse_input_overlap(self.out_dir, inputs)
        if os.path.lexists(self.out_dir):
            if not overwrite:
                raise InputError(f"{self.out_dir} already exists (use overwrite / --overwrite to replace it)")
            check_replaceable_index(self.out_dir)
        parent = os.path.dirname(self.out_dir)
        if not os.path.isdir(parent):
            raise InputError(f"parent directory {parent} does not exist")
        self.vocab = _Vocab()
        if vocabulary is not None:
            for t in vocabulary:
                if not isinstance(t, str) or not t:
                    raise InputError(f"vocabulary term {t!r} is not a non-empty string")
                if t in self.vocab:
                    raise InputError(f"vocabulary has term {t!r} twice")
                self.vocab[t]  # noqa: B018 - assigns the id
        self._fixed_vocab = vocabulary is not None
        remove_stale_builds(parent)
        self.build_dir = tempfile.mkdtemp(prefix=os.path.basename(self.out_dir) + BUILDING_INFIX, dir=parent)
        try:
            _write_owner(self.build_dir)
            self.runs_dir = os.path.join(self.build_dir, "runs")
            os.mkdir(self.runs_dir)
        except BaseException:
            shutil.rmtree(self.build_dir, ignore_errors=True)
            raise
        self.n_docs = 0
        self.n_empty = 0
        self.max_weight = 0.0
        self.integral = True
        self._id_hashes = array.array("q")
        self._id_offsets = array.array("q", [0])
        self._ids_file = open(os.path.join(self.build_dir, "docids.bin"), "wb")
        self._docstore = ds.DocstoreWriter(self.build_dir) if store_text else None
        self._order: np.ndarray | None = None   # the bp order, new doc i = old doc order[i]
        # term-major input (add_postings, add_doc_ids): set by the first such call; add / add_batch refuse it
        self._term_major = False
        self._max_doc = -1
        self._doc_lengths: array.array | None = None   # add_doc_lengths
        self.provenance: dict[str, Any] = {}   # written to the manifest as "provenance" when not empty
        # current batch (Python path)
        self._b_terms: list[int] = []
        self._b_weights: list[float] = []
        self._b_lens: list[int] = []
        self._b_where: list[str] = []
        # in-memory run buffer
        self._r_terms: list[np.ndarray] = []
        self._r_docs: list[np.ndarray] = []
        self._r_weights: list[np.ndarray] = []
        self._r_size = 0
        self.runs: list[str] = []
        self.index = None
        self._done = False
        self._t0 = time.perf_counter()
        self.progress = progress
        self._bar = tqdm(total=total, unit="doc", desc="index", disable=not progress, smoothing=0.05)

    # ------------------------------------------------------------------ input
    def __enter__(self) -> "IndexBuilder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._done:
            self.finish()

    def _add_id(self, doc_id: str) -> None:
        if self.n_docs >= _MAX_DOCS:
            raise InputError(f"more than {_MAX_DOCS} documents: doc ids are int32")
        b = doc_id.encode("utf-8")
        self._ids_file.write(b)
        self._id_offsets.append(self._id_offsets[-1] + len(b))
        self._id_hashes.append(hash(doc_id))
        self.n_docs += 1

    def _add_ids(self, doc_ids: Sequence[str]) -> None:
        """:meth:`_add_id` of many ids at once."""
        if self.n_docs + len(doc_ids) > _MAX_DOCS:
            raise InputError(f"more than {_MAX_DOCS} documents: doc ids are int32")
        enc = [d.encode("utf-8") for d in doc_ids]
        self._ids_file.write(b"".join(enc))
        ends = np.cumsum(np.fromiter(map(len, enc), dtype=np.int64, count=len(enc))) + self._id_offsets[-1]
        self._id_offsets.frombytes(ends.astype(np.int64).tobytes())
        self._id_hashes.extend(map(hash, doc_ids))
        self.n_docs += len(doc_ids)

    def term_ids(self, terms: Sequence[str]) -> np.ndarray:
        """The builder's ids of ``terms`` (int32), new terms numbered next in the order given.

        With a fixed ``vocabulary`` a term outside it is an error.
        """
        out = np.empty(len(terms), dtype=np.int32)
        for i, t in enumerate(terms):
            if self._fixed_vocab and t not in self.vocab:
                raise InputError(f"term {t!r} is not in the given vocabulary")
            if not isinstance(t, str) or not t:
                raise InputError(f"term {t!r} is not a non-empty string")
            out[i] = self.vocab[t]
        return out

    def _add_texts(self, texts: Sequence[str] | None, n: int) -> None:
        if self._docstore is None:
            if texts is not None:
                raise InputError("texts were given but this builder stores no text (store_text=False)")
            return
        if texts is None or len(texts) != n:
            raise InputError(f"store_text: {n} document(s) need {n} text(s), got "
                             f"{'none' if texts is None else len(texts)}")
        self._docstore.add(texts)

    def add(self, doc_id: str, vector: Mapping[str, float], where: str | None = None,
            text: str | None = None) -> None:
        """Add one document (``{term: weight}``, weights finite and >= 0; its ``text`` with ``store_text``)."""
        where = where or f"document {doc_id!r}"
        if self._term_major:
            raise LsrError("add: this build takes postings by document number (add_postings); not both")
        if not isinstance(vector, Mapping):
            raise InputError(f"{where}: vector must be a mapping of term to weight")
        if not set(map(type, vector.values())) <= _PLAIN_NUMBERS:
            for w in vector.values():
                if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)):
                    raise InputError(f"{where}: weight {w!r} is not a number")
        if "" in vector:
            raise InputError(f"{where}: empty term in vector")
        if self._fixed_vocab:
            unknown = [t for t in vector if t not in self.vocab]
            if unknown:
                raise InputError(f"{where}: term {unknown[0]!r} is not in the given vocabulary")
        self._add_texts(None if text is None else [text], 1)
        self._b_terms.extend(map(self.vocab.__getitem__, vector.keys()))
        self._b_weights.extend(vector.values())
        self._b_lens.append(len(vector))
        self._b_where.append(where)
        self._add_id(doc_id)
        if len(self._b_lens) >= self.config.batch_docs:
            self._flush_batch()

    def _flush_batch(self) -> None:
        if not self._b_lens:
            return
        lens = np.asarray(self._b_lens, dtype=np.int64)
        n_batch = len(lens)
        terms = np.asarray(self._b_terms, dtype=np.int32)
        try:
            weights = np.asarray(self._b_weights, dtype=np.float64)
        except (TypeError, ValueError):
            for i, w in enumerate(self._b_weights):
                if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)):
                    rec = int(np.searchsorted(np.cumsum(lens), i, side="right"))
                    raise InputError(f"{self._b_where[rec]}: weight {w!r} is not a number") from None
            raise
        first_doc = self.n_docs - n_batch
        docs = np.repeat(np.arange(first_doc, self.n_docs, dtype=np.int32), lens)
        self._b_terms.clear(); self._b_weights.clear(); self._b_lens.clear()
        wheres, self._b_where = self._b_where, []
        self._add_arrays(docs, terms, weights, lens, wheres)
        self._bar.update(n_batch)

    def add_batch(self, doc_ids: Sequence[str], indptr: np.ndarray, term_ids: np.ndarray,
                  weights: np.ndarray, texts: Sequence[str] | None = None) -> None:
        """Add documents given in CSR form over the builder's vocabulary.

        Document ``i`` has terms ``term_ids[indptr[i]:indptr[i+1]]`` (ids into
        the builder's vocabulary: the ``vocabulary`` given to the constructor,
        or ids from :meth:`term_ids`) with ``weights`` likewise; with
        ``store_text``, ``texts[i]`` is its text.
        """
        if self._term_major:
            raise LsrError("add_batch: this build takes postings by document number (add_postings); not both")
        self._flush_batch()
        indptr = np.asarray(indptr, dtype=np.int64)
        term_ids = np.ascontiguousarray(term_ids, dtype=np.int32)
        weights = np.asarray(weights)
        if weights.dtype.kind not in "iuf":
            raise InputError(f"weights must be numbers, got dtype {weights.dtype}")
        n = len(doc_ids)
        if indptr.shape != (n + 1,) or indptr[0] != 0 or indptr[-1] != len(term_ids) \
                or len(weights) != len(term_ids) or np.any(np.diff(indptr) < 0):
            raise InputError("add_batch: indptr, term_ids and weights are not a valid CSR batch")
        if len(term_ids) and (term_ids.min() < 0 or term_ids.max() >= len(self.vocab)):
            raise InputError("add_batch: term id outside the vocabulary")
        for did in doc_ids:
            # did.split() == [did]: non-empty and no character for which str.isspace() holds
            if not isinstance(did, str) or did.split() != [did]:
                raise InputError(f"doc id {did!r} is empty, not a string, or contains whitespace")
        self._add_texts(texts, n)
        self._add_ids(doc_ids)
        lens = np.diff(indptr)
        docs = np.repeat(np.arange(self.n_docs - n, self.n_docs, dtype=np.int32), lens)
        if weights.dtype != np.float32:   # float32 is what _add_arrays keeps; checks are exact on it
            weights = weights.astype(np.float64, copy=False)
        self._add_arrays(docs, term_ids, weights, lens, None, doc_ids)
        self._bar.update(n)

    # ------------------------------------------------------- term-major input
    def _start_term_major(self, what: str) -> None:
        if not self._term_major and (self.n_docs or self._b_lens or self._r_size):
            raise LsrError(f"{what}: this build already has documents from add / add_batch; not both")
        if self._docstore is not None:
            raise InputError(f"{what}: a build from postings stores no text (store_text=False)")
        self._term_major = True

    def add_postings(self, docs: np.ndarray, term_ids: np.ndarray, weights: np.ndarray) -> None:
        """Add postings by internal document number, for input that comes term by term (a CIFF file).

        ``docs`` (document numbers, 0-based), ``term_ids`` (ids from :meth:`term_ids` or the
        ``vocabulary``) and ``weights`` (finite, >= 0; 0 drops the posting) are parallel arrays.
        The postings of a term must come in ascending document order, within a call and across
        calls, each (document, term) once: runs are merged by appending each run's part of a term
        in run order, and :meth:`finish` checks the merged lists (an error names the term).
        Document ``d``'s external id is the ``d``-th one given to :meth:`add_doc_ids`, which must
        name every document a posting refers to before :meth:`finish`; a named document without
        postings counts as empty. Not to be mixed with :meth:`add` / :meth:`add_batch`; stores no
        text.
        """
        self._start_term_major("add_postings")
        docs = np.asarray(docs)
        term_ids = np.asarray(term_ids)
        weights = np.asarray(weights)
        n = len(docs)
        if docs.shape != (n,) or term_ids.shape != (n,) or weights.shape != (n,):
            raise InputError("add_postings: docs, term_ids and weights must be 1-d arrays of one length")
        if docs.dtype.kind not in "iu" or term_ids.dtype.kind not in "iu" or weights.dtype.kind not in "iuf":
            raise InputError("add_postings: docs and term_ids must be integers, weights numbers")
        if not n:
            return
        if docs.min() < 0 or docs.max() >= _MAX_DOCS:
            raise InputError(f"add_postings: a document number is outside 0..{_MAX_DOCS - 1}")
        if term_ids.min() < 0 or term_ids.max() >= len(self.vocab):
            raise InputError("add_postings: term id outside the vocabulary")
        w = weights.astype(np.float64, copy=False)
        with np.errstate(over="ignore"):
            bad = ~np.isfinite(w.astype(np.float32)) | (w < 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            term = next(itertools.islice(self.vocab.keys(), int(term_ids[i]), None))
            raise InputError(f"document number {int(docs[i])}: weight {w[i]:.6g} of term {term!r} is not finite, "
                             "negative or beyond float32's range")
        self._max_doc = max(self._max_doc, int(docs.max()))
        self._add_arrays(docs.astype(np.int32), term_ids.astype(np.int32), w, np.zeros(0, np.int64), None)

    def add_doc_ids(self, doc_ids: Sequence[str]) -> None:
        """Name the next documents of a build from :meth:`add_postings`, in document number order."""
        self._start_term_major("add_doc_ids")
        for did in doc_ids:
            if not isinstance(did, str) or did.split() != [did]:
                raise InputError(f"doc id {did!r} is empty, not a string, or contains whitespace")
        self._add_ids(list(doc_ids))

    def add_doc_lengths(self, lengths: np.ndarray) -> None:
        """Record the next documents' lengths (integers >= 0, in document number order), stored as the
        optional ``doc_lengths.npy``; given at all, one a document by :meth:`finish`."""
        lengths = np.asarray(lengths)
        if lengths.ndim != 1 or (len(lengths) and (lengths.dtype.kind not in "iu" or lengths.min() < 0)):
            raise InputError("add_doc_lengths: lengths must be a 1-d array of integers >= 0")
        if self._doc_lengths is None:
            self._doc_lengths = array.array("q")
        self._doc_lengths.frombytes(lengths.astype(np.int64).tobytes())

    def _check_term_major(self, term_offsets: np.ndarray, docs: np.ndarray, chunk: int = 1 << 22) -> None:
        """Check the merged postings of a build from :meth:`add_postings` (every document named, doc
        numbers ascending within each term) and count the documents without postings."""
        if self._max_doc >= self.n_docs:
            raise InputError(f"a posting refers to document number {self._max_doc}, but only {self.n_docs} "
                             "document id(s) were given")
        seen = np.zeros(self.n_docs, dtype=bool)
        starts = term_offsets[1:-1]
        for a in range(0, len(docs), chunk):
            part = np.asarray(docs[a:min(len(docs), a + chunk + 1)])
            seen[part] = True
            down = np.flatnonzero(part[1:] <= part[:-1]) + a + 1   # posting p not above posting p - 1
            down = down[~np.isin(down, starts)]   # except where a new term starts
            if len(down):
                p = int(down[0])
                t = int(np.searchsorted(term_offsets, p, side="right")) - 1
                term = next(itertools.islice(self.vocab.keys(), t, None))
                raise InputError(f"the postings of term {term!r} are not in ascending document order "
                                 f"(document {int(docs[p])} after {int(docs[p - 1])})")
        self.n_empty = int(self.n_docs - np.count_nonzero(seen))

    def _add_arrays(self, docs, terms, weights, lens, wheres, doc_ids=None) -> None:
        # weights are checked as stored (float32): a finite float64 beyond float32's range becomes inf
        with np.errstate(over="ignore"):
            w32 = weights.astype(np.float32)
        bad = ~np.isfinite(w32) | (weights < 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            rec = int(np.searchsorted(np.cumsum(lens), i, side="right"))
            where = wheres[rec] if wheres is not None else f"document {doc_ids[rec]!r}"
            term = next(itertools.islice(self.vocab.keys(), int(terms[i]), None))
            w = weights[i]
            if not np.isfinite(w):
                what = "not finite"
            elif w < 0:
                what = "negative"
            else:
                what = "beyond float32's range"
            raise InputError(f"{where}: weight {w:.6g} of term {term!r} is {what} (weights must be finite, >= 0 "
                             f"and at most {float(np.finfo(np.float32).max):.4g}, as they are stored in float32)")
        self.n_empty += int(np.count_nonzero(lens == 0))
        keep = w32 > 0
        if not keep.all():
            docs, terms, w32 = docs[keep], terms[keep], w32[keep]
        if len(w32):
            self.max_weight = max(self.max_weight, float(w32.max()))
            if self.integral:
                self.integral = bool(np.all(w32 == np.floor(w32)))
        self._r_docs.append(docs); self._r_terms.append(terms); self._r_weights.append(w32)
        self._r_size += len(w32)
        if self._r_size >= self.config.run_postings:
            self._spill()

    def _spill(self) -> None:
        if not self._r_size:
            return
        terms = np.concatenate(self._r_terms)
        docs = np.concatenate(self._r_docs)
        weights = np.concatenate(self._r_weights)
        self._r_terms.clear(); self._r_docs.clear(); self._r_weights.clear()
        self._r_size = 0
        counts, sdocs, sw = sort_run(terms, docs, weights, len(self.vocab))
        _check_no_duplicate_terms(counts, sdocs)
        run = os.path.join(self.runs_dir, f"run-{len(self.runs):05d}")
        os.mkdir(run)
        np.save(os.path.join(run, "counts.npy"), counts)
        np.save(os.path.join(run, "docs.npy"), sdocs)
        np.save(os.path.join(run, "weights.npy"), sw)
        self.runs.append(run)

    # ------------------------------------------------------------------ finish
    def abort(self) -> None:
        """Stop the build and delete everything it wrote."""
        self._done = True
        self._bar.close()
        if not self._ids_file.closed:
            self._ids_file.close()
        if self._docstore is not None:
            self._docstore.abort()
        shutil.rmtree(self.build_dir, ignore_errors=True)

    def finish(self):
        """Merge the runs, write the index, move it into place; returns the opened Index."""
        if self._done:
            raise LsrError("this build is already finished or aborted")
        try:
            index = self._finish()
        except BaseException:
            self.abort()
            raise
        self._done = True
        self.index = index
        return index

    def _finish(self):
        from .index import Index

        self._flush_batch()
        self._spill()
        self._bar.close()
        self._ids_file.close()
        if self.n_docs == 0:
            raise InputError("empty collection: no documents to index")
        self._check_duplicate_ids()
        qcfg = self.config.quantization
        max_impact = (1 << qcfg.bits) - 1
        if qcfg.method == "float":
            method, scale, impact_dtype, quantize = "float", 1.0, np.float32, False
        elif qcfg.method == "fixed":
            method, scale, quantize = "fixed", float(qcfg.scale), True
        elif qcfg.method == "auto" and self.integral and self.max_weight <= max_impact:
            method, scale, quantize = "identity", 1.0, True
        else:
            method, quantize = "max", True
            scale = (max_impact / self.max_weight) if self.max_weight > 0 else 1.0
        if quantize:
            impact_dtype = np.uint8 if qcfg.bits == 8 else np.uint16
        n_terms = len(self.vocab)
        d = self.build_dir

        # each run is mapped only while it is read, so that the pages of the runs already merged leave the
        # process (held all at once, the runs alone would add 8 bytes a posting to its resident memory)
        runs = _RunFiles(self.runs)
        totals = np.zeros(n_terms, dtype=np.int64)
        for counts, _, w in runs:
            count_kept(counts, w, scale, max_impact, quantize, totals)
        term_offsets = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(totals, out=term_offsets[1:])
        n_post = int(term_offsets[-1])
        if n_post == 0:
            raise InputError("no postings: every document vector is empty (or every weight rounds to 0)")
        if method == "max":
            _warn_rounded_away(runs, n_post, qcfg.bits, scale, self.max_weight, n_terms)
        # doc ids are merged into a scratch array, then stored pair-coded (kernels/postings.py)
        docs_path = os.path.join(d, "scratch-docs.npy")
        out_docs = np.lib.format.open_memmap(docs_path, "w+", np.int32, (n_post,))
        out_imp = np.lib.format.open_memmap(os.path.join(d, "postings_impacts.npy"), "w+", impact_dtype, (n_post,))
        cursor = term_offsets[:-1].copy()
        clipped = 0
        for counts, docs, w in runs:
            clipped += scatter_run(counts, docs, w, scale, max_impact, quantize, cursor, out_docs, out_imp)
        if not np.array_equal(cursor, term_offsets[1:]):
            raise LsrError("internal error: merge cursor mismatch")
        if self._term_major:
            self._check_term_major(term_offsets, out_docs)
        del runs
        shutil.rmtree(self.runs_dir)
        np.save(os.path.join(d, "term_offsets.npy"), term_offsets)
        reorder_info = {"method": self.config.reorder}
        id_offsets = np.frombuffer(self._id_offsets, dtype=np.int64)
        id_bytes_path = os.path.join(d, "docids.bin")
        if self.config.reorder == "bp":
            reorder_info, id_offsets = self._reorder_bp(term_offsets, out_docs, out_imp, id_offsets, id_bytes_path)

        B = self.config.block_size
        n_blocks = int(((totals + B - 1) // B).sum())
        block_offsets = np.zeros(n_terms + 1, dtype=np.int64)
        block_max = np.zeros(n_blocks, dtype=impact_dtype)
        block_last = np.zeros(n_blocks, dtype=np.int32)
        term_max = np.zeros(n_terms, dtype=impact_dtype)
        block_maxima(term_offsets, out_docs, out_imp, B, block_offsets, block_max, block_last, term_max)
        for name, arr in (("block_offsets", block_offsets), ("block_max", block_max),
                          ("block_last_doc", block_last), ("term_max", term_max)):
            np.save(os.path.join(d, name + ".npy"), arr)
        del block_offsets, block_max, block_last

        # pair-coded doc ids: per term, the ranges of range_block_docs documents
        # its postings touch, with their maxima, counts and the low doc id bits
        shift = self.config.range_block_docs.bit_length() - 1
        pairs = np.zeros(n_terms, dtype=np.int64)
        code_bytes = np.zeros(n_terms, dtype=np.int64)
        pair_sizes(term_offsets, out_docs, shift, pairs, code_bytes)
        range_offsets = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(pairs, out=range_offsets[1:])
        code_offsets = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(code_bytes, out=code_offsets[1:])
        del pairs, code_bytes
        n_pairs = int(range_offsets[-1])
        locality = range_locality(n_pairs, totals, self.n_docs, shift)
        r_max = np.lib.format.open_memmap(os.path.join(d, "range_max.npy"), "w+", impact_dtype, (n_pairs,))
        r_codes = np.lib.format.open_memmap(os.path.join(d, "range_codes.npy"), "w+", np.uint8,
                                            (int(code_offsets[-1]),))
        low = np.lib.format.open_memmap(os.path.join(d, "postings_low.npy"), "w+", np.uint8,
                                        (low_length(n_post, shift),))
        pair_fill(term_offsets, out_docs, out_imp, shift, range_offsets, code_offsets, r_max, r_codes, low)
        np.save(os.path.join(d, "range_offsets.npy"), range_offsets)
        np.save(os.path.join(d, "range_code_offsets.npy"), code_offsets)
        for arr in (out_imp, r_max, r_codes, low):
            arr.flush()
        del out_docs, out_imp, r_max, r_codes, low
        os.unlink(docs_path)
        range_info = {"docs": self.config.range_block_docs, "locality": round(locality, 4),
                      "threshold": LOCALITY_THRESHOLD}

        docstore = None
        if self._docstore is not None:
            docstore = self._docstore.finish()
            if self._order is not None:
                docstore = ds.reorder(d, docstore, self._order)
            docstore["files"] = {name: fmt.file_entry(os.path.join(d, name)) for name in ds.FILES}

        id_bytes = np.fromfile(id_bytes_path, dtype=np.uint8)
        np.save(os.path.join(d, "docid_bytes.npy"), id_bytes)
        del id_bytes
        os.unlink(id_bytes_path)
        np.save(os.path.join(d, "docid_offsets.npy"), id_offsets)
        arrays = list(fmt.ARRAY_DTYPES)
        if self._doc_lengths is not None:
            if len(self._doc_lengths) != self.n_docs:
                raise InputError(f"{len(self._doc_lengths)} document length(s) for {self.n_docs} documents")
            lengths = np.frombuffer(self._doc_lengths, dtype=np.int64)
            np.save(os.path.join(d, "doc_lengths.npy"), lengths if self._order is None else lengths[self._order])
            arrays.append("doc_lengths")
        vocab_terms = list(self.vocab.keys())
        with open(os.path.join(d, fmt.VOCAB), "w", encoding="utf-8") as f:
            json.dump(vocab_terms, f, ensure_ascii=False)

        if clipped:
            warnings.warn(f"{clipped} impacts exceeded {max_impact} at scale {scale} and were clipped")
        manifest = {
            "format": fmt.FORMAT_NAME,
            "format_version": fmt.FORMAT_VERSION,
            "created_by": f"lsr {__version__}",
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "build_seconds": round(time.perf_counter() - self._t0, 3),
            "counts": {"documents": self.n_docs, "terms": n_terms, "postings": n_post,
                       "blocks": n_blocks, "range_pairs": n_pairs, "empty_documents": self.n_empty},
            "impact_dtype": np.dtype(impact_dtype).name,
            "quantization": {"method": method, "bits": 32 if method == "float" else qcfg.bits,
                             "scale": scale, "max_weight": self.max_weight,
                             "rounding": "floor(weight * scale + 0.5)", "clipped": clipped,
                             "requested": qcfg.to_dict()},
            "block_size": B,
            "range_block_docs": self.config.range_block_docs,
            "range_blocks": range_info,
            "reorder": reorder_info,
            "config": self.config.to_dict(),
            "encoder": self.encoder,
            "arrays": {name: fmt.array_entry(os.path.join(d, name + ".npy")) for name in arrays},
            "files": {fmt.VOCAB: fmt.file_entry(os.path.join(d, fmt.VOCAB))},
        }
        if docstore is not None:
            manifest["docstore"] = docstore
        if self.provenance:
            manifest["provenance"] = self.provenance
        fmt.write_json_atomic(os.path.join(d, fmt.MANIFEST), manifest)
        fmt.fsync_dir(d)
        self._move_into_place()
        return Index.open(self.out_dir, verify=False)

    def _reorder_bp(self, term_offsets, out_docs, out_imp, id_offsets, id_bytes_path):
        """Renumber the documents by recursive graph bisection (in place); returns (manifest entry, id offsets)."""
        from .kernels.docids import gather_ids
        from .kernels.reorder import apply_order, bp_order, forward_from_inverted, log_gap_cost

        t0 = time.perf_counter()
        before = log_gap_cost(term_offsets, out_docs)
        doc_offsets, doc_terms = forward_from_inverted(term_offsets, out_docs, self.n_docs)
        bar = tqdm(desc="reordering (BP levels)", unit="level", disable=not self.progress, leave=False)

        def progress(done, total):
            bar.total = total
            bar.n = done
            bar.refresh()

        order = bp_order(doc_offsets, doc_terms, len(self.vocab), progress=progress)
        bar.close()
        self._order = order
        del doc_offsets, doc_terms
        new_docs, new_imp = apply_order(term_offsets, out_docs, out_imp, order)
        out_docs[:] = new_docs
        out_imp[:] = new_imp
        del new_docs, new_imp
        after = log_gap_cost(term_offsets, out_docs)
        # the external ids follow their documents
        ids = np.fromfile(id_bytes_path, dtype=np.uint8)
        joined = gather_ids(id_offsets, ids, order.astype(np.int64))
        lengths = np.diff(id_offsets)[order]
        new_offsets = np.zeros(self.n_docs + 1, np.int64)
        np.cumsum(lengths, out=new_offsets[1:])
        keep = np.ones(len(joined), bool)
        keep[new_offsets[1:] + np.arange(self.n_docs)] = False   # the newline after each id
        joined[keep].tofile(id_bytes_path)
        info = {"method": "bp", "seconds": round(time.perf_counter() - t0, 3),
                "log_gap_before": round(float(before), 4), "log_gap_after": round(float(after), 4)}
        return info, new_offsets

    def _check_duplicate_ids(self) -> None:
        h = np.frombuffer(self._id_hashes, dtype=np.int64)
        order = np.argsort(h, kind="stable")
        hs = h[order]
        same = np.flatnonzero(hs[1:] == hs[:-1])
        if not len(same):
            return
        offs = np.frombuffer(self._id_offsets, dtype=np.int64)
        ids = np.memmap(os.path.join(self.build_dir, "docids.bin"), dtype=np.uint8, mode="r")

        def doc_id(i: int) -> bytes:
            return bytes(ids[offs[i]:offs[i + 1]])

        for j in same:
            a, b = int(order[j]), int(order[j + 1])
            if doc_id(a) == doc_id(b):
                raise InputError(f"duplicate doc id {doc_id(a).decode('utf-8')!r} "
                                 f"(documents {a} and {b} in input order)")

    def _move_into_place(self) -> None:
        """Put the finished build at ``out_dir`` (module docstring: exchange, or two renames)."""
        out, new = self.out_dir, self.build_dir
        owner = os.path.join(new, OWNER_FILE)
        if not os.path.lexists(out):
            os.unlink(owner)
            os.rename(new, out)
            fmt.fsync_dir(os.path.dirname(out))
            return
        if not self.overwrite:
            raise InputError(f"{out} appeared during the build; not replacing it")
        check_replaceable_index(out)   # again: it may have changed during the build
        if exchange(new, out):
            trash = new   # now the old index (or the symbolic link that was at out)
        else:
            trash = new + "-old"   # still a <out>.building-* name, so a killed cleanup is found later
            os.rename(out, trash)
            os.rename(new, out)
        # the owner record came along with the new index: it goes with what is to be deleted
        moved = os.path.join(out, OWNER_FILE)
        try:
            if os.path.islink(trash):
                os.unlink(moved)
            else:
                os.rename(moved, os.path.join(trash, OWNER_FILE))
        except OSError:   # another build's cleanup removed the old index first
            if os.path.lexists(moved):
                os.unlink(moved)
        fmt.fsync_dir(os.path.dirname(out))
        if os.path.islink(trash):
            os.unlink(trash)   # a link that was at out: what it pointed to is left alone
        else:
            shutil.rmtree(trash, ignore_errors=True)


BUILDING_INFIX = ".building-"
OWNER_FILE = "building.json"
_OWNER_FORMAT = "lsr-build-owner/1"
# files an index directory may hold besides those its manifest lists
_INDEX_NAMES = frozenset({fmt.MANIFEST, fmt.MANIFEST + ".tmp", fmt.VOCAB, OWNER_FILE, *ds.FILES,
                          *(name + ".npy" for name in (*fmt.ARRAY_DTYPES, *fmt.OPTIONAL_ARRAY_DTYPES))})


def _write_owner(build_dir: str) -> None:
    record = {"format": _OWNER_FORMAT, "pid": os.getpid(), "host": socket.gethostname(),
              "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    with open(os.path.join(build_dir, OWNER_FILE), "w", encoding="utf-8") as f:
        json.dump(record, f)


def _read_owner(build_dir: str) -> dict | None:
    try:
        with open(os.path.join(build_dir, OWNER_FILE), encoding="utf-8") as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("format") != _OWNER_FORMAT or not isinstance(rec.get("pid"), int) \
            or isinstance(rec.get("pid"), bool) or rec["pid"] <= 0 or not isinstance(rec.get("host"), str):
        return None
    return rec


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a zombie, killed but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, OverflowError):
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] != b"Z"
    except (OSError, ValueError):
        return True


def _dir_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _is_index_manifest(path: str) -> bool:
    try:
        with open(os.path.join(path, fmt.MANIFEST), encoding="utf-8") as f:
            m = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and m.get("format") == fmt.FORMAT_NAME


def remove_stale_builds(parent: str) -> list[str]:
    """Remove the ``*.building-*`` directories in ``parent`` that no running build owns; returns them.

    A building directory is removed, with a warning naming it and its size, when its
    ``building.json`` names a process on this host that is gone (killed by SIGKILL, a crash, the
    machine's power), or when it has no ``building.json`` but holds a whole index while its target
    ``<name>`` holds one too (an old index swapped out by a build stopped before deleting it). One
    without an owner record and without such a target (a build by an older lsr, or one stopped
    between two renames) is left, with a warning; so is one owned by a live process or by another
    host. Nothing else (``<DIR>.partial/``, encode parts) is touched.
    """
    removed = []
    try:
        names = sorted(os.listdir(parent))
    except OSError:
        return removed
    host = socket.gethostname()
    for name in names:
        i = name.rfind(BUILDING_INFIX)
        path = os.path.join(parent, name)
        if i <= 0 or os.path.islink(path) or not os.path.isdir(path):
            continue
        owner = _read_owner(path)
        if owner is not None:
            if owner["host"] != host or owner["pid"] == os.getpid() or _process_alive(owner["pid"]):
                continue
            why = f"left by process {owner['pid']} ({owner.get('started', '?')}), which is gone"
        elif _is_index_manifest(path) and _is_index_manifest(os.path.join(parent, name[:i])):
            why = "an index replaced by a build that stopped before deleting it"
        else:
            if _is_index_manifest(path):
                warnings.warn(f"{path} holds an lsr index but no build owns it and {name[:i]} holds none: "
                              f"left in place (rename it to {name[:i]} to use it, or delete it)")
            continue
        size = _dir_bytes(path)
        shutil.rmtree(path, ignore_errors=True)
        if os.path.exists(path):
            warnings.warn(f"could not remove the stale build directory {path} ({why})")
            continue
        removed.append(path)
        warnings.warn(f"removed the stale build directory {path} ({size / 2**20:.1f} MiB): {why}")
    return removed


def check_replaceable_index(path: str) -> None:
    """Raise InputError unless ``overwrite`` may replace ``path``: an lsr index or an empty directory.

    An lsr index is a directory whose ``manifest.json`` names the index format and that holds only
    files an index build writes (those the manifest lists, and the index file names). A file, a
    symbolic link to one, any other directory, or an index holding other files is refused, naming
    the path: ``overwrite`` never deletes what lsr did not make.
    """
    if not os.path.isdir(path):
        raise InputError(f"{path} exists and is not a directory: --overwrite replaces only an lsr index or an "
                         "empty directory, never a file (remove it yourself or choose another output)")
    try:
        entries = os.listdir(path)
    except OSError as e:
        raise InputError(f"{path}: cannot list it ({e.strerror})") from None
    if not entries:
        return
    if fmt.MANIFEST not in entries:
        raise InputError(f"{path} is not an lsr index (no {fmt.MANIFEST}) and not empty: --overwrite replaces "
                         "only an lsr index or an empty directory (choose another output)")
    try:
        with open(os.path.join(path, fmt.MANIFEST), encoding="utf-8") as f:
            m = json.load(f)
    except (OSError, ValueError):
        m = None
    if not isinstance(m, dict) or m.get("format") != fmt.FORMAT_NAME:
        raise InputError(f"{path}/{fmt.MANIFEST} is not an lsr index manifest: --overwrite replaces only an "
                         "lsr index or an empty directory (choose another output)")
    known = set(_INDEX_NAMES)
    for key in ("arrays", "files"):
        if isinstance(m.get(key), dict):
            known.update((k + ".npy") if key == "arrays" else k for k in m[key] if isinstance(k, str))
    foreign = sorted(set(entries) - known)
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise InputError(f"{path} holds {foreign[0]!r}{more}, which an lsr index build did not write: "
                         "--overwrite would delete it (move it, or choose another output)")


ROUNDED_AWAY_WARN = 0.01   # max quantisation warns when more than this share of the postings rounds to 0


class _RunFiles:
    """The spilled runs, each opened (``counts`` in memory, ``docs`` and ``weights`` memory-mapped) only
    for the step of an iteration that reads it: ``for counts, docs, weights in runs``."""

    def __init__(self, paths: list[str]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self):
        for r in self.paths:
            yield (np.load(os.path.join(r, "counts.npy")), np.load(os.path.join(r, "docs.npy"), mmap_mode="r"),
                   np.load(os.path.join(r, "weights.npy"), mmap_mode="r"))

    def n_postings(self) -> int:
        return sum(int(np.load(os.path.join(r, "counts.npy")).sum()) for r in self.paths)


def _warn_rounded_away(runs: _RunFiles, n_kept: int, bits: int, scale: float, max_weight: float,
                       n_terms: int) -> None:
    """Warn when max quantisation rounded more than ``ROUNDED_AWAY_WARN`` of the postings (weights > 0) to 0,
    saying how many and which setting keeps them: 16 bits if they keep all but at most that share, else
    float impacts."""
    n_all = runs.n_postings()
    lost = n_all - n_kept
    if lost <= ROUNDED_AWAY_WARN * n_all:
        return
    fix = "--quantization float (method='float')"
    if bits == 8:
        kept16 = np.zeros(n_terms, dtype=np.int64)
        for counts, _, w in runs:
            count_kept(counts, w, (65535 / max_weight), 65535, True, kept16)
        lost16 = n_all - int(kept16.sum())
        if lost16 <= ROUNDED_AWAY_WARN * n_all:
            fix = f"--bits 16 (bits=16; {lost16} would still round to 0) or " + fix
    warnings.warn(f"max quantisation at {bits} bits rounded {lost} of {n_all} postings ({100 * lost / n_all:.1f} %) "
                  f"to 0 and dropped them: weights below {0.5 / scale:.4g} (the largest weight is "
                  f"{max_weight:.6g}); {fix} keeps them", stacklevel=2)


def _check_no_duplicate_terms(counts: np.ndarray, docs: np.ndarray) -> None:
    """Within a term's sorted postings, a repeated doc id means a document listed a term twice."""
    if len(docs) > 1:
        dup = (docs[1:] == docs[:-1])
        if dup.any():
            # a boundary between two terms may repeat a doc legitimately: mask those
            starts = np.cumsum(counts)[:-1]
            starts = starts[(starts > 0) & (starts < len(docs))]
            dup[starts - 1] = False
            if dup.any():
                raise InputError(f"document number {int(docs[np.flatnonzero(dup)[0]])} lists the same term twice")


def build_index(source: str | os.PathLike | Sequence[str | os.PathLike] | Iterable,
                out_dir: str | os.PathLike, config: IndexConfig | None = None, *, overwrite: bool = False,
                encoder: Any = None, progress: bool = False, allow_partial: bool = False, **text_options: Any):
    """Build an index from term weights (JSONL files, vector collection directories, Python records)
    or, given an encoder, from text.

    Term weights: ``source`` is a path, a list of paths (read in order), or an
    iterable of ``{"id", "vector"}`` dicts or ``(id, vector)`` pairs; ``encoder``,
    if given, is the ``Encoder.describe()`` dict to record (a mapping). For
    directories written by ``lsr encode``, their ``encoder.json`` is recorded
    in the manifest unless ``encoder`` is given (inputs from different
    encoders are refused); an unfinished ``lsr encode`` directory is refused
    unless ``allow_partial``, and then its state's encoder description is
    recorded (:func:`lsr.io.read_vectors_encoder`).

    ``overwrite`` replaces an existing lsr index or empty directory at
    ``out_dir``, atomically (:class:`IndexBuilder`); an output that equals or
    contains an input path is refused.

    Text: with ``encoder`` an :class:`~lsr.encoders.Encoder` or an encoder spec
    (a name, preset, checkpoint directory or hub id as a string or path, or an
    EncoderConfig), ``source`` is a corpus (JSONL, TSV or ``irds:<id>``) that is
    encoded and indexed in one step by
    :func:`~lsr.index.text_index.build_index_from_text`, which takes
    ``text_options`` (``store_text``, ``restart``, ``batch_size``, ``limit``, ...).

    Returns the opened :class:`~lsr.index.Index`.
    """
    if encoder is not None and not isinstance(encoder, Mapping):
        from .text_index import build_index_from_text

        if allow_partial:
            raise InputError("allow_partial applies to term-weight inputs (lsr encode directories), not to a "
                             "build from text")
        return build_index_from_text(source, out_dir, config, encoder=encoder, overwrite=overwrite,
                                     progress=progress, **text_options)
    if text_options:
        raise InputError(f"{', '.join(sorted(text_options))}: options of a build from text (give an encoder)")
    if isinstance(source, (str, os.PathLike)):
        sources: list = [source]
    elif isinstance(source, (list, tuple)) and source and all(isinstance(s, (str, os.PathLike)) for s in source):
        sources = list(source)
    else:
        sources = [source]
    paths = [s for s in sources if isinstance(s, (str, os.PathLike))]
    refuse_input_overlap(out_dir, paths)
    infos = [read_vectors_encoder(s, allow_partial) for s in paths]
    if encoder is None:
        found = [e for e in infos if e is not None]

        def identity(e):
            return {k: v for k, v in e.items() if k != "runtime"}

        if found and (len(found) != len(infos) or any(identity(e) != identity(found[0]) for e in found)):
            raise InputError("the inputs were not all encoded with the same encoder (their encoder.json differ)")
        encoder = found[0] if found else None
    with IndexBuilder(out_dir, config, overwrite=overwrite, encoder=encoder, progress=progress,
                      inputs=paths) as b:
        for src in sources:
            for doc_id, vec, where in iter_vector_records(src):
                b.add(doc_id, vec, where)
    return b.index
