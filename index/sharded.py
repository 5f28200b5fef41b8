"""A sharded index: ordinary indexes holding contiguous ranges of one collection's documents.

Layout (format ``lsr-sharded-index``, version 1)::

    manifest.json     format name/version, counts, the quantisation, impact dtype, block settings,
                      reorder and encoder the shards share, and the shard list: for each shard its
                      relative path, its global document range [doc_start, doc_end), its counts and
                      the SHA-256 of its manifest.json
    shard-00000/      a normal lsr index (:mod:`lsr.index.format`): documents doc_start..doc_end-1
    shard-00001/      of the collection's doc order, numbered 0.. inside the shard
    ...

The shards are cut from an ordinary index (:func:`shard_index`): its documents, in its doc order
(after any reordering), are split into ``S`` contiguous ranges of nearly equal size, and each
term's postings (doc-sorted) are split with them, streamed term by term into one
:class:`~lsr.index.builder.IndexBuilder` a shard through its term-major input
(:meth:`~lsr.index.builder.IndexBuilder.add_postings`). The impacts are the source's, already
quantised, so every shard keeps one global quantisation (the source's scale, or float) and the
shards' scores are the source's scores. Every shard has the source's whole vocabulary (same term
ids; a term without postings in a shard has an empty list there), its doc ids, document lengths
and stored text. Everything is written into a sibling ``<out>.building-*`` directory and renamed
into place after the top-level manifest is written: an interrupted split leaves nothing that opens.

Search (:class:`ShardedSearcher`; ``lsr.Searcher`` on a sharded index is one) prepares the queries
once, takes each shard's top k, adds the shard's first global doc number, and merges
(:func:`merge_topk`): score descending, ties by ascending global doc number, which is the
unsharded index's tie rule, so exact processors return exactly the unsharded hits.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Sequence

import numpy as np

from lsr import __version__
from lsr.config import IndexConfig, QuantizationConfig, SearchConfig
from lsr.errors import IndexFormatError, InputError, LsrError
from lsr.io import read_json_object
from lsr.outputs import move_into_place, refuse_input_overlap, start_output_dir
from lsr.results import Results

from . import format as fmt
from .index import Index, ManifestFacts
from .search import QuerySide, Searcher, _own_query_encoder, _query_items

FORMAT_NAME = "lsr-sharded-index"
FORMAT_VERSION = 1
SHARD_NAME = "shard-{:05d}"

# what every shard must share with the others and with the top-level manifest
_SHARED_KEYS = ("impact_dtype", "quantization", "block_size", "range_block_docs", "encoder")


# ---------------------------------------------------------------------------------------------- status
@dataclass(frozen=True)
class ShardStatus:
    """Which shards answered a search: ``total`` shards, ``answered`` and ``missing`` their numbers."""

    total: int
    answered: tuple[int, ...]
    missing: tuple[int, ...]

    @property
    def complete(self) -> bool:
        """Every shard answered (the hits are the whole index's top k)."""
        return not self.missing

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "answered": list(self.answered), "missing": list(self.missing),
                "complete": self.complete}


class ShardsUnavailable(LsrError):
    """Some shards did not answer (their actors stayed down or timed out); ``status`` names them."""

    def __init__(self, status: ShardStatus, detail: str = ""):
        self.status = status
        shown = ", ".join(map(str, status.missing))
        super().__init__(f"{len(status.missing)} of {status.total} shard(s) did not answer (shard "
                         f"{shown}){': ' + detail if detail else ''}; no partial top k returned")


