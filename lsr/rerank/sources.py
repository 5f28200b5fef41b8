"""Document text and query text sources for reranking.

Documents (:func:`open_docs`):

* an :class:`~lsr.index.Index` built with stored text, or the path of one
  (a directory with ``manifest.json``): texts come from its memory-mapped docstore;
* a JSONL corpus (BEIR ``corpus.jsonl``: ``_id``, ``title`` + ``text``) or a TSV
  ``id<TAB>text`` file (optionally ``.gz``), read as :mod:`lsr.encoders.corpus`
  reads a corpus to encode: one streaming pass that keeps only the texts asked for;
* ``irds:<ir_datasets id>``: the dataset's docstore (``docs_store().get_many``),
  text from ``default_text()``;
* a mapping ``{doc id: text}``.

Queries (:func:`query_texts`): a mapping, a sequence of ``(id, text)`` pairs or
of :class:`~lsr.io.Query` with text, a TSV ``qid<TAB>text`` or JSONL
``{"id", "text"}`` file, or ``irds:<id>``.

A doc id that the source does not hold is an :class:`~lsr.errors.InputError`
naming the id (and how many others are missing).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol, runtime_checkable

from lsr.errors import InputError, LsrError

IRDS_PREFIX = "irds:"


@runtime_checkable
class DocSource(Protocol):
    """Anything that gives the texts of documents by id."""

    def texts(self, ids: Iterable[str]) -> dict[str, str]:
        """``{id: text}`` for every id asked for; InputError naming an id the source lacks."""


def _missing(ids: Iterable[str], have, where: str) -> None:
    missing = [i for i in ids if i not in have]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"doc id {missing[0]!r} is not in {where}{more}")


class MappingDocs:
    """Texts from a ``{doc id: text}`` mapping."""

    def __init__(self, docs: Mapping[str, str], where: str = "the given documents") -> None:
        self.docs = docs
        self.where = where

    def texts(self, ids: Iterable[str]) -> dict[str, str]:
        ids = list(ids)
        _missing(ids, self.docs, self.where)
        return {i: self.docs[i] for i in ids}


class IndexDocs:
    """Texts stored in an index (``lsr index --store-text``)."""

    def __init__(self, index) -> None:
        from lsr.index import Index

        self.index = index if isinstance(index, Index) or getattr(index, "is_sharded", False) else Index.open(index)
        if not self.index.has_text:
            raise InputError(f"{self.index.path} stores no document text (build it with --store-text); "
                             "give the documents as a corpus file or irds:<id> instead")

    def texts(self, ids: Iterable[str]) -> dict[str, str]:
        ids = list(dict.fromkeys(ids))
        internal = self.index._internal
        _missing(ids, internal, f"the index {self.index.path}")
        return dict(zip(ids, self.index.doc_texts([internal[i] for i in ids])))


class FileDocs:
    """Texts of a JSONL or TSV corpus, read in one streaming pass per call (memory: the texts asked for)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise InputError(f"document source {self.path}: no such file")

    def texts(self, ids: Iterable[str]) -> dict[str, str]:
        from lsr.encoders.corpus import iter_records

        want = set(ids)
        out: dict[str, str] = {}
        for rec in iter_records(self.path):
            if rec.id in want and rec.id not in out:
                out[rec.id] = rec.text
                if len(out) == len(want):
                    break
        _missing(sorted(want), out, self.path)
        return out


