"""The on-disk index format: a self-describing directory of ``.npy`` arrays.

Layout (format ``lsr-inverted-index``, version 3)::

    manifest.json          format name/version, counts, quantisation, build and
                           encoder settings, and for every file its dtype,
                           shape, size and SHA-256
    vocab.json             JSON list of terms; term id = position
    term_offsets.npy       int64[T+1]  postings of term t are [off[t], off[t+1])
    postings_impacts.npy   uint8|uint16|float32[P]
    postings_low.npy       uint8[..]   low ``shift`` bits of each posting's doc id (two a byte,
                                       low nibble first, when shift <= 4; else one a byte)
    range_offsets.npy      int64[T+1]  (term, range block) pairs of term t are [roff[t], roff[t+1])
    range_max.npy          impact dtype[G]  max impact of the term in that range block
    range_code_offsets.npy int64[T+1]  varint codes of term t are range_codes[coff[t]:coff[t+1]]
    range_codes.npy        uint8[..]   per pair, LEB128 varint ((block - previous block) << shift)
                                       | (count - 1); doc id = (block << shift) | low bits
                                       (see :mod:`lsr.index.kernels.postings`)
    term_max.npy           impact dtype[T]  max impact per term (0 if none)
    block_offsets.npy      int64[T+1]  blocks of term t are [boff[t], boff[t+1])
    block_max.npy          impact dtype[B]  max impact per block of block_size postings
    block_last_doc.npy     int32[B]    last doc id of each block
    docid_offsets.npy      int64[N+1]  external id of doc d is
    docid_bytes.npy        uint8[..]   docid_bytes[off[d]:off[d+1]].decode("utf-8")

Optional, with ``lsr index --store-text`` (manifest entry ``docstore``: format,
compression, block size, document count, and each file's size and SHA-256;
:mod:`lsr.index.docstore`)::

    docstore.bin                 zlib-compressed blocks of the documents' UTF-8 text
    docstore_block_offsets.npy   int64[B+1]  compressed block boundaries
    docstore_doc_offsets.npy     int64[N+1]  document boundaries in the uncompressed text

An index whose manifest has an ``encoder`` entry (``Encoder.describe()`` plus
the ``runtime`` it ran with: device, dtype, threads, batch size) encodes text
queries with that encoder's query side.

Arrays are opened memory-mapped (read-only). The manifest is written last
and the directory is renamed into place, so a directory without a valid
manifest never opens.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np

from lsr.errors import IndexFormatError
from lsr.io import read_json_object

from .kernels.postings import low_length

FORMAT_NAME = "lsr-inverted-index"
FORMAT_VERSION = 3
MANIFEST = "manifest.json"
VOCAB = "vocab.json"

IMPACT_DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "float32": np.float32}

# name -> fixed dtype (None: the index's impact dtype)
ARRAY_DTYPES: dict[str, str | None] = {
    "term_offsets": "int64",
    "postings_impacts": None,
    "postings_low": "uint8",
    "range_offsets": "int64",
    "range_max": None,
    "range_code_offsets": "int64",
    "range_codes": "uint8",
    "term_max": None,
    "block_offsets": "int64",
    "block_max": None,
    "block_last_doc": "int32",
    "docid_offsets": "int64",
    "docid_bytes": "uint8",
}


def sha256_file(path: str, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def file_entry(path: str) -> dict[str, Any]:
    return {"bytes": os.path.getsize(path), "sha256": sha256_file(path)}


def array_entry(path: str) -> dict[str, Any]:
    arr = np.load(path, mmap_mode="r")
    e = file_entry(path)
    e.update(dtype=str(arr.dtype), shape=list(arr.shape))
    return e


def write_json_atomic(path: str, obj: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_manifest(path: str) -> dict[str, Any]:
    """Read and check ``manifest.json`` of an index directory."""
    if not os.path.exists(path):
        raise IndexFormatError(f"index {path} does not exist")
    if not os.path.isdir(path):
        raise IndexFormatError(f"index {path} is not a directory")
    mpath = os.path.join(path, MANIFEST)
    if not os.path.exists(mpath):
        raise IndexFormatError(f"{path} is not an lsr index (no {MANIFEST}; "
                               "an interrupted build leaves none)")
    m = read_json_object(mpath, IndexFormatError, "manifest (unreadable or corrupt)")
    if m.get("format") != FORMAT_NAME:
        raise IndexFormatError(f"{path}: not an lsr index (format {m.get('format')!r}, expected {FORMAT_NAME!r})")
    v = m.get("format_version")
    if v != FORMAT_VERSION:
        raise IndexFormatError(f"{path}: index format version {v!r} is not supported by this lsr "
                               f"(it reads version {FORMAT_VERSION}); rebuild the index with `lsr index`")
    for key in ("counts", "arrays", "files", "quantization", "impact_dtype"):
        if key not in m:
            raise IndexFormatError(f"{mpath}: missing field {key!r}")
    if m["impact_dtype"] not in IMPACT_DTYPES:
        raise IndexFormatError(f"{mpath}: unknown impact dtype {m['impact_dtype']!r}")
    return m


def load_arrays(path: str, manifest: dict[str, Any], verify: bool) -> dict[str, np.ndarray]:
    """Memory-map every array, checking presence, size, dtype, shape (and SHA-256 if ``verify``)."""
    arrays: dict[str, np.ndarray] = {}
    impact = manifest["impact_dtype"]
    for name, dtype in ARRAY_DTYPES.items():
        entry = manifest["arrays"].get(name)
        if entry is None:
            raise IndexFormatError(f"{path}: manifest lists no array {name!r}")
        fpath = os.path.join(path, name + ".npy")
        _check_file(path, name + ".npy", entry, verify)
        try:
            arr = np.load(fpath, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise IndexFormatError(f"{fpath} is corrupt ({e})") from None
        want = dtype or impact
        if str(arr.dtype) != want or str(arr.dtype) != entry.get("dtype"):
            raise IndexFormatError(f"{fpath}: dtype {arr.dtype}, expected {want}")
        if list(arr.shape) != entry.get("shape"):
            raise IndexFormatError(f"{fpath}: shape {list(arr.shape)}, manifest says {entry.get('shape')}")
        if not arr.flags.c_contiguous:
            raise IndexFormatError(f"{fpath}: array is not C-contiguous")
        arrays[name] = arr
    _check_structure(path, manifest, arrays)
    return arrays


def _check_file(path: str, fname: str, entry: dict, verify: bool) -> None:
    fpath = os.path.join(path, fname)
    if not os.path.exists(fpath):
        raise IndexFormatError(f"{path}: file {fname} is missing")
    size = os.path.getsize(fpath)
    if size != entry.get("bytes"):
        raise IndexFormatError(f"{fpath}: {size} bytes, manifest says {entry.get('bytes')} "
                               "(truncated or replaced)")
    if verify and sha256_file(fpath) != entry.get("sha256"):
        raise IndexFormatError(f"{fpath}: checksum mismatch (the file is corrupted)")


def check_vocab(path: str, manifest: dict[str, Any], verify: bool) -> list[str]:
    entry = manifest["files"].get(VOCAB)
    if entry is None:
        raise IndexFormatError(f"{path}: manifest lists no {VOCAB}")
    _check_file(path, VOCAB, entry, verify)
    try:
        with open(os.path.join(path, VOCAB), encoding="utf-8") as f:
            terms = json.load(f)
    except (OSError, ValueError) as e:
        raise IndexFormatError(f"{path}/{VOCAB} is corrupt ({e})") from None
    if not isinstance(terms, list) or len(terms) != manifest["counts"]["terms"]:
        raise IndexFormatError(f"{path}/{VOCAB}: expected a list of {manifest['counts']['terms']} terms")
    return terms


def check_docstore(path: str, manifest: dict[str, Any], verify: bool) -> None:
    """Check the files of the optional docstore (presence, size, and SHA-256 if ``verify``)."""
    entry = manifest.get("docstore")
    if entry is None:
        return
    files = entry.get("files") if isinstance(entry, dict) else None
    if not isinstance(files, dict):
        raise IndexFormatError(f"{path}: the manifest's docstore entry lists no files")
    for fname, fentry in files.items():
        _check_file(path, fname, fentry, verify)


def _check_structure(path: str, m: dict, a: dict[str, np.ndarray]) -> None:
    """Cheap consistency checks that catch a damaged or hand-edited index."""
    c = m["counts"]
    n_docs, n_terms, n_post = c["documents"], c["terms"], c["postings"]
    bad = None
    if a["term_offsets"].shape != (n_terms + 1,) or a["term_max"].shape != (n_terms,):
        bad = "term arrays do not match the term count"
    elif a["postings_impacts"].shape != (n_post,):
        bad = "postings arrays do not match the postings count"
    elif m.get("range_block_docs") not in [1 << i for i in range(0, 9)]:
        bad = "range_block_docs missing or not a power of two up to 256"
    elif a["postings_low"].shape != (low_length(n_post, int(m["range_block_docs"]).bit_length() - 1),):
        bad = "low doc id bits do not match the postings count"
    elif a["docid_offsets"].shape != (n_docs + 1,):
        bad = "doc id offsets do not match the document count"
    elif n_terms and (a["term_offsets"][0] != 0 or a["term_offsets"][-1] != n_post):
        bad = "term offsets do not span the postings"
    elif a["block_offsets"].shape != (n_terms + 1,) or a["block_offsets"][-1] != a["block_max"].shape[0]:
        bad = "block offsets do not span the blocks"
    elif a["block_last_doc"].shape != a["block_max"].shape:
        bad = "block arrays differ in length"
    elif a["range_offsets"].shape != (n_terms + 1,) or a["range_offsets"][-1] != a["range_max"].shape[0]:
        bad = "range block offsets do not span the range blocks"
    elif (a["range_code_offsets"].shape != (n_terms + 1,)
          or a["range_code_offsets"][-1] != a["range_codes"].shape[0]):
        bad = "range code offsets do not span the codes"
    elif a["docid_offsets"][-1] != a["docid_bytes"].shape[0]:
        bad = "doc id offsets do not span the id bytes"
    if bad:
        raise IndexFormatError(f"{path}: inconsistent index ({bad})")