# ---------------------------------------------------------------------------------------------- merge
def merge_topk(docs: Sequence[np.ndarray], scores: Sequence[np.ndarray], counts: Sequence[np.ndarray],
               k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge per-shard top-k lists into one top k per query.

    Part ``i`` gives ``docs[i]`` (global doc numbers, [nq, k_i]), ``scores[i]`` ([nq, k_i]) and
    ``counts[i]`` ([nq]: query q's hits are the first ``counts[i][q]`` columns, in rank order as a
    searcher returns them: score descending, ties by ascending doc number). Returns ``(docs
    int64[nq, k], scores[nq, k], counts int64[nq])``: per query the ``k`` best of all parts' hits,
    score descending, ties by ascending doc number; columns past ``counts[q]`` are 0. Scores keep the
    parts' dtype (their common type).
    """
    if not len(docs) or not (len(docs) == len(scores) == len(counts)):
        raise ValueError("merge_topk: one docs, scores and counts array per part, at least one part")
    parts = [(np.asarray(x, np.int64), np.asarray(y), np.asarray(c, np.int64)) for x, y, c in zip(docs, scores, counts)]
    if len(parts) == 1:   # one part: already in order; cut to k, zeros past the counts
        d, s, c = parts[0]
        c = np.minimum(c, k)
        keep = np.arange(min(k, d.shape[1]))[None, :] < c[:, None]
        d = np.where(keep, d[:, :k], 0)
        s = np.where(keep, s[:, :k], np.zeros(1, s.dtype))
        if d.shape[1] < k:
            d, s = np.pad(d, ((0, 0), (0, k - d.shape[1]))), np.pad(s, ((0, 0), (0, k - s.shape[1])))
        return d, s, c
    d = np.concatenate([x for x, _, _ in parts], axis=1)
    s = np.concatenate([y for _, y, _ in parts], axis=1)
    valid = np.concatenate([np.arange(x.shape[1])[None, :] < c[:, None] for x, _, c in parts], axis=1)
    nq = d.shape[0]
    d = np.where(valid, d, 0)   # past a part's count the columns hold anything (uninitialised memory)
    s = np.where(valid, s, np.zeros(1, s.dtype))
    key = -s.astype(np.float64) if s.dtype.kind == "f" else -s.astype(np.int64)
    # lexsort: the last key is the primary one (valid hits first, then score descending, then doc)
    order = np.lexsort((d, key, ~valid), axis=-1)[:, :k]
    rows = np.arange(nq)[:, None]
    out_counts = np.minimum(valid.sum(axis=1), k).astype(np.int64)
    width = order.shape[1]
    keep = np.arange(width)[None, :] < out_counts[:, None]
    out_docs = np.where(keep, d[rows, order], 0)
    out_scores = np.where(keep, s[rows, order], np.zeros(1, s.dtype))
    if width < k:
        out_docs = np.pad(out_docs, ((0, 0), (0, k - width)))
        out_scores = np.pad(out_scores, ((0, 0), (0, k - width)))
    return out_docs, out_scores, out_counts


# ---------------------------------------------------------------------------------------------- manifest
def is_sharded(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory whose manifest names the sharded format (any version)."""
    mpath = os.path.join(os.fspath(path), fmt.MANIFEST)
    if not os.path.isfile(mpath):
        return False
    try:
        m = read_json_object(mpath, IndexFormatError, "manifest")
    except LsrError:
        return False
    return m.get("format") == FORMAT_NAME


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def read_sharded_manifest(path: str) -> dict[str, Any]:
    """Read and check the top-level ``manifest.json`` of a sharded index: format, version, fields,
    and a shard list whose paths are plain names inside ``path`` and whose document ranges are
    contiguous from 0 to the document count."""
    if not os.path.isdir(path):
        raise IndexFormatError(f"index {path} does not exist" if not os.path.exists(path)
                               else f"index {path} is not a directory")
    mpath = os.path.join(path, fmt.MANIFEST)
    if not os.path.exists(mpath):
        raise IndexFormatError(f"{path} is not an lsr index (no {fmt.MANIFEST})")
    m = read_json_object(mpath, IndexFormatError, "manifest (unreadable or corrupt)")
    if m.get("format") != FORMAT_NAME:
        raise IndexFormatError(f"{path}: not a sharded lsr index (format {m.get('format')!r}, "
                               f"expected {FORMAT_NAME!r})")
    v = m.get("format_version")
    if v != FORMAT_VERSION:
        raise IndexFormatError(f"{path}: sharded index format version {v!r} is not supported by this lsr "
                               f"(it reads version {FORMAT_VERSION}); shard the index again with `lsr index "
                               "--shards` or lsr.index.sharded.shard_index")
    for key in ("counts", "shards", *_SHARED_KEYS):
        if key not in m:
            raise IndexFormatError(f"{mpath}: missing field {key!r}")
    counts = m["counts"]
    if not isinstance(counts, dict) or not all(_is_count(counts.get(k)) for k in ("documents", "terms", "postings")):
        raise IndexFormatError(f"{mpath}: counts of documents, terms and postings must be integers >= 0")
    shards = m["shards"]
    if not isinstance(shards, list) or not shards:
        raise IndexFormatError(f"{mpath}: the shard list is empty or not a list")
    start = 0
    for i, e in enumerate(shards):
        if not isinstance(e, dict):
            raise IndexFormatError(f"{mpath}: shard {i} is not a JSON object")
        p = e.get("path")
        if not isinstance(p, str) or not p or p in (".", "..") or "/" in p or os.sep in p:
            raise IndexFormatError(f"{mpath}: shard {i}: path {p!r} is not a directory name inside the index")
        a, b = e.get("doc_start"), e.get("doc_end")
        if not (_is_count(a) and _is_count(b)) or a != start or b <= a:
            raise IndexFormatError(f"{mpath}: shard {i}: document range [{a}, {b}) does not continue the "
                                   f"previous shard's (expected to start at {start})")
        if not isinstance(e.get("manifest_sha256"), str):
            raise IndexFormatError(f"{mpath}: shard {i}: no manifest_sha256")
        start = b
    if start != counts["documents"]:
        raise IndexFormatError(f"{mpath}: the shards hold documents 0..{start - 1}, the counts say "
                               f"{counts['documents']}")
    return m


class ShardedLayout(ManifestFacts):
    """The facts of a sharded index that need none of the shards' postings: its manifest, each shard's
    checked manifest, the shared vocabulary and each term's largest impact over all shards. Enough to
    prepare queries (the Ray searcher's driver uses only this); :class:`ShardedIndex` opens the shards.

    Checks: the top-level manifest (:func:`read_sharded_manifest`); for every shard, that its
    directory exists, its ``manifest.json`` has the SHA-256 the top-level manifest records, it is an
    index of the supported format, holds as many documents as its range, and has the same vocabulary,
    impact dtype, quantisation, block settings and encoder as the others.
    """

    def __init__(self, path: str | os.PathLike, verify: bool = True):
        self.path = os.path.abspath(os.fspath(path))
        self.manifest = m = read_sharded_manifest(self.path)
        self.shard_paths: list[str] = []
        self.shard_manifests: list[dict] = []
        vocab_sha = None
        for i, e in enumerate(m["shards"]):
            sp = os.path.join(self.path, e["path"])
            if not os.path.isdir(sp):
                raise IndexFormatError(f"{self.path}: shard {i} ({e['path']}) is missing")
            mp = os.path.join(sp, fmt.MANIFEST)
            if not os.path.isfile(mp):
                raise IndexFormatError(f"{sp}: shard {i} has no {fmt.MANIFEST}")
            if fmt.sha256_file(mp) != e["manifest_sha256"]:
                raise IndexFormatError(f"{mp}: checksum mismatch (shard {i}'s manifest is not the one the sharded "
                                       "index records: replaced or corrupted)")
            sm = fmt.read_manifest(sp)
            for key in _SHARED_KEYS:
                if sm.get(key) != m[key]:
                    raise IndexFormatError(f"{sp}: shard {i}'s {key} differs from the sharded index's (shards "
                                           "must share one quantisation, block settings and encoder)")
            if sm["counts"]["documents"] != e["doc_end"] - e["doc_start"]:
                raise IndexFormatError(f"{sp}: shard {i} holds {sm['counts']['documents']} documents, its range "
                                       f"[{e['doc_start']}, {e['doc_end']}) says {e['doc_end'] - e['doc_start']}")
            if sm["counts"]["terms"] != m["counts"]["terms"]:
                raise IndexFormatError(f"{sp}: shard {i} has {sm['counts']['terms']} terms, the sharded index "
                                       f"{m['counts']['terms']} (every shard has the whole vocabulary)")
            sha = (sm["files"].get(fmt.VOCAB) or {}).get("sha256")
            if vocab_sha is None:
                vocab_sha = sha
            elif sha != vocab_sha:
                raise IndexFormatError(f"{sp}: shard {i}'s vocabulary differs from shard 0's")
            self.shard_paths.append(sp)
            self.shard_manifests.append(sm)
        self.starts = np.asarray([e["doc_start"] for e in m["shards"]] + [m["shards"][-1]["doc_end"]], np.int64)
        self._verify = verify

    @property
    def num_shards(self) -> int:
        return len(self.shard_paths)

    @property
    def has_text(self) -> bool:
        return all(sm.get("docstore") is not None for sm in self.shard_manifests)

    @cached_property
    def terms(self) -> list[str]:
        return fmt.check_vocab(self.shard_paths[0], self.shard_manifests[0], self._verify)

    @cached_property
    def vocab(self) -> dict[str, int]:
        """term -> term id (the same in every shard)."""
        return {t: i for i, t in enumerate(self.terms)}

    @cached_property
    def term_max(self) -> np.ndarray:
        """Each term's largest impact over all shards (the unsharded index's ``term_max``)."""
        out = None
        for sp, sm in zip(self.shard_paths, self.shard_manifests):
            entry = sm["arrays"].get("term_max")
            fpath = os.path.join(sp, "term_max.npy")
            if not isinstance(entry, dict) or not os.path.isfile(fpath) or os.path.getsize(fpath) != entry.get("bytes"):
                raise IndexFormatError(f"{sp}: term_max.npy is missing or does not match its manifest")
            if self._verify and fmt.sha256_file(fpath) != entry.get("sha256"):
                raise IndexFormatError(f"{fpath}: checksum mismatch (the file is corrupted)")
            tm = np.load(fpath, allow_pickle=False)
            if tm.shape != (self.num_terms,) or str(tm.dtype) != self.manifest["impact_dtype"]:
                raise IndexFormatError(f"{fpath}: shape {tm.shape} / dtype {tm.dtype} do not match the index")
            out = tm.copy() if out is None else np.maximum(out, tm)
        return out

    def shard_of(self, docs: np.ndarray) -> np.ndarray:
        """The shard holding each global doc number."""
        return np.searchsorted(self.starts[1:], np.asarray(docs, np.int64), side="right")

    def __repr__(self) -> str:
        c = self.manifest["counts"]
        return (f"{type(self).__name__}({self.path!r}, shards={self.num_shards}, documents={c['documents']}, "
                f"terms={c['terms']}, postings={c['postings']}, impacts={self.manifest['impact_dtype']})")


class ShardedIndex(ShardedLayout):
    """A sharded index with every shard opened (:meth:`lsr.index.Index.open`, memory-mapped).

    Open with :meth:`open` or ``lsr.Index.open(DIR)``. Doc numbers are global (shard ``i`` holds
    ``starts[i]..starts[i+1]-1``); :meth:`doc_ids`, :meth:`doc_text` and :meth:`internal_id` work on
    them as an :class:`~lsr.index.Index`'s do.
    """

    is_sharded = True

    def __init__(self, path: str | os.PathLike, verify: bool = True):
        super().__init__(path, verify)
        self.shards: list[Index] = []
        for i, sp in enumerate(self.shard_paths):
            ix = Index.open(sp, verify=verify)
            if ix.num_documents != self.starts[i + 1] - self.starts[i]:   # pragma: no cover - checked above
                raise IndexFormatError(f"{sp}: document count changed while opening")
            self.shards.append(ix)

    @classmethod
    def open(cls, path: str | os.PathLike, verify: bool = True) -> "ShardedIndex":
        """Open a sharded index: the layout's checks (:class:`ShardedLayout`), then every shard with
        :meth:`lsr.index.Index.open` (``verify``: the SHA-256 of every file too)."""
        return cls(path, verify)

    def size_bytes(self) -> int:
        """Bytes on disk of every shard plus the top-level manifest."""
        return int(os.path.getsize(os.path.join(self.path, fmt.MANIFEST)) + sum(s.size_bytes() for s in self.shards))

    def _split(self, docs: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        docs = np.asarray(docs, dtype=np.int64)
        if len(docs) and (docs.min() < 0 or docs.max() >= self.num_documents):
            raise IndexError("internal doc id out of range")
        return self.shard_of(docs), docs

    def doc_ids(self, docs: Sequence[int] | np.ndarray) -> list[str]:
        """External ids of global doc numbers."""
        which, docs = self._split(docs)
        if self.num_shards == 1:
            return self.shards[0].doc_ids(docs)
        out: list[str] = [""] * len(docs)
        for i in np.unique(which):
            pos = np.flatnonzero(which == i)
            for j, d in zip(pos.tolist(), self.shards[i].doc_ids(docs[pos] - self.starts[i])):
                out[j] = d
        return out

    def doc_id(self, doc: int) -> str:
        return self.doc_ids([doc])[0]

    @cached_property
    def _internal(self) -> dict[str, int]:
        """external id -> global doc number."""
        return {d: i for i, d in enumerate(self.doc_ids(np.arange(self.num_documents)))}

    def internal_id(self, doc_id: str) -> int:
        """Global doc number of an external doc id."""
        n = self._internal.get(doc_id)
        if n is None:
            raise IndexFormatError(f"doc id {doc_id!r} is not in the index")
        return n

    def doc_texts(self, docs: Sequence[str | int]) -> list[str]:
        """Stored texts of documents named by external id or global doc number (``--store-text``)."""
        if not self.has_text:
            raise InputError(f"{self.path} stores no document text (build it with --store-text / store_text=True)")
        out = []
        for d in docs:
            if isinstance(d, str):
                if d not in self._internal:
                    raise InputError(f"doc id {d!r} is not in the index")
                d = self._internal[d]
            if isinstance(d, (int, np.integer)) and not isinstance(d, bool) and 0 <= int(d) < self.num_documents:
                i = int(self.shard_of(np.asarray([int(d)]))[0])
                out.append(self.shards[i].doc_text(int(d) - int(self.starts[i])))
            else:
                raise InputError(f"document {d!r} is not in the index")
        return out

    def doc_text(self, doc: str | int) -> str:
        return self.doc_texts([doc])[0]


def open_index(path: str | os.PathLike, verify: bool = True) -> ShardedIndex:
    """:meth:`ShardedIndex.open` (what ``lsr.Index.open`` calls for a sharded directory)."""
    return ShardedIndex.open(path, verify)


# ---------------------------------------------------------------------------------------------- writing
def check_replaceable_sharded(path: str) -> None:
    """Raise InputError unless ``overwrite`` may replace ``path``: a sharded index holding only its
    manifest and its shards (each an lsr index holding only index files), an lsr index, or an empty
    directory (:func:`lsr.index.builder.check_replaceable_index`)."""
    from .builder import check_replaceable_index

    if not os.path.isdir(path) or not is_sharded(path):
        check_replaceable_index(path)
        return
    m = read_json_object(os.path.join(path, fmt.MANIFEST), InputError, "manifest")
    listed = [e.get("path") for e in m.get("shards", []) if isinstance(e, dict) and isinstance(e.get("path"), str)]
    for name in sorted(os.listdir(path)):
        if name in (fmt.MANIFEST, fmt.MANIFEST + ".tmp"):
            continue
        if name not in listed or "/" in name:
            raise InputError(f"{path} holds {name!r}, which a sharded index build did not write: --overwrite would "
                             "delete it (move it, or choose another output)")
        check_replaceable_index(os.path.join(path, name))


def _shard_config(src: Index, run_postings: int) -> IndexConfig:
    """The builder settings of a shard: the source's block settings, no reordering, and a quantisation
    that keeps the source's impacts as they are (float, or integers kept by ``auto``'s identity)."""
    if src.is_float:
        q = QuantizationConfig(method="float")
    else:
        q = QuantizationConfig(method="auto", bits=8 if src.postings_impacts.dtype == np.uint8 else 16)
    return IndexConfig(quantization=q, block_size=src.block_size, range_block_docs=int(src.manifest["range_block_docs"]),
                       reorder="none", run_postings=run_postings)


def shard_index(src_index_dir: str | os.PathLike | Index, out_dir: str | os.PathLike, shards: int,
                overwrite: bool = False, *, verify: bool = True, chunk_postings: int = 1 << 22,
                run_postings: int | None = None, progress: bool = False) -> ShardedIndex:
    """Split the index at ``src_index_dir`` into ``shards`` shards at ``out_dir`` (module docstring).

    Documents are cut into ``shards`` contiguous ranges of the source's doc order (sizes differ by at
    most one); each shard is a normal index with the source's vocabulary, quantised impacts,
    quantisation record, block settings, encoder, doc ids, document lengths and stored text.
    ``verify``: check the source's checksums when opening it. ``overwrite`` replaces a sharded index,
    an lsr index or an empty directory at ``out_dir`` (:func:`check_replaceable_sharded`), atomically
    (:func:`lsr.outputs.move_into_place`). Memory: ``chunk_postings`` postings of the source at a time
    plus each shard builder's run buffer of ``run_postings`` postings (default: IndexConfig's divided
    among the shards). ``progress``: the postings split so far, as a bar on a terminal and a line
    every 30 s otherwise (:class:`lsr.progress.Progress`). Returns the opened :class:`ShardedIndex`.
    """
    from lsr.progress import Progress

    from .builder import IndexBuilder, _write_owner, OWNER_FILE
    from .kernels.postings import decode_term_into

    if isinstance(shards, bool) or not isinstance(shards, (int, np.integer)) or shards < 1:
        raise InputError(f"shards must be a positive integer, got {shards!r}")
    shards = int(shards)
    if isinstance(src_index_dir, Index):
        src = src_index_dir
    else:
        if is_sharded(src_index_dir):
            raise InputError(f"{os.fspath(src_index_dir)} is already a sharded index; shard the unsharded one")
        src = Index.open(src_index_dir, verify=verify)
    n = src.num_documents
    if shards > n:
        raise InputError(f"{shards} shards for {n} documents: at most one shard a document")
    refuse_input_overlap(out_dir, [src.path], "sharded index")
    if run_postings is None:
        run_postings = max(1_000_000, IndexConfig().run_postings // shards)
    starts = (np.arange(shards + 1, dtype=np.int64) * n) // shards
    out, build = start_output_dir(out_dir, overwrite, check_replaceable_sharded, "a sharded index")
    builders: list = []
    try:
        _write_owner(build)
        cfg = _shard_config(src, run_postings)
        for i in range(shards):
            builders.append(IndexBuilder(os.path.join(build, SHARD_NAME.format(i)), cfg, encoder=src.encoder,
                                         vocabulary=src.terms))
        added = np.zeros(shards, np.int64)
        off = src.term_offsets
        t, T = 0, src.num_terms
        with Progress(f"splitting into {shards} shards", total=src.num_postings, unit="postings",
                      enabled=progress) as bar:
            while t < T:
                # the next terms up to about chunk_postings postings (at least one term)
                t_end = max(t + 1, int(np.searchsorted(off, off[t] + chunk_postings, side="right")) - 1)
                t_end = min(t_end, T)
                a, b = int(off[t]), int(off[t_end])
                if b > a:
                    docs = np.empty(b - a, np.int32)
                    for u in range(t, t_end):
                        if off[u + 1] > off[u]:
                            decode_term_into(off, src.range_code_offsets, src.range_codes, src.postings_low,
                                             src.range_shift, u, docs, int(off[u]) - a)
                    tids = np.repeat(np.arange(t, t_end, dtype=np.int32), np.diff(off[t:t_end + 1]))
                    imps = np.asarray(src.postings_impacts[a:b])
                    which = np.searchsorted(starts[1:], docs, side="right").astype(np.int16)
                    order = np.argsort(which, kind="stable")   # term, then doc order kept inside each shard
                    bounds = np.searchsorted(which[order], np.arange(shards + 1))
                    for i in range(shards):
                        sel = order[bounds[i]:bounds[i + 1]]
                        if len(sel):
                            builders[i].add_postings(docs[sel] - np.int32(starts[i]), tids[sel], imps[sel])
                            added[i] += len(sel)
                    bar.update(b - a)
                t = t_end
        lengths = src.arrays.get("doc_lengths")
        for i, bld in enumerate(builders):
            for c in range(int(starts[i]), int(starts[i + 1]), 100_000):
                e = min(c + 100_000, int(starts[i + 1]))
                bld.add_doc_ids(src.doc_ids(np.arange(c, e)))
            if lengths is not None:
                bld.add_doc_lengths(np.asarray(lengths[starts[i]:starts[i + 1]]))
        entries = []
        for i, bld in enumerate(builders):
            if added[i] == 0:
                raise InputError(f"shard {i} (documents {starts[i]}..{starts[i + 1] - 1}) would hold no postings "
                                 "(its documents are empty): use fewer shards")
            ix = bld.finish()
            if str(ix.postings_impacts.dtype) != src.manifest["impact_dtype"]:   # pragma: no cover
                raise LsrError(f"internal error: shard {i} has impacts {ix.postings_impacts.dtype}")
            entries.append(_finish_shard(src, ix, i, shards, int(starts[i]), int(starts[i + 1])))
        src_m = src.manifest
        counts = {"documents": n, "terms": src.num_terms, "postings": src.num_postings, "shards": shards,
                  "empty_documents": int(src_m["counts"].get("empty_documents", 0))}
        if sum(e["postings"] for e in entries) != src.num_postings:   # pragma: no cover - a programming error
            raise LsrError("internal error: the shards' postings do not add up to the source's")
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "created_by": f"lsr {__version__}",
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "counts": counts,
            "impact_dtype": src_m["impact_dtype"],
            "quantization": src_m["quantization"],
            "block_size": src_m["block_size"],
            "range_block_docs": src_m["range_block_docs"],
            "reorder": src_m.get("reorder"),
            "encoder": src_m.get("encoder"),
            "source": {"format_version": src_m["format_version"], "created_at": src_m.get("created_at"),
                       "manifest_sha256": fmt.sha256_file(os.path.join(src.path, fmt.MANIFEST))},
            "shards": entries,
        }
        fmt.write_json_atomic(os.path.join(build, fmt.MANIFEST), manifest)
        os.unlink(os.path.join(build, OWNER_FILE))
        fmt.fsync_dir(build)
        move_into_place(build, out, check_replaceable_sharded)
        fmt.fsync_dir(os.path.dirname(out))
    except BaseException:
        for bld in builders:
            if not bld._done:
                bld.abort()
        shutil.rmtree(build, ignore_errors=True)
        raise
    return ShardedIndex.open(out, verify=False)


def _finish_shard(src: Index, ix: Index, i: int, shards: int, start: int, end: int) -> dict[str, Any]:
    """Give shard ``i``'s manifest the source's quantisation record, settings and order, add its stored
    text, rewrite the manifest; returns the shard's entry of the top-level manifest."""
    from . import docstore as ds

    path = ix.path
    m = dict(ix.manifest)
    for key in ("quantization", "config", "reorder", "provenance"):
        if key in src.manifest:
            m[key] = src.manifest[key]
    m["shard"] = {"index": i, "shards": shards, "doc_start": start, "doc_end": end}
    if src.has_text:
        entry = src.manifest["docstore"]
        w = ds.DocstoreWriter(path, block_docs=int(entry["block_docs"]), level=int(entry.get("level", 6)))
        try:
            for c in range(start, end, 10_000):
                w.add(src.doc_texts(list(range(c, min(c + 10_000, end)))))
            got = w.finish()
        except BaseException:
            for name in ds.FILES:
                if os.path.exists(os.path.join(path, name)):
                    os.unlink(os.path.join(path, name))
            raise
        got["files"] = {name: fmt.file_entry(os.path.join(path, name)) for name in ds.FILES}
        m["docstore"] = got
    mpath = os.path.join(path, fmt.MANIFEST)
    fmt.write_json_atomic(mpath, m)
    fmt.fsync_dir(path)
    return {"path": os.path.basename(path), "doc_start": start, "doc_end": end, "documents": end - start,
            "postings": ix.num_postings, "empty_documents": int(m["counts"].get("empty_documents", 0)),
            "manifest_sha256": fmt.sha256_file(mpath)}


def build_sharded(build: Callable[[str], Any], out_dir: str | os.PathLike, shards: int, overwrite: bool = False,
                  progress: bool = False):
    """``build(path)`` writes an ordinary index at ``path`` (inside a ``<out>.building-*`` directory
    beside ``out_dir``, removed afterwards); it is then split into ``shards`` shards at ``out_dir``
    (:func:`shard_index`). Returns ``(ShardedIndex, what build returned)``. Needs the disk space of
    the index twice while it splits. An existing ``out_dir`` is checked before building. ``progress``:
    the split's (:func:`shard_index`)."""
    from .builder import BUILDING_INFIX, _write_owner

    if isinstance(shards, bool) or not isinstance(shards, (int, np.integer)) or shards < 1:
        raise InputError(f"shards must be a positive integer, got {shards!r}")
    out = os.path.abspath(os.fspath(out_dir))
    if os.path.lexists(out):
        if not overwrite:
            raise InputError(f"{out} already exists (use overwrite / --overwrite to replace it)")
        check_replaceable_sharded(out)
    parent = os.path.dirname(out)
    if not os.path.isdir(parent):
        raise InputError(f"parent directory {parent} does not exist")
    tmp = tempfile.mkdtemp(prefix=os.path.basename(out) + BUILDING_INFIX, dir=parent)
    try:
        _write_owner(tmp)
        built = build(os.path.join(tmp, os.path.basename(out)))
        plain = built if isinstance(built, Index) else Index.open(os.path.join(tmp, os.path.basename(out)),
                                                                   verify=False)
        sharded = shard_index(plain, out, shards, overwrite=overwrite, progress=progress)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sharded, built


# ---------------------------------------------------------------------------------------------- search
def _shard_topk(s, p, k: int, threads: int | None, single: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(docs int32[nq, k], scores[nq, k], counts[nq]) of shard searcher ``s`` on prepared queries ``p``:
    the steps of :meth:`Searcher.search` (``single``: one query on the calling thread with the reused
    work buffers) or :meth:`Searcher.search_batch`, without mapping doc numbers to ids."""
    from .kernels.bundles import QueryBatch
    from .processors import PROCESSORS
    from .search import _threads

    nq = len(p.ids)
    k = int(min(k, s.index.num_documents))
    out_docs = np.empty((nq, k), dtype=np.int32)
    out_scores = np.empty((nq, k), dtype=p.score_dtype)
    counts = np.zeros(nq, dtype=np.int64)
    proc = s.processor(k, p)
    if single and nq == 1:
        counts[0] = s._run_one(proc, p, 0, k, out_docs[0], out_scores[0])
        return out_docs, out_scores, counts
    with _threads(s.config.threads if threads is None else threads, nq) as workers:
        proc.batch(proc.arrays(s), QueryBatch(p.offsets, p.terms, p.weights), k, proc.params(s, k),
                   proc.work(s, p, workers), out_docs, out_scores, counts)
    if proc.fallback is not None:
        for q in np.flatnonzero(counts < 0):
            counts[q] = s._run_one(PROCESSORS[proc.fallback], p, int(q), k, out_docs[q], out_scores[q])
    return out_docs, out_scores, counts


def search_shards(searchers: Sequence, starts: Sequence[int], p, k: int, threads: int | None = None,
                  single: bool = False) -> tuple[list, list, list]:
    """Each shard searcher's top k of ``p`` with global doc numbers (shard start added):
    ``(docs, scores, counts)`` lists, one entry a shard, as :func:`merge_topk` takes them."""
    docs, scores, counts = [], [], []
    for s, start in zip(searchers, starts):
        d, sc, c = _shard_topk(s, p, k, threads, single)
        docs.append(d.astype(np.int64) + int(start))
        scores.append(sc)
        counts.append(c)
    return docs, scores, counts


class ShardedSearcher(QuerySide):
    """Exact top-k search over a :class:`ShardedIndex`: queries prepared once (the shards share the
    vocabulary; the score type from every term's largest impact over all shards, as the unsharded
    index decides it), each shard's top k by an ordinary :class:`~lsr.index.Searcher` with the same
    settings, merged by :func:`merge_topk`. ``lsr.Searcher(sharded_index_or_path, ...)`` returns one.
    """

    def __init__(self, index: ShardedIndex | str | os.PathLike, config: SearchConfig | None = None,
                 query_encoder: Any = None, **overrides: Any):
        self.index = index if isinstance(index, ShardedIndex) else ShardedIndex.open(index)
        cfg = config or SearchConfig()
        self.config = cfg.with_overrides(**overrides) if overrides else cfg
        self._query_encoder = _own_query_encoder(query_encoder, self.index.encoder)
        self.searchers = [Searcher(ix, self.config) for ix in self.index.shards]

    def search(self, query, k: int | None = None, query_id: str = "0") -> Results:
        """Top-k of one query (each shard on the calling thread with its reused work buffers)."""
        k = self._check_k(k)
        p = self.prepare([(query_id, query)])
        self._warn(p)
        docs, scores, counts = merge_topk(*search_shards(self.searchers, self.index.starts, p, k, single=True), k)
        return self._results(p.ids, docs, scores, counts)

    def search_batch(self, queries, k: int | None = None, threads: int | None = None) -> Results:
        """Top-k of every query: each shard's batch in parallel over the queries, then the merge."""
        items = _query_items(queries)
        k = self._check_k(k)
        if not items:
            return Results()
        p = self.prepare(items)
        self._warn(p)
        docs, scores, counts = merge_topk(*search_shards(self.searchers, self.index.starts, p, k, threads), k)
        return self._results(p.ids, docs, scores, counts)

    def search_batch_with_status(self, queries, k: int | None = None) -> tuple[Results, ShardStatus]:
        """:meth:`search_batch` and the shards that answered (locally: all of them)."""
        n = self.index.num_shards
        return self.search_batch(queries, k), ShardStatus(n, tuple(range(n)), ())

    def warmup(self) -> None:
        """Compile the kernels for the shards' dtypes."""
        for s in self.searchers:
            s.warmup()


__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "ShardStatus", "ShardsUnavailable", "ShardedLayout", "ShardedIndex",
           "ShardedSearcher", "merge_topk", "shard_index", "build_sharded", "is_sharded", "read_sharded_manifest"]
