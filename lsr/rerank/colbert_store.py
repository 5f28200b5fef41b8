"""Precomputed document token vectors for MaxSim reranking, memory-mapped, optionally compressed.

A store is a directory::

    manifest.json     format, version, counts, dim, the model identity (checkpoint files and the
                      document settings), the encoder's dtype, the compression and its error
    doc_ids.json      the doc ids, in store order
    offsets.npy       int64 [num_docs + 1]: document i owns tokens offsets[i]:offsets[i+1]
    <compression arrays>

Compressions (faiss does the quantisation; :func:`build_doc_embeddings` picks the
parameters):

* ``none``: ``embeddings.npy`` float32 ``[num_tokens, dim]``;
* ``float16``: the same in float16;
* ``residual``: ColBERTv2-style residual coding: k-means centroids
  (``faiss.Kmeans``, ``centroids.npy``), each token's nearest centroid
  (``codes_centroid.npy``, uint16/uint32) and its residual coded by a
  ``faiss.ScalarQuantizer`` of ``residual_bits`` (4, 6 or 8) bits per dimension
  (``codes_residual.npy``; the quantiser's trained ranges in ``sq_trained.npy``);
* ``pq``: ``faiss.ProductQuantizer`` with ``pq_m`` sub-vectors of ``pq_bits`` bits
  (``codes_pq.npy``; the codebooks in ``pq_centroids.npy``).

The manifest records the bytes per token of the codes and the token
reconstruction error (mean and max of ``||x - x_hat||`` over all stored tokens).
Since query vectors have unit norm, a MaxSim score computed from the stored
vectors differs from the exact one by at most ``query_tokens * max_error``;
:func:`compression_error` measures the actual score error on given pairs.

:func:`compress_doc_embeddings` makes a compressed copy of an uncompressed store
without encoding the documents again. The store is written into a sibling ``<out>.building-*`` directory and renamed into
place once complete; arrays are memory-mapped when opened.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from lsr.errors import InputError, LsrError
from lsr.outputs import move_into_place, start_output_dir

FORMAT = "lsr-colbert-doc-embeddings"
VERSION = 1
MANIFEST = "manifest.json"
COMPRESSIONS = ("none", "float16", "residual", "pq")
RESIDUAL_BITS = {4: "QT_4bit", 6: "QT_6bit", 8: "QT_8bit"}
_CHUNK = 65536


def _bad(path, msg: str) -> LsrError:
    from lsr.errors import IndexFormatError

    return IndexFormatError(f"document embedding store {path}: {msg}")


# ------------------------------------------------------------------------------------------ build
def _write_npy(path: str, arr: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, arr)
        f.flush()
        os.fsync(f.fileno())


def _replaceable(path: str) -> None:
    if not os.path.isdir(path):
        raise InputError(f"{path} exists and is not a directory; not replacing it")
    entries = os.listdir(path)
    if not entries:
        return
    try:
        with open(os.path.join(path, MANIFEST), encoding="utf-8") as f:
            fmt = json.load(f).get("format")
    except (OSError, ValueError, AttributeError):
        fmt = None
    if fmt != FORMAT:
        raise InputError(f"{path} exists and is not a document embedding store; not replacing it")


def _check_params(compression, residual_bits, pq_m, pq_bits, sample_tokens, dim) -> int | None:
    if compression not in COMPRESSIONS:
        raise InputError(f"unknown compression {compression!r} (known: {', '.join(COMPRESSIONS)})")
    if compression == "residual" and residual_bits not in RESIDUAL_BITS:
        raise InputError(f"residual_bits must be one of {', '.join(map(str, RESIDUAL_BITS))}, got {residual_bits!r}")
    if not isinstance(pq_bits, int) or isinstance(pq_bits, bool) or not 1 <= pq_bits <= 16:
        raise InputError(f"pq_bits must be an integer in [1, 16], got {pq_bits!r}")
    if not isinstance(sample_tokens, int) or isinstance(sample_tokens, bool) or sample_tokens < 1:
        raise InputError(f"sample_tokens must be a positive integer, got {sample_tokens!r}")
    if compression == "pq":
        pq_m = max(1, dim // 4) if pq_m is None else pq_m
        if not isinstance(pq_m, int) or isinstance(pq_m, bool) or pq_m < 1 or dim % pq_m:
            raise InputError(f"pq_m must be a positive divisor of the dimension {dim}, got {pq_m!r}")
    return pq_m


def _start(out_dir, overwrite: bool) -> tuple[str, str]:
    """``(out, build)``: the output path and a fresh sibling build directory."""
    return start_output_dir(out_dir, overwrite, _replaceable, "a document embedding store")


def _finish(build: str, out: str, ids: list[str], offsets: np.ndarray, dim: int, model: dict,
            encoder_dtype: str | None, comp: dict) -> None:
    _write_npy(os.path.join(build, "offsets.npy"), offsets)
    with open(os.path.join(build, "doc_ids.json"), "w", encoding="utf-8") as f:
        json.dump(ids, f, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    manifest = {"format": FORMAT, "version": VERSION, "num_docs": len(ids), "num_tokens": int(offsets[-1]),
                "dim": dim, "model": model, "encoder_dtype": encoder_dtype, "compression": comp}
    with open(os.path.join(build, MANIFEST), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    _move_into_place(build, out)


def build_doc_embeddings(reranker, docs: Iterable[tuple[str, str]], out_dir: str | os.PathLike,
                         compression: str = "none", *, centroids: int | None = None,
                         residual_bits: int = 4, pq_m: int | None = None, pq_bits: int = 8,
                         sample_tokens: int = 262_144, seed: int = 0, batch_docs: int = 256,
                         overwrite: bool = False, progress: bool = False) -> DocEmbeddings:
    """Encode ``docs`` (``(doc id, text)`` pairs) with ``reranker`` (a
    :class:`~lsr.rerank.maxsim.MaxSimReranker`) and write a store at ``out_dir``.

    ``compression``: ``none``, ``float16``, ``residual`` (``centroids`` k-means
    centroids, by default ``2**floor(log2(16 * sqrt(num_tokens)))`` capped so that
    each has 39 training tokens; ``residual_bits`` 4, 6 or 8) or ``pq`` (``pq_m``
    sub-vectors, by default ``dim // 4``; ``pq_bits`` bits each). Codebooks are
    trained on at most ``sample_tokens`` tokens drawn with ``seed``. Returns the
    opened store. An existing ``out_dir`` is refused unless ``overwrite`` and it is
    a store (or an empty directory).
    """
    from lsr.progress import Progress

    dim = reranker.settings.dim
    pq_m = _check_params(compression, residual_bits, pq_m, pq_bits, sample_tokens, dim)
    if not isinstance(batch_docs, int) or isinstance(batch_docs, bool) or batch_docs < 1:
        raise InputError(f"batch_docs must be a positive integer, got {batch_docs!r}")
    out, build = _start(out_dir, overwrite)
    try:
        raw_path = os.path.join(build, "raw.f32")
        ids: list[str] = []
        seen: set[str] = set()
        lengths: list[int] = []
        with open(raw_path, "wb") as raw, Progress("lsr colbert-store", unit="docs", enabled=progress) as bar:
            batch: list[tuple[str, str]] = []

            def flush():
                vecs = reranker.encode_docs([t for _, t in batch])
                for v in vecs:
                    raw.write(np.ascontiguousarray(v, dtype=np.float32).tobytes())
                    lengths.append(len(v))
                bar.update(len(batch))
                batch.clear()

            for rec in docs:
                try:
                    did, text = rec
                except (TypeError, ValueError):
                    raise InputError("documents must be (doc id, text) pairs") from None
                did = str(did)
                if did in seen:
                    raise InputError(f"duplicate doc id {did!r} in the documents to store")
                seen.add(did)
                ids.append(did)
                batch.append((did, text))
                if len(batch) >= batch_docs:
                    flush()
            if batch:
                flush()
        if not ids:
            raise InputError("no documents to store")
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        x = np.memmap(raw_path, dtype=np.float32, mode="r", shape=(int(offsets[-1]), dim))
        comp = _compress(x, build, compression, centroids=centroids, residual_bits=residual_bits,
                         pq_m=pq_m, pq_bits=pq_bits, sample_tokens=sample_tokens, seed=seed)
        del x
        os.unlink(raw_path)
        _finish(build, out, ids, offsets, dim, reranker.doc_identity(), reranker.config.dtype, comp)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return DocEmbeddings.open(out)


def compress_doc_embeddings(source: DocEmbeddings | str | os.PathLike, out_dir: str | os.PathLike,
                            compression: str, *, centroids: int | None = None, residual_bits: int = 4,
                            pq_m: int | None = None, pq_bits: int = 8, sample_tokens: int = 262_144,
                            seed: int = 0, overwrite: bool = False) -> DocEmbeddings:
    """A compressed copy of an uncompressed (``none``) store, without encoding the documents again
    (parameters as in :func:`build_doc_embeddings`)."""
    src = source if isinstance(source, DocEmbeddings) else DocEmbeddings.open(source)
    if src.method != "none":
        raise InputError(f"{src.path} is compressed ({src.method}); compress from an uncompressed store")
    pq_m = _check_params(compression, residual_bits, pq_m, pq_bits, sample_tokens, src.dim)
    out, build = _start(out_dir, overwrite)
    try:
        comp = _compress(src.arrays["embeddings.npy"], build, compression, centroids=centroids,
                         residual_bits=residual_bits, pq_m=pq_m, pq_bits=pq_bits,
                         sample_tokens=sample_tokens, seed=seed)
        _finish(build, out, list(src.doc_ids), np.asarray(src.offsets), src.dim, src.manifest["model"],
                src.manifest.get("encoder_dtype"), comp)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return DocEmbeddings.open(out)


def _move_into_place(build: str, out: str) -> None:
    move_into_place(build, out, _replaceable)


def _sample(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(x) <= n:
        return np.ascontiguousarray(x, dtype=np.float32)
    rows = np.sort(np.random.default_rng(seed).choice(len(x), size=n, replace=False))
    return np.ascontiguousarray(x[rows], dtype=np.float32)


def _compress(x: np.ndarray, build: str, method: str, *, centroids, residual_bits, pq_m, pq_bits,
              sample_tokens, seed) -> dict:
    """Write the arrays of ``method`` for the vectors ``x``; returns the manifest's compression entry."""
    n, dim = x.shape
    p = lambda name: os.path.join(build, name)  # noqa: E731
    info: dict = {"method": method}
    if method in ("none", "float16"):
        dt = np.float32 if method == "none" else np.float16
        arr = np.lib.format.open_memmap(p("embeddings.npy"), mode="w+", dtype=dt, shape=(n, dim))
        errs = []
        for s in range(0, n, _CHUNK):
            arr[s:s + _CHUNK] = x[s:s + _CHUNK]
            errs.append(np.linalg.norm(arr[s:s + _CHUNK].astype(np.float32) - x[s:s + _CHUNK], axis=1))
        arr.flush()
        del arr
        info["bytes_per_token"] = dim * np.dtype(dt).itemsize
        return {**info, **_errors(errs)}
    import faiss

    train = _sample(x, sample_tokens, seed)
    if method == "residual":
        if centroids is None:
            k = 2 ** int(math.floor(math.log2(16 * math.sqrt(n))))
            k = max(1, min(k, len(train) // 39))
        else:
            k = centroids
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= len(train):
            raise InputError(f"centroids must be an integer in [1, {len(train)}] (the training tokens), got {k!r}")
        km = faiss.Kmeans(dim, k, niter=20, seed=seed, verbose=False)
        km.train(train)
        cents = np.ascontiguousarray(km.centroids, dtype=np.float32)
        index = faiss.IndexFlatL2(dim)
        index.add(cents)
        _, a = index.search(train, 1)
        sq = faiss.ScalarQuantizer(dim, getattr(faiss.ScalarQuantizer, RESIDUAL_BITS[residual_bits]))
        sq.train(np.ascontiguousarray(train - cents[a[:, 0]]))
        cdt = np.uint16 if k <= 65536 else np.uint32
        c_arr = np.lib.format.open_memmap(p("codes_centroid.npy"), mode="w+", dtype=cdt, shape=(n,))
        r_arr = np.lib.format.open_memmap(p("codes_residual.npy"), mode="w+", dtype=np.uint8,
                                          shape=(n, sq.code_size))
        errs = []
        for s in range(0, n, _CHUNK):
            chunk = np.ascontiguousarray(x[s:s + _CHUNK], dtype=np.float32)
            _, a = index.search(chunk, 1)
            a = a[:, 0]
            codes = sq.compute_codes(np.ascontiguousarray(chunk - cents[a]))
            c_arr[s:s + len(chunk)] = a
            r_arr[s:s + len(chunk)] = codes
            errs.append(np.linalg.norm(cents[a] + sq.decode(codes) - chunk, axis=1))
        c_arr.flush()
        r_arr.flush()
        del c_arr, r_arr
        _write_npy(p("centroids.npy"), cents)
        _write_npy(p("sq_trained.npy"), np.asarray(faiss.vector_to_array(sq.trained), dtype=np.float32))
        info.update(centroids=k, residual_bits=residual_bits, train_tokens=len(train), seed=seed,
                    bytes_per_token=np.dtype(cdt).itemsize + int(sq.code_size))
        return {**info, **_errors(errs)}
    # pq
    pq = faiss.ProductQuantizer(dim, pq_m, pq_bits)
    pq.cp.seed = seed
    pq.train(train)
    arr = np.lib.format.open_memmap(p("codes_pq.npy"), mode="w+", dtype=np.uint8, shape=(n, pq.code_size))
    errs = []
    for s in range(0, n, _CHUNK):
        chunk = np.ascontiguousarray(x[s:s + _CHUNK], dtype=np.float32)
        codes = pq.compute_codes(chunk)
        arr[s:s + len(chunk)] = codes
        errs.append(np.linalg.norm(pq.decode(codes) - chunk, axis=1))
    arr.flush()
    del arr
    _write_npy(p("pq_centroids.npy"), faiss.vector_to_array(pq.centroids).astype(np.float32))
    info.update(pq_m=pq_m, pq_bits=pq_bits, train_tokens=len(train), seed=seed,
                bytes_per_token=int(pq.code_size))
    return {**info, **_errors(errs)}


def _errors(errs: list[np.ndarray]) -> dict:
    e = np.concatenate(errs) if errs else np.zeros(0)
    return {"token_error": {"mean": float(e.mean()) if len(e) else 0.0,
                            "max": float(e.max()) if len(e) else 0.0}}


# ------------------------------------------------------------------------------------------- open
_FILES = {"none": ("embeddings.npy",), "float16": ("embeddings.npy",),
          "residual": ("codes_centroid.npy", "codes_residual.npy", "centroids.npy", "sq_trained.npy"),
          "pq": ("codes_pq.npy", "pq_centroids.npy")}


class DocEmbeddings:
    """An opened store: doc ids, memory-mapped arrays, and the decoding of its compression."""

    def __init__(self, path: str, manifest: dict, doc_ids: list[str], offsets: np.ndarray,
                 arrays: dict[str, np.ndarray]) -> None:
        self.path = path
        self.manifest = manifest
        self.doc_ids = doc_ids
        self.offsets = offsets
        self.arrays = arrays
        self.position = {d: i for i, d in enumerate(doc_ids)}
        self.method = manifest["compression"]["method"]
        self.dim = int(manifest["dim"])
        self._decoder = None

    @classmethod
    def open(cls, path: str | os.PathLike) -> DocEmbeddings:
        """Open a store; IndexFormatError for a missing, foreign, newer or inconsistent one."""
        path = os.fspath(path)
        mpath = os.path.join(path, MANIFEST)
        if not os.path.isdir(path):
            raise InputError(f"document embedding store {path}: no such directory")
        try:
            with open(mpath, encoding="utf-8") as f:
                m = json.load(f)
        except OSError:
            raise _bad(path, "no manifest.json") from None
        except ValueError as e:
            raise _bad(path, f"manifest.json is not JSON ({e})") from None
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise _bad(path, f"not a document embedding store (format {m.get('format') if isinstance(m, dict) else None!r})")
        if m.get("version") != VERSION:
            raise _bad(path, f"format version {m.get('version')!r} is not supported (this lsr reads version {VERSION})")
        try:
            n_docs, n_tok, dim = int(m["num_docs"]), int(m["num_tokens"]), int(m["dim"])
            method = m["compression"]["method"]
        except (KeyError, TypeError, ValueError):
            raise _bad(path, "manifest.json lacks num_docs, num_tokens, dim or compression") from None
        if method not in _FILES:
            raise _bad(path, f"unknown compression {method!r}")
        try:
            with open(os.path.join(path, "doc_ids.json"), encoding="utf-8") as f:
                ids = json.load(f)
            offsets = np.load(os.path.join(path, "offsets.npy"), mmap_mode="r")
            arrays = {name: np.load(os.path.join(path, name), mmap_mode="r") for name in _FILES[method]}
        except (OSError, ValueError) as e:
            raise _bad(path, f"cannot read its arrays ({e})") from None
        if not isinstance(ids, list) or len(ids) != n_docs or offsets.shape != (n_docs + 1,) \
                or int(offsets[-1]) != n_tok:
            raise _bad(path, "doc ids, offsets and manifest counts disagree")
        rows = arrays.get("embeddings.npy", arrays.get("codes_pq.npy", arrays.get("codes_centroid.npy")))
        if rows.shape[0] != n_tok or (method in ("none", "float16") and rows.shape[1] != dim):
            raise _bad(path, "the arrays do not hold num_tokens tokens of dimension dim")
        return cls(path, m, ids, np.asarray(offsets), arrays)

    def __len__(self) -> int:
        return len(self.doc_ids)

    def __contains__(self, doc_id: str) -> bool:
        return doc_id in self.position

    @property
    def bytes_per_token(self) -> float:
        return float(self.manifest["compression"]["bytes_per_token"])

    def check_ids(self, ids: Iterable[str]) -> None:
        missing = [i for i in ids if i not in self.position]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise InputError(f"doc id {missing[0]!r} is not in the document embedding store {self.path}{more}")

    def check_model(self, reranker) -> None:
        """InputError unless the store was built with ``reranker``'s model and document settings."""
        want, have = reranker.doc_identity(), self.manifest.get("model")
        if want != have:
            diff = sorted(k for k in set(want) | set(have or {}) if (have or {}).get(k) != want.get(k))
            raise InputError(f"document embedding store {self.path} was built with other document settings "
                             f"or another model than {reranker.checkpoint.label} (differs in: {', '.join(diff)})")

    def _decode(self, rows: slice) -> np.ndarray:
        a = self.arrays
        if self.method in ("none", "float16"):
            return np.asarray(a["embeddings.npy"][rows], dtype=np.float32)
        import faiss

        if self._decoder is None:
            c = self.manifest["compression"]
            if self.method == "residual":
                sq = faiss.ScalarQuantizer(self.dim, getattr(faiss.ScalarQuantizer,
                                                             RESIDUAL_BITS[int(c["residual_bits"])]))
                faiss.copy_array_to_vector(np.asarray(a["sq_trained.npy"], dtype=np.float32), sq.trained)
                self._decoder = sq
            else:
                pq = faiss.ProductQuantizer(self.dim, int(c["pq_m"]), int(c["pq_bits"]))
                faiss.copy_array_to_vector(np.asarray(a["pq_centroids.npy"], dtype=np.float32).ravel(),
                                           pq.centroids)
                self._decoder = pq
        if self.method == "residual":
            cents = np.asarray(a["centroids.npy"])
            codes = np.ascontiguousarray(a["codes_residual.npy"][rows])
            return cents[np.asarray(a["codes_centroid.npy"][rows], dtype=np.int64)] + self._decoder.decode(codes)
        return self._decoder.decode(np.ascontiguousarray(a["codes_pq.npy"][rows]))

    def get(self, ids: Sequence[str]) -> list[np.ndarray]:
        """The token vectors (float32 ``[tokens, dim]``) of each doc id; InputError naming a missing one."""
        self.check_ids(ids)
        out = []
        for d in ids:
            i = self.position[d]
            out.append(self._decode(slice(int(self.offsets[i]), int(self.offsets[i + 1]))))
        return out

    def id_source(self):
        """A document source over the store's ids (each id's "text" is the id itself), for rerank()."""
        return _IdSource(self)


class _IdSource:
    def __init__(self, store: DocEmbeddings) -> None:
        self.store = store

    def texts(self, ids: Iterable[str]) -> dict[str, str]:
        ids = list(dict.fromkeys(ids))
        self.store.check_ids(ids)
        return {i: i for i in ids}


# ------------------------------------------------------------------------------------------ error
def compression_error(reranker, store: DocEmbeddings | str | os.PathLike,
                      items: Sequence[tuple[str, Sequence[str]]],
                      reference: DocEmbeddings | str | os.PathLike | Mapping[str, str]) -> dict:
    """Score error of ``store`` against exact scores on the ``(query text, doc ids)`` pairs of ``items``.

    ``reference``: an uncompressed store of the same documents, or ``{doc id: text}``
    (the documents are then encoded). Returns ``pairs``, ``mean_abs_error``,
    ``max_abs_error``, ``max_rel_error`` (relative to the exact score),
    ``bound`` (the largest ``query_tokens * token_error.max`` over the queries: no
    error can exceed it), ``bytes_per_token`` and the compression method.
    """
    if not isinstance(store, DocEmbeddings):
        store = DocEmbeddings.open(store)
    store.check_model(reranker)
    if isinstance(reference, Mapping):
        ref_get = lambda ids: reranker.encode_docs([reference[i] for i in ids])  # noqa: E731
        missing = [i for _, ds in items for i in ds if i not in reference]
        if missing:
            raise InputError(f"doc id {missing[0]!r} has no text in the reference")
    else:
        ref = reference if isinstance(reference, DocEmbeddings) else DocEmbeddings.open(reference)
        ref.check_model(reranker)
        ref_get = ref.get
    diffs, rels, bound = [], [], 0.0
    tok_err = float(store.manifest["compression"]["token_error"]["max"])
    queries = list(dict.fromkeys(q for q, _ in items))
    qvec = dict(zip(queries, reranker.encode_queries(queries)))
    for query, ids in items:
        q = qvec[query]
        exact = reranker.maxsim(q, ref_get(list(ids)))
        approx = reranker.maxsim(q, store.get(list(ids)))
        diffs.append(np.abs(approx - exact))
        rels.append(np.abs(approx - exact) / np.maximum(np.abs(exact), 1e-12))
        bound = max(bound, len(q) * tok_err)
    d = np.concatenate(diffs) if diffs else np.zeros(0)
    r = np.concatenate(rels) if rels else np.zeros(0)
    return {"method": store.method, "pairs": int(len(d)),
            "mean_abs_error": float(d.mean()) if len(d) else 0.0,
            "max_abs_error": float(d.max()) if len(d) else 0.0,
            "max_rel_error": float(r.max()) if len(r) else 0.0,
            "bound": bound, "bytes_per_token": store.bytes_per_token}


__all__ = ["COMPRESSIONS", "DocEmbeddings", "FORMAT", "VERSION", "build_doc_embeddings", "compress_doc_embeddings",
           "compression_error"]