class IrdsDocs:
    """Texts from an ir_datasets docstore (random access by id)."""

    def __init__(self, dataset_id: str) -> None:
        try:
            import ir_datasets
        except ImportError:
            raise LsrError("irds: sources need the ir_datasets package (pip install 'lsr[eval]')") from None
        try:
            self.dataset = ir_datasets.load(dataset_id)
        except KeyError:
            raise InputError(f"unknown ir_datasets id {dataset_id!r}") from None
        if not self.dataset.has_docs():
            raise InputError(f"ir_datasets {dataset_id!r} has no documents")
        self.dataset_id = dataset_id

    def texts(self, ids: Iterable[str]) -> dict[str, str]:
        from lsr.encoders.errors import one_line

        ids = list(dict.fromkeys(ids))
        try:
            got = self.dataset.docs_store().get_many(ids)
        except LsrError:
            raise
        except Exception as e:  # cache or download problems inside ir_datasets
            raise InputError(f"irds:{self.dataset_id}: cannot read documents ({one_line(e)})") from e
        _missing(ids, got, f"irds:{self.dataset_id}")
        out = {}
        for i in ids:
            doc = got[i]
            out[i] = doc.default_text() if hasattr(doc, "default_text") else doc.text
        return out


def iter_docs(source) -> Iterator[tuple[str, str]]:
    """Every ``(doc id, text)`` of a source, in its order (an index: index order, texts read in chunks)."""
    from lsr.index import Index

    if isinstance(source, Mapping):
        yield from source.items()
        return
    if isinstance(source, Index) or getattr(source, "is_sharded", False) or (
            isinstance(source, (str, os.PathLike)) and os.path.isdir(os.fspath(source))):
        ix = open_docs(source).index
        for a in range(0, ix.num_documents, 4096):
            nums = list(range(a, min(a + 4096, ix.num_documents)))
            yield from zip(ix.doc_ids(nums), ix.doc_texts(nums))
        return
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"cannot read documents from a {type(source).__name__}")
    from lsr.encoders.corpus import iter_records

    s = os.fspath(source)
    if not s.startswith(IRDS_PREFIX) and not os.path.isfile(s):
        raise InputError(f"document source {s}: no such file")
    for rec in iter_records(s):
        yield rec.id, rec.text


def open_docs(source) -> DocSource:
    """A :class:`DocSource` for ``source`` (see the module docstring)."""
    from lsr.index import Index

    if isinstance(source, Index) or getattr(source, "is_sharded", False):   # an index or a sharded one
        return IndexDocs(source)
    if isinstance(source, Mapping):
        return MappingDocs(source)
    if isinstance(source, (str, os.PathLike)):
        s = os.fspath(source)
        if s.startswith(IRDS_PREFIX):
            if not s[len(IRDS_PREFIX):]:
                raise InputError("irds: needs a dataset id, e.g. irds:beir/scifact")
            return IrdsDocs(s[len(IRDS_PREFIX):])
        if os.path.isdir(s):
            if not os.path.isfile(os.path.join(s, "manifest.json")):
                raise InputError(f"document source {s} is a directory but not an lsr index")
            return IndexDocs(s)
        return FileDocs(s)
    if isinstance(source, DocSource):
        return source
    raise InputError(f"cannot read documents from a {type(source).__name__}: give an index, a corpus "
                     "file, irds:<id> or a {id: text} mapping")


def query_texts(queries) -> dict[str, str]:
    """``{query id: text}`` from a mapping, pairs, :class:`~lsr.io.Query` objects or a query source."""
    from lsr.io import Query

    if isinstance(queries, Mapping):
        out = {str(k): v for k, v in queries.items()}
    elif isinstance(queries, (str, os.PathLike)):
        from lsr.encoders.corpus import iter_records

        s = os.fspath(queries)
        if not s.startswith(IRDS_PREFIX) and not os.path.isfile(s):
            raise InputError(f"query file {s}: no such file")
        out = {}
        for rec in iter_records(s, queries=True):
            if rec.id in out:
                raise InputError(f"{s}: duplicate query id {rec.id!r}")
            out[rec.id] = rec.text
    else:
        out = {}
        for q in queries:
            if isinstance(q, Query):
                if q.text is None:
                    raise InputError(f"query {q.id!r} has no text to rerank with (it is a term-weight query)")
                out[q.id] = q.text
            else:
                qid, text = q
                out[str(qid)] = text
    for qid, text in out.items():
        if not isinstance(text, str):
            raise InputError(f"query {qid!r}: the text is a {type(text).__name__}, not a string")
    return out
