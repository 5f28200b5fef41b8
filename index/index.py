"""An opened index: memory-mapped arrays plus the manifest."""

from __future__ import annotations

import os
import threading
from functools import cached_property
from typing import Any, Sequence

import numpy as np

from lsr.errors import IndexFormatError, InputError

from . import format as fmt
from .kernels.dense import choose_dense_terms, fill_dense_rows, no_dense
from .kernels.docids import gather_ids
from .kernels.postings import decode_docs, decode_term_into


class ManifestFacts:
    """The facts an index's manifest states (counts, impact type, quantisation, encoder, block size),
    shared by :class:`Index` and :class:`~lsr.index.sharded.ShardedLayout`: both set ``manifest``."""

    manifest: dict[str, Any]

    @property
    def num_documents(self) -> int:
        return int(self.manifest["counts"]["documents"])

    @property
    def num_terms(self) -> int:
        return int(self.manifest["counts"]["terms"])

    @property
    def num_postings(self) -> int:
        return int(self.manifest["counts"]["postings"])

    @property
    def is_float(self) -> bool:
        return self.manifest["impact_dtype"] == "float32"

    @property
    def quantization(self) -> dict[str, Any]:
        return self.manifest["quantization"]

    @property
    def encoder(self) -> dict[str, Any] | None:
        return self.manifest.get("encoder")

    @property
    def block_size(self) -> int:
        return int(self.manifest["block_size"])


