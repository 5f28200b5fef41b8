"""The documents' text, stored with an index (``lsr index --store-text``): zlib blocks, memory-mapped.

Files (listed in the manifest's ``docstore`` entry with their sizes and SHA-256)::

    docstore.bin                 zlib streams, one per block of ``block_docs`` documents
                                 (documents b*block_docs .. (b+1)*block_docs-1, internal order)
    docstore_block_offsets.npy   int64[B+1]  block b is docstore.bin[boff[b]:boff[b+1]]
    docstore_doc_offsets.npy     int64[N+1]  document d's UTF-8 text is bytes off[d]..off[d+1] of the
                                 uncompressed stream; block b starts at off[b*block_docs]

Documents are numbered as the index numbers them (internal ids), so the text of
a hit is ``index.doc_text(hit.doc_id)``. Reading a document decompresses its
block only (by default 16 documents). zlib is Python's standard library.
"""

from __future__ import annotations

import array
import os
import threading
import zlib
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from lsr.errors import IndexFormatError, InputError

DOCSTORE_FORMAT = "lsr-docstore/1"
DATA = "docstore.bin"
BLOCK_OFFSETS = "docstore_block_offsets.npy"
DOC_OFFSETS = "docstore_doc_offsets.npy"
FILES = (DATA, BLOCK_OFFSETS, DOC_OFFSETS)


class DocstoreWriter:
    """Appends texts in internal document order; :meth:`finish` writes the offsets and returns the
    manifest entry (without the file checksums, which the index builder adds)."""

    def __init__(self, directory: str, block_docs: int = 16, level: int = 6):
        if not (1 <= block_docs <= 1 << 16):
            raise InputError(f"docstore block_docs must be in [1, 65536], got {block_docs}")
        self.dir = directory
        self.block_docs = block_docs
        self.level = level
        self._data = open(os.path.join(directory, DATA), "wb")
        self._doc_offsets = array.array("q", [0])
        self._block_offsets = array.array("q", [0])
        self._pending: list[bytes] = []
        self.n_docs = 0

    def add(self, texts: Sequence[str]) -> None:
        for t in texts:
            if not isinstance(t, str):
                raise InputError(f"document text must be a string, got {type(t).__name__}")
            b = t.encode("utf-8")
            self._pending.append(b)
            self._doc_offsets.append(self._doc_offsets[-1] + len(b))
            self.n_docs += 1
            if len(self._pending) == self.block_docs:
                self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        z = zlib.compress(b"".join(self._pending), self.level)
        self._data.write(z)
        self._block_offsets.append(self._block_offsets[-1] + len(z))
        self._pending = []

    def finish(self) -> dict[str, Any]:
        self._flush()
        self._data.flush()
        os.fsync(self._data.fileno())
        self._data.close()
        np.save(os.path.join(self.dir, BLOCK_OFFSETS), np.frombuffer(self._block_offsets, dtype=np.int64))
        np.save(os.path.join(self.dir, DOC_OFFSETS), np.frombuffer(self._doc_offsets, dtype=np.int64))
        return {"format": DOCSTORE_FORMAT, "compression": "zlib", "level": self.level,
                "block_docs": self.block_docs, "documents": self.n_docs,
                "text_bytes": int(self._doc_offsets[-1])}

    def abort(self) -> None:
        if not self._data.closed:
            self._data.close()


class Docstore:
    """Read access to a docstore (memory-mapped; a few decompressed blocks are cached; thread-safe)."""

    def __init__(self, path: str, entry: dict[str, Any], n_docs: int, cache_blocks: int = 64):
        if not isinstance(entry, dict) or entry.get("format") != DOCSTORE_FORMAT:
            raise IndexFormatError(f"{path}: unknown docstore format "
                                   f"{entry.get('format') if isinstance(entry, dict) else entry!r}")
        self.path = path
        self.block_docs = int(entry["block_docs"])
        try:
            size = os.path.getsize(os.path.join(path, DATA))
            self.data = (np.memmap(os.path.join(path, DATA), dtype=np.uint8, mode="r") if size
                         else np.zeros(0, np.uint8))
            self.block_offsets = np.load(os.path.join(path, BLOCK_OFFSETS), mmap_mode="r")
            self.doc_offsets = np.load(os.path.join(path, DOC_OFFSETS), mmap_mode="r")
        except (OSError, ValueError) as e:
            raise IndexFormatError(f"{path}: docstore is unreadable ({e})") from None
        n_blocks = (n_docs + self.block_docs - 1) // self.block_docs
        if (self.doc_offsets.shape != (n_docs + 1,) or self.block_offsets.shape != (n_blocks + 1,)
                or int(self.block_offsets[-1]) != len(self.data) or entry.get("documents") != n_docs):
            raise IndexFormatError(f"{path}: inconsistent docstore (its offsets do not match the "
                                   f"{n_docs} documents or the data)")
        self.n_docs = n_docs
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cache_blocks = cache_blocks
        self._lock = threading.Lock()

    def _block(self, b: int) -> bytes:
        with self._lock:
            got = self._cache.get(b)
            if got is not None:
                self._cache.move_to_end(b)
                return got
        s, e = int(self.block_offsets[b]), int(self.block_offsets[b + 1])
        try:
            got = zlib.decompress(self.data[s:e].tobytes())
        except zlib.error as err:
            raise IndexFormatError(f"{self.path}: docstore block {b} is corrupt ({err})") from None
        with self._lock:
            self._cache[b] = got
            if len(self._cache) > self._cache_blocks:
                self._cache.popitem(last=False)
        return got

    def texts(self, docs: Sequence[int] | np.ndarray) -> list[str]:
        """Texts of internal document numbers (each checked to be in range)."""
        docs = np.asarray(docs, dtype=np.int64).reshape(-1)
        if len(docs) and (docs.min() < 0 or docs.max() >= self.n_docs):
            bad = int(docs[(docs < 0) | (docs >= self.n_docs)][0])
            raise InputError(f"document number {bad} is not in the index (0..{self.n_docs - 1})")
        out = []
        for d in docs.tolist():
            b = d // self.block_docs
            base = int(self.doc_offsets[b * self.block_docs])
            s, e = int(self.doc_offsets[d]) - base, int(self.doc_offsets[d + 1]) - base
            out.append(self._block(b)[s:e].decode("utf-8"))
        return out


def reorder(directory: str, entry: dict[str, Any], order: np.ndarray) -> dict[str, Any]:
    """Rewrite the docstore in ``directory`` so that new document ``i`` is old document ``order[i]``."""
    old = Docstore(directory, entry, len(order))
    tmp = os.path.join(directory, "docstore-reordered")
    os.mkdir(tmp)
    w = DocstoreWriter(tmp, entry["block_docs"], entry["level"])
    step = 4096
    for s in range(0, len(order), step):
        w.add(old.texts(order[s:s + step]))
    new_entry = w.finish()
    del old
    for name in FILES:
        os.replace(os.path.join(tmp, name), os.path.join(directory, name))
    os.rmdir(tmp)
    return new_entry


__all__ = ["DOCSTORE_FORMAT", "Docstore", "DocstoreWriter", "FILES", "reorder"]
