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

Optional, the documents' lengths (written by ``lsr ciff import``, which carries the CIFF
DocRecords' ``doclength``; listed under ``arrays`` like the others, and an index
without it opens as before)::

    doc_lengths.npy        int64[N]    length of doc d as its source counted it

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
from numba import njit, prange

from lsr.errors import IndexFormatError
from lsr.io import read_json_object

from .kernels.postings import low_at, low_length

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


# optional arrays: name -> dtype; checked like the others when the manifest lists them, shape (documents,)
OPTIONAL_ARRAY_DTYPES: dict[str, str] = {
    "doc_lengths": "int64",
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
    if not isinstance(m["impact_dtype"], str) or m["impact_dtype"] not in IMPACT_DTYPES:
        raise IndexFormatError(f"{mpath}: unknown impact dtype {m['impact_dtype']!r}")
    counts = m["counts"]
    if not isinstance(counts, dict) or not all(_is_count(counts.get(k)) for k in ("documents", "terms", "postings")):
        raise IndexFormatError(f"{mpath}: counts of documents, terms and postings must be integers >= 0")
    if not _is_count(m.get("block_size")) or m["block_size"] < 1:
        raise IndexFormatError(f"{mpath}: block_size must be a positive integer")
    if not isinstance(m["arrays"], dict) or not isinstance(m["files"], dict):
        raise IndexFormatError(f"{mpath}: arrays and files must be JSON objects")
    return m


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def load_arrays(path: str, manifest: dict[str, Any], verify: bool) -> dict[str, np.ndarray]:
    """Memory-map every array (the optional ones the manifest lists too), checking presence, size,
    dtype, shape (and SHA-256 if ``verify``)."""
    arrays: dict[str, np.ndarray] = {}
    impact = manifest["impact_dtype"]
    listed = manifest["arrays"]
    optional = {name: dt for name, dt in OPTIONAL_ARRAY_DTYPES.items() if name in listed}
    for name, dtype in {**ARRAY_DTYPES, **optional}.items():
        entry = listed.get(name)
        if not isinstance(entry, dict):
            raise IndexFormatError(f"{path}: manifest lists no array {name!r}")
        fpath = os.path.join(path, name + ".npy")
        _check_file(path, name + ".npy", entry, verify)
        try:
            arr = np.load(fpath, mmap_mode="r", allow_pickle=False)
        except Exception as e:   # a damaged .npy header fails in many ways (ValueError, SyntaxError, ...)
            raise IndexFormatError(f"{fpath} is corrupt ({type(e).__name__}: {e})") from None
        if not isinstance(arr, np.ndarray):
            raise IndexFormatError(f"{fpath} is not a .npy array")
        want = dtype or impact
        if str(arr.dtype) != want or str(arr.dtype) != entry.get("dtype"):
            raise IndexFormatError(f"{fpath}: dtype {arr.dtype}, expected {want}")
        if list(arr.shape) != entry.get("shape"):
            raise IndexFormatError(f"{fpath}: shape {list(arr.shape)}, manifest says {entry.get('shape')}")
        if name in optional and arr.shape != (manifest["counts"]["documents"],):
            raise IndexFormatError(f"{fpath}: shape {list(arr.shape)}, expected one value a document")
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
    if not isinstance(entry, dict):
        raise IndexFormatError(f"{path}: manifest lists no {VOCAB}")
    _check_file(path, VOCAB, entry, verify)
    try:
        with open(os.path.join(path, VOCAB), encoding="utf-8") as f:
            terms = json.load(f)
    except (OSError, ValueError) as e:
        raise IndexFormatError(f"{path}/{VOCAB} is corrupt ({e})") from None
    if (not isinstance(terms, list) or len(terms) != manifest["counts"]["terms"]
            or not all(isinstance(t, str) for t in terms)):
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
        if not isinstance(fentry, dict):
            raise IndexFormatError(f"{path}: the manifest's docstore entry of {fname!r} is not an object")
        _check_file(path, fname, fentry, verify)


def _offsets_ok(off: np.ndarray, end: int) -> bool:
    """``off`` starts at 0, never decreases and ends at ``end`` (one vectorised pass)."""
    return len(off) >= 1 and off[0] == 0 and off[-1] == end and bool(np.all(off[1:] >= off[:-1]))


def _check_structure(path: str, m: dict, a: dict[str, np.ndarray]) -> None:
    """Consistency checks of the arrays' lengths and offsets (vectorised passes over the offsets arrays):
    with them, every offset a kernel reads lies inside the array it indexes."""
    c = m["counts"]
    n_docs, n_terms, n_post = c["documents"], c["terms"], c["postings"]
    bad = None
    if a["term_offsets"].shape != (n_terms + 1,) or a["term_max"].shape != (n_terms,):
        bad = "term arrays do not match the term count"
    elif a["postings_impacts"].shape != (n_post,):
        bad = "postings arrays do not match the postings count"
    elif m.get("range_block_docs") not in [1 << i for i in range(0, 9)] or not _is_count(m["range_block_docs"]):
        bad = "range_block_docs missing or not a power of two up to 256"
    elif a["postings_low"].shape != (low_length(n_post, int(m["range_block_docs"]).bit_length() - 1),):
        bad = "low doc id bits do not match the postings count"
    elif a["docid_offsets"].shape != (n_docs + 1,):
        bad = "doc id offsets do not match the document count"
    elif not _offsets_ok(a["term_offsets"], n_post):
        bad = "term offsets do not span the postings in order"
    elif a["block_offsets"].shape != (n_terms + 1,) or not _offsets_ok(a["block_offsets"], a["block_max"].shape[0]):
        bad = "block offsets do not span the blocks in order"
    elif not np.array_equal(np.diff(a["block_offsets"]),
                            (np.diff(a["term_offsets"]) + m["block_size"] - 1) // m["block_size"]):
        bad = "block counts do not match the terms' postings and the block size"
    elif a["block_last_doc"].shape != a["block_max"].shape:
        bad = "block arrays differ in length"
    elif a["range_offsets"].shape != (n_terms + 1,) or not _offsets_ok(a["range_offsets"], a["range_max"].shape[0]):
        bad = "range block offsets do not span the range blocks in order"
    elif (a["range_code_offsets"].shape != (n_terms + 1,)
          or not _offsets_ok(a["range_code_offsets"], a["range_codes"].shape[0])):
        bad = "range code offsets do not span the codes in order"
    elif not _offsets_ok(a["docid_offsets"], a["docid_bytes"].shape[0]):
        bad = "doc id offsets do not span the id bytes in order"
    if bad:
        raise IndexFormatError(f"{path}: inconsistent index ({bad})")


_POSTING_PROBLEMS = {
    1: "the doc id codes of term {t} are inconsistent (range_codes, range_offsets)",
    2: "the doc ids of term {t} are not ascending or leave the collection (postings_low)",
    3: "the range block maxima of term {t} do not match its impacts (range_max)",
    4: "the largest impact of term {t} does not match its impacts (term_max)",
    5: "the posting block maxima or last doc ids of term {t} do not match its postings "
       "(block_max, block_last_doc)",
}


def check_postings(path: str, m: dict, a: dict[str, np.ndarray], terms: list[str]) -> None:
    """Decode every term's pair codes and postings once (a parallel pass) and check what the query kernels
    rely on: each code ends inside its term's codes, the blocks ascend inside the collection, the pairs and
    postings the codes name are exactly the term's, every doc id ascends and is below the document count, and
    ``range_max``, ``term_max``, ``block_max`` and ``block_last_doc`` are the maxima and last doc ids of the
    postings. Needs :func:`_check_structure` first (offsets in range)."""
    n_terms = m["counts"]["terms"]
    bad = np.zeros(n_terms, np.uint8)
    shift = int(m["range_block_docs"]).bit_length() - 1
    # the terms in a fixed random order: the parallel loop's threads get equal shares of the long lists
    order = np.random.default_rng(0).permutation(n_terms)
    postings = (a["term_offsets"], a["range_offsets"], a["range_code_offsets"], a["range_codes"],
                a["postings_low"], a["postings_impacts"], a["range_max"], a["term_max"])
    blocks = (a["block_offsets"], a["block_max"], a["block_last_doc"])
    dims = (np.int64(shift), np.int64(m["counts"]["documents"]), np.int64(m["block_size"]))
    _check_postings(order, postings, blocks, dims, bad)
    if bad.any():
        t = int(np.flatnonzero(bad)[0])
        what = _POSTING_PROBLEMS[int(bad[t])].format(t=repr(terms[t]))
        raise IndexFormatError(f"{path}: {what} ({int(np.count_nonzero(bad))} term(s) in all)")


@njit(cache=True, parallel=True)
def _check_postings(order, postings, blocks, dims, bad):
    """``bad[t]``: 0 when term t is consistent, else the first problem found (keys of ``_POSTING_PROBLEMS``).

    ``postings``: (term_offsets, range_offsets, range_code_offsets, range_codes, postings_low,
    postings_impacts, range_max, term_max); ``blocks``: (block_offsets, block_max, block_last_doc);
    ``dims``: (range shift, documents, block size)."""
    term_offsets, range_offsets, code_offsets, codes, low, impacts, range_max, term_max = postings
    block_offsets, block_max, block_last_doc = blocks
    shift, n_docs, block_size = dims
    n_terms = term_offsets.shape[0] - 1
    nib = shift <= 4
    mask = (1 << shift) - 1
    R = np.int64(1) << shift
    n_blocks = (np.int64(n_docs) + R - 1) >> shift
    for i in prange(n_terms):
        t = order[i]
        c = code_offsets[t]
        cend = code_offsets[t + 1]
        p = term_offsets[t]
        pend = term_offsets[t + 1]
        j = range_offsets[t]
        jend = range_offsets[t + 1]
        bb = block_offsets[t]
        in_block = 0
        bmax = impacts.dtype.type(0)
        tmax = impacts.dtype.type(0)
        blk = np.int64(-1)
        problem = 0
        while c < cend and problem == 0:
            v = np.int64(0)
            sh = 0
            while True:
                if c >= cend or sh > 56:
                    problem = 1
                    break
                byte = np.int64(codes[c])
                c += 1
                v |= (byte & 0x7F) << sh
                sh += 7
                if byte < 0x80:
                    break
            if problem:
                break
            d = v >> shift
            n = (v & mask) + 1
            if d >= n_blocks or (blk >= 0 and d == 0) or j >= jend or n > pend - p:
                problem = 1
                break
            blk = d if blk < 0 else blk + d
            if blk >= n_blocks:
                problem = 1
                break
            base = blk << shift
            lim = min(R, np.int64(n_docs) - base)
            prev = np.int64(-1)
            pm = impacts[p]
            for q in range(p, p + n):
                lo = low_at(low, q, nib)
                if lo <= prev or lo >= lim:
                    problem = 2
                    break
                prev = lo
                x = impacts[q]
                if x > pm:
                    pm = x
                if in_block == 0 or x > bmax:
                    bmax = x
                in_block += 1
                if in_block == block_size or q == pend - 1:
                    if block_max[bb] != bmax or block_last_doc[bb] != base + lo:
                        problem = 5
                        break
                    bb += 1
                    in_block = 0
            if problem:
                break
            if range_max[j] != pm:
                problem = 3
                break
            if pm > tmax:
                tmax = pm
            j += 1
            p += n
        if problem == 0 and (p != pend or j != jend):
            problem = 1
        if problem == 0 and term_max[t] != tmax:
            problem = 4
        bad[t] = problem