class Index(ManifestFacts):
    """A read-only, memory-mapped inverted index.

    Open with :meth:`Index.open`; arrays are NumPy memmaps (see
    :mod:`lsr.index.format` for the layout). ``manifest`` is the parsed
    ``manifest.json``.
    """

    def __init__(self, path: str, manifest: dict[str, Any], arrays: dict[str, np.ndarray], terms: list[str]):
        self.path = path
        self.manifest = manifest
        # plain ndarray views of the memory maps (same pages): Numba unboxes
        # np.memmap instances much more slowly than ndarrays, per call
        arrays = {name: np.asarray(a) for name, a in arrays.items()}
        self.arrays = arrays
        self.terms = terms
        self.term_offsets = arrays["term_offsets"]
        self.postings_impacts = arrays["postings_impacts"]
        self.postings_low = arrays["postings_low"]
        self.term_max = arrays["term_max"]
        self.block_offsets = arrays["block_offsets"]
        self.block_max = arrays["block_max"]
        self.block_last_doc = arrays["block_last_doc"]
        self.range_offsets = arrays["range_offsets"]
        self.range_max = arrays["range_max"]
        self.range_code_offsets = arrays["range_code_offsets"]
        self.range_codes = arrays["range_codes"]
        self.range_shift = int(manifest["range_block_docs"]).bit_length() - 1
        self._docid_offsets = arrays["docid_offsets"]
        self._docid_bytes = arrays["docid_bytes"]
        self._dense: dict[tuple[float, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._dense_lock = threading.Lock()
        # per-thread work buffers (accumulator, block bounds, ...) of every Searcher over this index:
        # one set a thread however many searchers there are (lsr.index.search.Searcher._buffer)
        self._scratch = threading.local()

    @classmethod
    def open(cls, path: str | os.PathLike, verify: bool = True) -> "Index":
        """Open an index directory (a sharded one opens as a :class:`lsr.index.sharded.ShardedIndex`).

        Always checks the format name and version, every file's presence,
        size, dtype and shape, and the structure the query kernels rely on:
        the offsets arrays (vectorised passes) and, in one parallel pass over
        the codes and postings (:func:`lsr.index.format.check_postings`), that
        every term's codes decode to its own pairs and postings, its doc ids
        ascend inside the collection and its stored maxima match its impacts;
        so no kernel reads outside an array of an index that opens. With
        ``verify`` (the default) also the SHA-256 of every file, which reads
        the whole index once and catches any corrupted byte (without it, a
        damaged impact that breaks none of these rules goes unnoticed).
        """
        path = os.path.abspath(os.fspath(path))
        from .sharded import is_sharded, open_index

        if is_sharded(path):   # a sharded index directory (lsr.index.sharded)
            return open_index(path, verify)
        manifest = fmt.read_manifest(path)
        terms = fmt.check_vocab(path, manifest, verify)
        arrays = fmt.load_arrays(path, manifest, verify)
        fmt.check_docstore(path, manifest, verify)
        fmt.check_postings(path, manifest, arrays, terms)
        ix = cls(path, manifest, arrays, terms)
        if ix.has_text:
            ix._docstore   # mapped now, so an --overwrite swap later cannot hand this index another's texts
        return ix

    @classmethod
    def from_pretrained(cls, repo_id_or_path: str | os.PathLike, revision: str | None = None, verify: bool = True,
                        cache_dir: str | os.PathLike | None = None, token: str | bool | None = None) -> "Index":
        """Open a local index directory as it is, or the index in the Hugging Face hub dataset repository
        ``owner/name`` at ``revision``, downloaded into the Hugging Face cache (``cache_dir``) or taken from
        it offline (``HF_HUB_OFFLINE=1``), then opened as :meth:`open` opens it. Needs ``lsr[hub]`` for hub
        ids; errors are one line (:mod:`lsr.index.hub`)."""
        from .hub import open_pretrained

        return open_pretrained(repo_id_or_path, revision=revision, verify=verify, cache_dir=cache_dir, token=token)

    def push_to_hub(self, repo_id: str, private: bool | None = None, token: str | bool | None = None,
                    commit_message: str | None = None, revision: str | None = None):
        """Upload this index to the hub dataset repository ``repo_id`` (created if needed), with a dataset
        card written into the directory as ``README.md`` (:func:`lsr.index.hub.push_index`)."""
        from .hub import push_index

        return push_index(self, repo_id, private=private, token=token, commit_message=commit_message,
                          revision=revision)

    # -- facts ------------------------------------------------------------------
    def integer_scale(self, bits: int = 8) -> tuple[float, int]:
        """``(scale, largest value)`` for writing this index's impacts as integers (the exports):
        ``(1, 255 or 65535)`` for a quantised index, whose impacts are kept as they are;
        ``((2**bits - 1) / largest weight, 2**bits - 1)`` for a float one, each impact written as
        ``floor(weight * scale + 0.5)``. ``bits``: 8 or 16."""
        if bits not in (8, 16):
            raise InputError(f"integer impacts have 8 or 16 bits, got {bits!r}")
        if not self.is_float:
            return 1.0, int(np.iinfo(self.postings_impacts.dtype).max)
        top = float(np.max(self.term_max)) if self.num_terms else 0.0
        cap = (1 << bits) - 1
        return (cap / top if top > 0 else 1.0), cap

    def size_bytes(self) -> int:
        """Bytes on disk of every file the manifest lists (plus the manifest)."""
        total = os.path.getsize(os.path.join(self.path, fmt.MANIFEST))
        total += sum(e["bytes"] for e in self.manifest["arrays"].values())
        total += sum(e["bytes"] for e in self.manifest["files"].values())
        if self.has_text:
            total += sum(e["bytes"] for e in self.manifest["docstore"]["files"].values())
        return int(total)

    @property
    def postings_arrays(self) -> tuple:
        """(term_offsets, range_code_offsets, range_codes, postings_low, postings_impacts, shift): what the
        term-at-a-time kernels read."""
        return (self.term_offsets, self.range_code_offsets, self.range_codes, self.postings_low,
                self.postings_impacts, self.range_shift)

    @cached_property
    def postings_docs(self) -> np.ndarray:
        """Every posting's doc id (int32[P], ascending within each term), decoded once into memory.

        The index stores doc ids pair-coded (:mod:`lsr.index.kernels.postings`); this array
        costs 4 bytes a posting of memory. The document-at-a-time processors (``maxscore``,
        ``wand``, ``bmw``, ``bmm``) use it, as do tools that export the postings.
        """
        out = np.empty(self.num_postings, np.int32)
        decode_docs(self.term_offsets, self.range_code_offsets, self.range_codes, self.postings_low,
                    self.range_shift, out)
        return out

    def dense_rows(self, min_df_ratio: float, max_bytes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(slot, rows, row_max): dense impact rows of the terms in at least ``min_df_ratio`` of the
        documents, the most frequent first while they fit in ``max_bytes`` (:mod:`lsr.index.kernels.dense`).

        Made in memory on first use for each setting and kept with the index; none for float impacts
        (whose sums depend on the order of the terms) or when ``min_df_ratio`` is 0.
        """
        key = (float(min_df_ratio), int(max_bytes))
        with self._dense_lock:
            got = self._dense.get(key)
            if got is None:
                n_blocks = (self.num_documents + (1 << self.range_shift) - 1) >> self.range_shift
                dtype = self.postings_impacts.dtype
                slot, rows, row_max = no_dense(self.num_terms, self.num_documents, n_blocks, dtype)
                if not self.is_float:
                    terms = choose_dense_terms(self.term_offsets, self.num_documents, min_df_ratio, max_bytes,
                                               dtype.itemsize)
                    if len(terms):
                        rows = np.zeros((len(terms), self.num_documents), dtype)
                        row_max = np.zeros((len(terms), n_blocks), dtype)
                        fill_dense_rows(*self.postings_arrays, terms, rows, row_max)
                        slot[terms] = np.arange(len(terms), dtype=np.int32)
                got = self._dense[key] = (slot, rows, row_max)
            return got

    # -- terms and documents ------------------------------------------------------
    @cached_property
    def vocab(self) -> dict[str, int]:
        """term -> term id."""
        return {t: i for i, t in enumerate(self.terms)}

    def doc_ids(self, docs: Sequence[int] | np.ndarray) -> list[str]:
        """External ids of internal doc ids."""
        docs = np.ascontiguousarray(docs, dtype=np.int64)
        if len(docs) == 0:
            return []
        if docs.min() < 0 or docs.max() >= self.num_documents:
            raise IndexError("internal doc id out of range")
        buf = gather_ids(self._docid_offsets, self._docid_bytes, docs)
        try:
            ids = buf.tobytes().decode("utf-8").split("\n")[:-1]
        except UnicodeDecodeError:
            ids = []
        if len(ids) != len(docs):
            raise IndexFormatError(f"{self.path}: the external doc ids are corrupt (docid_bytes is not "
                                   "newline-free UTF-8)")
        return ids

    def doc_id(self, doc: int) -> str:
        return self.doc_ids([doc])[0]

    @cached_property
    def _internal(self) -> dict[str, int]:
        return {d: i for i, d in enumerate(self.doc_ids(np.arange(self.num_documents)))}

    def internal_id(self, doc_id: str) -> int:
        """Internal (0-based, collection order) id of an external doc id."""
        try:
            return self._internal[doc_id]
        except KeyError:
            raise IndexFormatError(f"doc id {doc_id!r} is not in the index") from None

    @property
    def has_text(self) -> bool:
        """Whether the index stores the documents' text (``lsr index --store-text``)."""
        return self.manifest.get("docstore") is not None

    @cached_property
    def _docstore(self):
        from .docstore import Docstore

        if not self.has_text:
            raise InputError(f"{self.path} stores no document text (build it with --store-text / "
                             "store_text=True)")
        return Docstore(self.path, self.manifest["docstore"], self.num_documents)

    def _doc_numbers(self, docs: Sequence[str | int]) -> list[int]:
        out = []
        for d in docs:
            if isinstance(d, str):
                n = self._internal.get(d)
                if n is None:
                    raise InputError(f"doc id {d!r} is not in the index")
                out.append(n)
            elif isinstance(d, (int, np.integer)) and not isinstance(d, bool):
                if not 0 <= int(d) < self.num_documents:
                    raise InputError(f"document number {int(d)} is not in the index "
                                     f"(0..{self.num_documents - 1})")
                out.append(int(d))
            else:
                raise InputError(f"a document is named by its external id (str) or internal number (int), "
                                 f"not {type(d).__name__}")
        return out

    def doc_text(self, doc: str | int) -> str:
        """The stored text of one document: ``doc`` is its external id (a ``str``, as in
        :class:`~lsr.results.Hit`.doc_id) or its internal number (an ``int``, 0..N-1 in index order).

        :class:`~lsr.errors.InputError` for an id or number not in the index, or an index built
        without ``--store-text``.
        """
        return self.doc_texts([doc])[0]

    def doc_texts(self, docs: Sequence[str | int]) -> list[str]:
        """:meth:`doc_text` of many documents, in the order given (each block decompressed once
        a call while it stays in the small block cache)."""
        store = self._docstore
        return store.texts(self._doc_numbers(list(docs)))

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """(doc ids, impacts) of a term; empty arrays for an unknown term."""
        t = self.vocab.get(term)
        if t is None:
            return np.zeros(0, np.int32), np.zeros(0, self.postings_impacts.dtype)
        s, e = self.term_offsets[t], self.term_offsets[t + 1]
        docs = np.empty(e - s, np.int32)
        decode_term_into(self.term_offsets, self.range_code_offsets, self.range_codes, self.postings_low,
                         self.range_shift, t, docs, 0)
        return docs, self.postings_impacts[s:e]

    def __repr__(self) -> str:
        c = self.manifest["counts"]
        return (f"Index({self.path!r}, documents={c['documents']}, terms={c['terms']}, "
                f"postings={c['postings']}, impacts={self.manifest['impact_dtype']})")
