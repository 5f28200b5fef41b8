"""Text to index in one step: encode a corpus and index it, resumably, with no files in between.

:func:`build_index_from_text` (``lsr index --encoder ENC --corpus SRC -o DIR``)
reads the corpus in chunks (:func:`lsr.encoders.collection.iter_chunks`),
encodes each chunk into one CSR batch
(:meth:`~lsr.encoders.Encoder.encode_documents_sparse`: token ids, float32
weights) and passes it to :meth:`~lsr.index.IndexBuilder.add_batch`. Token
ids become index term ids through a table that numbers each term at its first
appearance (documents in input order, a document's terms in its vector's
order), which is the order ``lsr encode`` → JSONL → ``lsr index`` gives: the
two indexes have the same vocabulary and postings. Memory is bounded by a
part of encoded documents and the builder's run buffer.

Progress directory ``DIR.partial/`` (kept until the index is in place)::

    state.json          format lsr-index-partial/1: the settings a rerun must match (encoder
                        description, device, corpus fingerprint (path, size, mtime or irds id),
                        chunk size, limit, expansion field, store_text), "complete", and per
                        finished part [docs, truncated, empty, expanded]
    part-00000.npz      one part: consecutive documents in input order, as .npy arrays:
                        docid_bytes uint8 / docid_offsets int64[n+1] (UTF-8 ids),
                        indptr int64[n+1], ids int32 (token ids, or ids into "terms" for
                        whole-word encoders: terms uint8, UTF-8 terms joined by newlines),
                        weights float32, and with store_text text_bytes uint8 /
                        text_offsets int64[n+1]

A part is written after ``part_seconds`` (60) seconds of encoding or
``part_size`` documents, through a temporary file, the state, and a rename,
so a killed build loses at most about a minute of encoding. A rerun with the
same settings feeds the finished parts to a new builder and continues after
them; a rerun whose settings differ is refused, naming the first difference;
``restart`` discards the directory. Index settings (quantisation, block sizes,
reorder) and ``--threads``/``--batch-size`` may change between runs.
``restart`` and the removal once the index is in place delete only the files
of this layout; another file in ``DIR.partial/`` makes the build refuse it.
``overwrite`` replaces ``DIR`` as :class:`~lsr.index.IndexBuilder` does (an
lsr index or an empty directory only, swapped atomically) and resumes from
``DIR.partial`` like any rerun.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Sequence

import numpy as np

from lsr.config import IndexConfig
from lsr.errors import InputError, LsrError

PARTIAL_SUFFIX = ".partial"
STATE_FILE = "state.json"
STATE_FORMAT = "lsr-index-partial/1"
_MATCH = ("source", "encoder", "device", "chunk_docs", "limit", "expansion_field", "store_text")


def partial_dir(out_dir: str | os.PathLike) -> str:
    """The progress directory of a one-step build of ``out_dir``."""
    return os.path.abspath(os.fspath(out_dir)).rstrip(os.sep) + PARTIAL_SUFFIX


def read_partial(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """What ``DIR.partial`` holds (its state plus ``parts_on_disk`` and ``docs_done``), or None."""
    from lsr.io import read_json_object

    pdir = partial_dir(out_dir)
    path = os.path.join(pdir, STATE_FILE)
    if not os.path.isfile(path):
        return None
    state = read_json_object(path, InputError, "state")
    if state.get("format") != STATE_FORMAT:
        raise InputError(f"{path}: not a {STATE_FORMAT} state file")
    n = 0
    while os.path.exists(os.path.join(pdir, f"part-{n:05d}.npz")):
        n += 1
    parts = state.get("parts", [])[:n]
    return {**state, "path": pdir, "parts_on_disk": n, "docs_done": sum(p[0] for p in parts)}


def _join(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    enc = [s.encode("utf-8") for s in strings]
    offsets = np.zeros(len(enc) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, enc), dtype=np.int64, count=len(enc)), out=offsets[1:])
    return np.frombuffer(b"".join(enc), dtype=np.uint8), offsets


def _split(data: np.ndarray, offsets: np.ndarray) -> list[str]:
    raw = data.tobytes()
    bounds = offsets.tolist()
    return [raw[a:b].decode("utf-8") for a, b in zip(bounds[:-1], bounds[1:])]


class _Part:
    """Encoded documents held for the next part file."""

    def __init__(self, store_text: bool):
        self.store_text = store_text
        self.ids: list[str] = []
        self.texts: list[str] = []
        self.batches: list = []
        self.counts = [0, 0, 0, 0]

    def add(self, ids, texts, batch, stats) -> None:
        self.ids.extend(ids)
        if self.store_text:
            self.texts.extend(texts)
        self.batches.append(batch)
        for i, v in enumerate((len(ids), stats.truncated, stats.empty, stats.expanded)):
            self.counts[i] += v

    def write(self, path: str) -> None:
        from lsr.encoders.sides import SparseBatch

        b = self.batches
        token_ids = all(x.token_ids for x in b)
        if token_ids:
            ids = np.concatenate([x.ids for x in b])
            terms = None
        else:   # whole-word encoders: one term list for the part, ids renumbered into it
            merged = SparseBatch.from_dicts([v for x in b for v in x.to_dicts()])
            b, ids, terms = [merged], merged.ids, merged.terms
        indptr = np.zeros(len(self.ids) + 1, dtype=np.int64)
        lens = np.concatenate([np.diff(x.indptr) for x in b])
        np.cumsum(lens, out=indptr[1:])
        arrays = {"indptr": indptr, "ids": ids.astype(np.int32, copy=False),
                  "weights": np.concatenate([x.weights for x in b]).astype(np.float32, copy=False)}
        arrays["docid_bytes"], arrays["docid_offsets"] = _join(self.ids)
        if terms is not None:
            arrays["terms"] = np.frombuffer("\n".join(terms.tolist()).encode("utf-8"), dtype=np.uint8)
        if self.store_text:
            arrays["text_bytes"], arrays["text_offsets"] = _join(self.texts)
        with open(path, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())


def _load_part(path: str, vocab: np.ndarray, store_text: bool):
    """(doc ids, SparseBatch, texts or None) of a part file."""
    from lsr.encoders.sides import SparseBatch

    try:
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError) as e:
        raise LsrError(f"{path}: unreadable part ({e}); rerun with --restart") from None
    doc_ids = _split(a["docid_bytes"], a["docid_offsets"])
    if "terms" in a:
        raw = a["terms"].tobytes().decode("utf-8")
        terms = np.array(raw.split("\n") if raw else [], dtype=object)
        batch = SparseBatch(a["indptr"], a["ids"], a["weights"], terms, False)
    else:
        if len(a["ids"]) and int(a["ids"].max()) >= len(vocab):
            raise LsrError(f"{path}: token id outside the encoder's vocabulary; rerun with --restart")
        batch = SparseBatch(a["indptr"], a["ids"], a["weights"], vocab, True)
    texts = _split(a["text_bytes"], a["text_offsets"]) if store_text else None
    return doc_ids, batch, texts


class _TermTable:
    """Maps a batch's term ids to the builder's, numbering new terms in order of first appearance."""

    def __init__(self, builder):
        self.builder = builder
        self.token_map: np.ndarray | None = None   # token id -> builder id (-1: not seen yet)

    def __call__(self, batch) -> np.ndarray:
        ids = batch.ids
        if batch.token_ids:
            if self.token_map is None or len(self.token_map) != len(batch.terms):
                self.token_map = np.full(len(batch.terms), -1, dtype=np.int32)
            table = self.token_map
        else:
            table = np.full(len(batch.terms), -1, dtype=np.int32)
        if not len(ids):
            return ids
        uniq, first = np.unique(ids, return_index=True)
        unseen = table[uniq] < 0
        if unseen.any():
            new = uniq[unseen][np.argsort(first[unseen], kind="stable")]
            table[new] = self.builder.term_ids(batch.terms[new].tolist())
        return table[ids]


def build_index_from_text(corpus: str | os.PathLike, out_dir: str | os.PathLike,
                          config: IndexConfig | None = None, *, encoder: Any, batch_size: int = 32,
                          limit: int | None = None, expansion_field: str | None = None,
                          store_text: bool = False, overwrite: bool = False, restart: bool = False,
                          progress: bool = False, device: str = "cpu", dtype: str = "float32",
                          threads: int | None = None, part_size: int = 100_000, part_seconds: float = 60.0,
                          chunk_docs: int | None = None, on_part: Callable[[int, int], None] | None = None,
                          model_path: str | os.PathLike | None = None, ray: Any = None):
    """Encode the documents of ``corpus`` with ``encoder`` and build the index ``out_dir`` in one step.

    ``corpus``: a JSONL or TSV file (optionally gzipped) or ``irds:<id>``, as
    ``lsr encode --corpus`` reads them. ``encoder``: an
    :class:`~lsr.encoders.Encoder`, or a spec for
    :func:`~lsr.encoders.load_encoder` (name, preset, checkpoint directory,
    hub id, EncoderConfig) loaded with ``device``, ``dtype``, ``threads`` and
    ``model_path`` (a local checkpoint directory that replaces the spec's model).
    The manifest records ``Encoder.describe()`` and the runtime (device,
    dtype, threads, batch size), from which ``lsr search --query-format text``
    encodes queries. ``store_text`` keeps the texts in a docstore
    (:meth:`~lsr.index.Index.doc_text`). Resumable through ``<out_dir>.partial``
    (module docstring); ``restart`` discards it first. Documents are encoded
    in chunks of ``chunk_docs`` (default 256, at most ``part_size``);
    ``on_part(part_index, docs_done)`` is called after each part is on disk.
    Returns the opened :class:`~lsr.index.Index` (its ``encode_report``:
    documents, truncated, empty, parts, resumed_from, seconds). ``ray``: a
    :class:`lsr.distributed.encode.RayEncodeConfig` to encode on a Ray actor pool (the same index;
    the recorded runtime adds ``ray``).
    """
    from lsr.encoders import Encoder, load_encoder
    from lsr.encoders.collection import (CHUNK_DOCS, ResumableParts, check_encode_args, encode_chunks,
                                         runtime_info)
    from lsr.encoders.corpus import count_records, source_fingerprint
    from lsr.progress import Progress

    from lsr.outputs import refuse_input_overlap

    from .builder import IndexBuilder, check_replaceable_index

    chunk_docs = CHUNK_DOCS if chunk_docs is None else chunk_docs
    check_encode_args(part_size, limit, chunk_docs, part_seconds)
    chunk_docs = min(chunk_docs, part_size)
    corpus = os.fspath(corpus)
    out_dir = os.path.abspath(os.fspath(out_dir))
    refuse_input_overlap(out_dir, [corpus])
    refuse_input_overlap(partial_dir(out_dir), [corpus], "progress directory")
    if os.path.lexists(out_dir):
        if not overwrite:
            raise InputError(f"{out_dir} already exists (use overwrite / --overwrite to replace it)")
        check_replaceable_index(out_dir)
    if not os.path.isdir(os.path.dirname(out_dir)):
        raise InputError(f"parent directory {os.path.dirname(out_dir)} does not exist")
    if not isinstance(encoder, Encoder):
        if ray is not None:   # the device is the Ray actors', not this process's
            from lsr.distributed.encode import driver_encoder

            encoder = driver_encoder(encoder, device=device, dtype=dtype, threads=threads, model_path=model_path)
        else:
            encoder = load_encoder(encoder, device=device, dtype=dtype, threads=threads, model_path=model_path)
    elif model_path is not None:
        raise InputError("model_path applies to an encoder spec, not to a loaded Encoder")
    on_ray = None
    if ray is not None:
        from lsr.distributed.encode import RayEncoding

        on_ray = RayEncoding(encoder, ray, batch_size=batch_size)
    description = on_ray.describe() if on_ray is not None else encoder.describe()
    want = {"format": STATE_FORMAT, "output": out_dir, "source": source_fingerprint(corpus),
            "encoder": description, "device": encoder.runtime.device, "chunk_docs": chunk_docs,
            "limit": limit, "expansion_field": expansion_field, "store_text": bool(store_text)}
    pdir = partial_dir(out_dir)
    parts = ResumableParts(pdir, state_file=STATE_FILE, state_format=STATE_FORMAT, part_suffix=".npz",
                           want=want, match=_MATCH, what="a one-step build's progress",
                           start_again="rerun with --restart (restart=True) to discard it and start again")
    if restart:
        parts.clear()   # its own files only: anything else there makes prepare() refuse the directory
    parts.prepare()
    done = parts.totals()
    total = count_records(corpus) if progress else None
    if total is not None and limit is not None:
        total = min(total, limit)

    vocab = on_ray.vocab if on_ray is not None else encoder.doc_side.vocab
    t0 = time.perf_counter()
    info = {**description, "runtime": None}
    builder = IndexBuilder(out_dir, config, overwrite=overwrite, encoder=info, store_text=store_text,
                           inputs=[corpus])
    with builder:
        term_ids = _TermTable(builder)

        def feed(doc_ids, batch, texts) -> None:
            builder.add_batch(doc_ids, batch.indptr, term_ids(batch), batch.weights, texts)

        with Progress("lsr index: encode", total, unit="docs", enabled=progress,
                      initial=done["docs"]) as bar:
            for k in range(len(parts.stats)):
                feed(*_load_part(parts.part_path(k), vocab, store_text))
            part = _Part(store_text)
            part_t0 = time.monotonic()
            if not parts.complete:
                where = {"chunk_docs": chunk_docs, "skip": done["docs"], "limit": limit,
                         "expansion_field": expansion_field, "progress": bar.update}
                chunks = (encode_chunks(encoder, corpus, batch_size=batch_size, **where) if on_ray is None
                          else on_ray.chunks(corpus, keep_text=store_text, **where))
                for ids, texts, batch, stats in chunks:
                    part.add(ids, texts, batch, stats)
                    feed(ids, batch, texts if store_text else None)
                    if len(part.ids) >= part_size or time.monotonic() - part_t0 >= part_seconds:
                        parts.commit(part.write, part.counts)
                        part = _Part(store_text)
                        part_t0 = time.monotonic()
                        if on_part is not None:
                            on_part(len(parts.stats) - 1, parts.totals()["docs"])
                if part.ids:
                    parts.commit(part.write, part.counts)
                parts.finish()
        totals = parts.totals()
        builder.encoder["runtime"] = (on_ray.runtime_info() if on_ray is not None
                                      else runtime_info(encoder, batch_size))
        index = builder.finish()
    parts.clear()
    try:
        os.rmdir(pdir)
    except OSError:   # a file lsr did not write is there: left with the directory
        pass
    index.encode_report = {**totals, "parts": len(parts.stats), "resumed_from": done["docs"],
                           "seconds": time.perf_counter() - t0}
    return index


__all__ = ["PARTIAL_SUFFIX", "build_index_from_text", "partial_dir", "read_partial"]
