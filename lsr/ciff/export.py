"""Write an lsr index as a CIFF file, streaming term by term."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from lsr import __version__
from lsr.errors import InputError
from lsr.outputs import refuse_input_overlap
from lsr.progress import Progress

from . import common_index_format_v1_pb2 as pb
from .stream import write_delimited

METADATA_PREFIX = "lsr-metadata: "
METADATA_FORMAT = "lsr-ciff/1"
_INT32_MAX = (1 << 31) - 1
_DOC_CHUNK = 1 << 16


@dataclass(frozen=True)
class ExportStats:
    """What :func:`export_index` wrote."""

    path: str
    documents: int
    postings_lists: int
    postings: int
    dropped: int          # float impacts that rounded to tf 0 and were left out
    scale: float          # tf = floor(weight * scale + 0.5) for a float index; 1 for an integer one
    bytes: int
    seconds: float


def _open_index(index_or_path):
    from lsr.index import Index

    if isinstance(index_or_path, Index):
        return index_or_path
    if not isinstance(index_or_path, (str, os.PathLike)):
        raise InputError(f"export_index: expected an Index or an index directory, not {type(index_or_path).__name__}")
    return Index.open(index_or_path)


def _check_output(out: str, index_path: str, overwrite: bool) -> None:
    refuse_input_overlap(out, [index_path])
    if out.startswith(os.path.realpath(index_path).rstrip(os.sep) + os.sep) or \
            os.path.realpath(out).startswith(os.path.realpath(index_path).rstrip(os.sep) + os.sep):
        raise InputError(f"{out}: the output is inside the index {index_path}; choose another output")
    if os.path.lexists(out):
        if not overwrite:
            raise InputError(f"{out} already exists (use overwrite / --overwrite to replace it)")
        if os.path.islink(out) or not os.path.isfile(out):
            raise InputError(f"{out} exists and is not a regular file: --overwrite replaces only a file "
                             "(remove it yourself or choose another output)")
    parent = os.path.dirname(out)
    if not os.path.isdir(parent):
        raise InputError(f"parent directory {parent} does not exist")


def _create_beside(out: str) -> tuple[int, str]:
    """A new file ``<out>.<random>.tmp`` (mode 0o666 less the umask, as ``open`` makes files): (fd, path)."""
    while True:
        tmp = f"{out}.{os.urandom(4).hex()}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def _description(ix, n_terms: int, n_post: int, scale: float, bits: int, dropped: int) -> str:
    """The header description of an export: a sentence, then one ``lsr-metadata:`` JSON line."""
    name = os.path.basename(ix.path.rstrip(os.sep))
    head = (f"lsr {__version__} export of the lsr index {name!r}: {ix.num_documents} documents, {n_terms} terms, "
            f"{n_post} postings; ")
    if ix.is_float:
        tf = {"method": "max", "bits": bits, "scale": scale, "rounding": "floor(weight * scale + 0.5)",
              "dropped_postings": dropped}
        head += (f"float impacts quantised: lsr quantisation scale={scale!r} bits={bits} "
                 f"(tf = floor(weight * scale + 0.5); weight ~ tf / scale; {dropped} postings rounded to 0 "
                 "were left out)")
    else:
        q = ix.quantization
        tf = {"method": "identity", "scale": 1.0}
        head += (f"tf = the index's {ix.manifest['impact_dtype']} impacts exactly (lsr quantisation scale=1; the "
                 f"index itself quantised its weights by {q.get('method')!r} at scale {q.get('scale')!r})")
    meta = {"format": METADATA_FORMAT, "tf": tf, "index_quantization": ix.quantization, "encoder": ix.encoder}
    return head + "\n" + METADATA_PREFIX + json.dumps(meta, sort_keys=True, ensure_ascii=False,
                                                      separators=(",", ":"))


def export_index(index_or_path, path: str | os.PathLike, *, bits: int = 8, description: str | None = None,
                 overwrite: bool = False, progress: bool = False) -> ExportStats:
    """Write an index as a CIFF file at ``path``; returns :class:`ExportStats`.

    The stream is the header, one ``PostingsList`` a term with postings, in ascending term order
    (UTF-8 byte order; doc ids as gaps, impacts as the integer ``tf``), then one ``DocRecord`` a
    document in internal doc order (``docid`` = lsr's document number, ``collection_docid`` = its
    external id, ``doclength`` = the stored ``doc_lengths`` or else the sum of its tf values). An
    integer index exports its impacts exactly; a float index is quantised with
    ``scale = (2**bits - 1) / largest weight``, ``tf = floor(weight * scale + 0.5)``, postings that
    round to 0 left out, the scale named in the header description. The description is
    ``description`` if given, else the one of the CIFF file an integer index was imported from,
    else a sentence and an ``lsr-metadata:`` JSON line (quantisation, encoder). The file is written
    beside ``path`` and renamed into place; ``overwrite`` replaces an existing file (nothing else).
    Memory: one term's postings and the documents' lengths (8 bytes a document).
    """
    import time

    from lsr.index.kernels.postings import decode_term_into

    t0 = time.perf_counter()
    if bits not in (8, 16):
        raise InputError(f"bits must be 8 or 16, got {bits!r}")
    ix = _open_index(index_or_path)
    out = os.path.abspath(os.fspath(path))
    _check_output(out, ix.path, overwrite)
    n_docs, n_terms_all = ix.num_documents, ix.num_terms
    if n_docs > _INT32_MAX:
        raise InputError(f"{n_docs} documents: CIFF doc ids are int32")
    term_offsets = ix.term_offsets
    imps = ix.postings_impacts
    scale = ix.integer_scale(bits)[0]
    df = np.diff(term_offsets)
    order = sorted(range(n_terms_all), key=ix.terms.__getitem__)   # code point order = UTF-8 byte order
    buf = np.empty(int(df.max()) if len(df) else 0, np.int32)
    pa = (term_offsets, ix.range_code_offsets, ix.range_codes, ix.postings_low, ix.range_shift)

    def term_postings(t: int) -> tuple[np.ndarray, np.ndarray]:
        s, e = int(term_offsets[t]), int(term_offsets[t + 1])
        decode_term_into(*pa, t, buf, 0)
        docs = buf[:e - s]
        if ix.is_float:
            tf = np.floor(np.asarray(imps[s:e], np.float64) * scale + 0.5).astype(np.int64)
            keep = tf > 0
            return docs[keep], tf[keep]
        return docs, np.asarray(imps[s:e], np.int64)

    # pass 1: what the header needs (lengths, terms and postings kept) before any postings list is written
    stored = ix.arrays.get("doc_lengths")
    lengths = np.zeros(n_docs, np.int64) if stored is None else np.asarray(stored, np.int64)
    kept_terms = kept_post = 0
    with Progress("ciff export (counting)", n_terms_all, unit="terms", enabled=progress) as bar:
        for t in range(n_terms_all):
            if df[t] and (stored is None or ix.is_float):
                docs, tf = term_postings(t)
                if len(docs):
                    kept_terms += 1
                    kept_post += len(docs)
                    if stored is None:
                        lengths[docs] += tf   # doc ids are distinct within a term
            elif df[t]:
                kept_terms += 1
                kept_post += int(df[t])
            bar.update()
    if kept_terms > _INT32_MAX:
        raise InputError(f"{kept_terms} terms: CIFF counts postings lists in int32")
    if n_docs and lengths.max() > _INT32_MAX:
        raise InputError(f"a document length of {int(lengths.max())} does not fit CIFF's int32 doclength")
    dropped = int(df.sum()) - kept_post
    total = int(lengths.sum())
    if description is None:
        prov = (ix.manifest.get("provenance") or {}).get("ciff")
        if not ix.is_float and isinstance(prov, dict) and isinstance(prov.get("description"), str):
            description = prov["description"]
        else:
            description = _description(ix, kept_terms, kept_post, scale, bits, dropped)
    header = pb.Header(version=1, num_postings_lists=kept_terms, num_docs=n_docs, total_postings_lists=kept_terms,
                       total_docs=n_docs, total_terms_in_collection=total,
                       average_doclength=total / n_docs if n_docs else 0.0, description=description)

    fd, tmp = _create_beside(out)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as f:
            size = write_delimited(f, header)
            PL, DR = pb.PostingsList, pb.DocRecord
            with Progress("ciff export", n_terms_all, unit="terms", enabled=progress) as bar:
                for t in order:
                    if df[t]:
                        docs, tf = term_postings(t)
                        if len(docs):
                            gaps = np.diff(docs, prepend=0)
                            pl = PL(term=ix.terms[t], df=len(docs), cf=int(tf.sum()))
                            add = pl.postings.add
                            for g, x in zip(gaps.tolist(), tf.tolist()):
                                add(docid=g, tf=x)
                            size += write_delimited(f, pl)
                    bar.update()
            for a in range(0, n_docs, _DOC_CHUNK):
                b = min(n_docs, a + _DOC_CHUNK)
                ids = ix.doc_ids(np.arange(a, b))
                for d, (cid, n) in enumerate(zip(ids, lengths[a:b].tolist()), start=a):
                    size += write_delimited(f, DR(docid=d, collection_docid=cid, doclength=n))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return ExportStats(out, n_docs, kept_terms, kept_post, dropped, scale, size, time.perf_counter() - t0)
