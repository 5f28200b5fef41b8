"""PyTerrier transformers over lsr: retrieval, indexing, encoding and reranking (the ``pyterrier`` extra).

Imported only when used (``import lsr.pyterrier``; ``import lsr`` never imports PyTerrier), and none
of these transformers starts Java. They follow PyTerrier 1.x's data model:

* :class:`LsrRetriever` ``(index, k=1000)``: a query frame (``qid`` and ``query`` text, or
  ``query_toks``, a ``{term: weight}`` dict per row) in, a result frame out: the input columns of
  each query, then ``docno``, ``score`` (float) and ``rank`` (from 0). Ranks follow lsr's exact
  search: score descending, equal scores in collection order. Text is encoded by the query
  encoder the index records, as :meth:`lsr.Searcher.search` does; the whole frame goes through
  one :meth:`lsr.Searcher.search_batch` call.
* :class:`LsrIndexer` ``(path, encoder=None)``: ``.index(iter_dict)`` of documents with ``docno``
  and ``toks`` (``{term: weight}``) or, given an encoder, ``text``; streamed into
  :class:`lsr.IndexBuilder`. Returns the opened :class:`lsr.Index`.
* :class:`LsrQueryEncoder` / :class:`LsrDocEncoder` (``encoder.query_encoder()``,
  ``encoder.doc_encoder()``): ``query`` -> ``query_toks``, ``text`` -> ``toks``.
* :class:`LsrReranker` (``reranker.as_transformer()``): a result frame with ``query`` and the
  documents' text (a column, e.g. from ``pt.text.get_text``, or an index with stored text)
  re-scored by an lsr reranker with :meth:`lsr.Reranker.rerank`'s semantics.
* :class:`LsrTextLoader` (``retriever.text_loader()``, so ``pt.text.get_text(retriever)``): the
  ``text`` column from the docstore of an index built with ``store_text``.

A frame without the columns a transformer needs raises :class:`ColumnsError`, which is both an
:class:`lsr.InputError` (one line, as every lsr error) and PyTerrier's
``pt.validate.InputValidationError`` (so ``pt.inspect`` reads the accepted columns from it).
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from lsr.errors import InputError, LsrError

try:
    import pandas as pd
    import pyterrier as pt
except ImportError:   # pragma: no cover - the extra is installed where this module is tested
    raise LsrError("lsr.pyterrier needs PyTerrier and pandas: pip install 'lsr[pyterrier]'") from None

__all__ = ["ColumnsError", "LsrRetriever", "LsrIndexer", "LsrQueryEncoder", "LsrDocEncoder", "LsrReranker",
           "LsrTextLoader"]


class ColumnsError(InputError, pt.validate.InputValidationError):
    """A frame that lacks a column a transformer needs (or has one it must not have).

    An :class:`lsr.InputError` whose message is one line, and a PyTerrier
    ``InputValidationError`` whose ``modes`` list the column sets that were tried."""

    def __init__(self, message: str, modes: list) -> None:
        pt.validate.InputValidationError.__init__(self, message, modes)

    def __str__(self) -> str:
        return self.args[0]


def _check_columns(inp: pd.DataFrame, who: str, modes: list[tuple[str, list[str], list[str]]]) -> str:
    """The name of the first mode (name, required columns, forbidden columns) that ``inp`` fits;
    :class:`ColumnsError` naming them all when it fits none."""
    if not isinstance(inp, pd.DataFrame):
        raise InputError(f"{who} takes a pandas DataFrame, not {type(inp).__name__}")
    try:
        with pt.validate.any(inp) as v:
            for name, includes, excludes in modes:
                v.columns(includes=includes, excludes=excludes, mode=name)
    except pt.validate.InputValidationError as e:
        wanted = " or ".join(
            "[" + ", ".join(inc) + "]" + (f" without {', '.join(exc)}" if exc else "") for _, inc, exc in modes)
        raise ColumnsError(f"{who} needs a frame with the columns {wanted}; got the columns "
                           f"[{', '.join(map(str, inp.columns))}]", e.modes) from None
    return v.mode


def _qid_strings(inp: pd.DataFrame, who: str) -> list[str]:
    qids = [str(q) for q in inp["qid"].tolist()]
    if len(set(qids)) != len(qids):
        dup = next(q for q, n in Counter(qids).items() if n > 1)
        raise InputError(f"{who}: qid {dup!r} is on more than one row of the query frame (one row a query)")
    return qids


def _positive_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise InputError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def _result_frame(inp: pd.DataFrame, rows: np.ndarray, docnos: list[str], scores: np.ndarray,
                  ranks: np.ndarray) -> pd.DataFrame:
    """Rows ``rows`` of ``inp`` (all its columns) with ``docno``, ``score`` and ``rank`` set."""
    out = inp.iloc[rows].reset_index(drop=True)
    return out.assign(docno=list(docnos),
                      score=np.asarray(scores, dtype=np.float64),
                      rank=np.asarray(ranks, dtype=np.int64))


# ------------------------------------------------------------------------------------ retrieval
class LsrRetriever(pt.Transformer):
    """Exact top-``k`` retrieval from an lsr index as a PyTerrier transformer.

    ``index``: an :class:`lsr.Index`, the path of one, or an :class:`lsr.Searcher` (whose
    settings are then used); ``config``: a :class:`lsr.SearchConfig` for a new searcher
    (``algorithm``, ``query_scale``, ...); ``threads``: search threads (None: the config's).

    Input: a query frame with ``qid`` and either ``query_toks`` (``{term: weight}`` per row,
    used when present) or ``query`` (text, encoded by the index's recorded query encoder); one
    row a query, no ``docno``. Output: per query its hits in rank order, each row the query's
    input columns plus ``docno``, ``score`` (float64) and ``rank`` (0 first); equal scores are
    in collection order, as lsr's searcher ranks them. A query with no terms gets no rows.
    ``% n`` (rank cutoff) fuses into a retriever with ``k=n`` when pipelines are compiled.
    """

    def __init__(self, index, k: int = 1000, *, config=None, threads: int | None = None) -> None:
        from lsr.index import Index, Searcher

        if isinstance(index, Searcher):
            if config is not None:
                raise InputError("LsrRetriever: give a config with an index or a path, not with a Searcher "
                                 "(the Searcher has its settings)")
            self.searcher = index
        else:
            if not isinstance(index, (str, os.PathLike, Index)):
                raise InputError(f"LsrRetriever: index must be an lsr.Index, a path or an lsr.Searcher, "
                                 f"not {type(index).__name__}")
            self.searcher = Searcher(index, config)
        self.index = self.searcher.index
        self.k = _positive_int("LsrRetriever: k", k)
        self.config = self.searcher.config
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 0):
            raise InputError(f"LsrRetriever: threads must be an integer >= 0 (0: all cores), got {threads!r}")
        self.threads = threads

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        mode = _check_columns(inp, "LsrRetriever", [("query_toks", ["qid", "query_toks"], ["docno"]),
                                                     ("text", ["qid", "query"], ["docno"])])
        if len(inp) == 0:
            return _result_frame(inp, np.zeros(0, np.int64), [], np.zeros(0), np.zeros(0, np.int64))
        qids = _qid_strings(inp, "LsrRetriever")
        if mode == "query_toks":
            queries = []
            for qid, toks in zip(qids, inp["query_toks"].tolist()):
                if not isinstance(toks, Mapping):
                    raise InputError(f"LsrRetriever: query_toks of qid {qid!r} is a {type(toks).__name__}, not a "
                                     "{term: weight} dict")
                queries.append((qid, toks))
        else:
            queries = []
            for qid, text in zip(qids, inp["query"].tolist()):
                if not isinstance(text, str):
                    raise InputError(f"LsrRetriever: the query of qid {qid!r} is a {type(text).__name__}, not text")
                queries.append((qid, text))
        res = self.searcher.search_batch(queries, k=self.k, threads=self.threads)
        row_of = {q: i for i, q in enumerate(qids)}
        rows = np.fromiter((row_of[q] for q in res.query_ids), dtype=np.int64, count=len(res))
        return _result_frame(inp, rows, res.doc_ids, res.scores, res.ranks - 1)

    def fuse_rank_cutoff(self, k: int):
        """``self % k`` as one retriever (PyTerrier's compile step): exact search's top ``k`` is the
        first ``k`` of a larger top."""
        if isinstance(k, (int, np.integer)) and not isinstance(k, bool) and 1 <= k < self.k:
            return LsrRetriever(self.searcher, k=int(k), threads=self.threads)
        return None

    def text_loader(self, fields="*", *, verbose: bool = False) -> "LsrTextLoader":
        """The documents' stored text (``pt.text.get_text(retriever)``); the index must store text."""
        return LsrTextLoader(self.index, fields)

    def __repr__(self) -> str:
        return f"LsrRetriever({self.index.path!r}, k={self.k})"


class LsrTextLoader(pt.Transformer):
    """Adds the ``text`` column to a frame with ``docno``: each document's text from the docstore of
    an index built with ``store_text`` (``fields``: ``'*'``, ``'text'`` or ``['text']``)."""

    def __init__(self, index, fields="*") -> None:
        from lsr.index import Index

        self.index = index if isinstance(index, Index) else Index.open(index)
        if not self.index.has_text:
            raise InputError(f"{self.index.path} stores no document text (build it with store_text=True / "
                             "--store-text), so it cannot load the text column")
        if fields not in ("*", "text", ["text"], ("text",)):
            raise InputError(f"LsrTextLoader: an lsr index stores one field, 'text'; got {fields!r}")
        self.fields = fields

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        _check_columns(inp, "LsrTextLoader", [("docs", ["docno"], [])])
        docnos = [str(d) for d in inp["docno"].tolist()]
        texts = self.index.doc_texts(docnos) if docnos else []
        return inp.assign(text=pd.Series(texts, index=inp.index, dtype=object))

    def __repr__(self) -> str:
        return f"LsrTextLoader({self.index.path!r})"


# ------------------------------------------------------------------------------------ encoders
class LsrQueryEncoder(pt.Transformer):
    """A query frame's ``query`` text encoded into ``query_toks`` (``{term: weight}`` per row) by an
    lsr encoder's query side (:meth:`lsr.encoders.QueryEncoder.encode_queries`); other columns kept."""

    def __init__(self, encoder, batch_size: int = 64) -> None:
        self.encoder = encoder
        self.batch_size = _positive_int("LsrQueryEncoder: batch_size", batch_size)

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        _check_columns(inp, "LsrQueryEncoder", [("text", ["query"], [])])
        texts = inp["query"].tolist()
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InputError(f"LsrQueryEncoder: the query on row {i} is a {type(t).__name__}, not text")
        vecs = self.encoder.encode_queries(texts, batch_size=self.batch_size) if texts else []
        return inp.assign(query_toks=pd.Series(vecs, index=inp.index, dtype=object))

    def __repr__(self) -> str:
        return f"LsrQueryEncoder({self.encoder.config.name!r})"


class LsrDocEncoder(pt.Transformer):
    """A document frame's text encoded into ``toks`` (``{term: weight}`` per row) by an lsr encoder's
    document side (:meth:`lsr.encoders.Encoder.encode_documents`); other columns kept.
    ``text_field``: the text column, or a list of columns joined by a space (empty ones left out, as
    lsr reads a BEIR title and text), e.g. ``["title", "text"]``."""

    def __init__(self, encoder, text_field: str | list[str] = "text", batch_size: int = 32) -> None:
        self.encoder = encoder
        self.text_field = text_field
        self._fields = _text_fields("LsrDocEncoder", text_field)
        self.batch_size = _positive_int("LsrDocEncoder: batch_size", batch_size)

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        _check_columns(inp, "LsrDocEncoder", [("text", self._fields, [])])
        columns = [inp[f].tolist() for f in self._fields]
        texts = [_joined(values, self._fields, f"LsrDocEncoder: row {i}") for i, values in enumerate(zip(*columns))]
        vecs = self.encoder.encode_documents(texts, batch_size=self.batch_size) if texts else []
        return inp.assign(toks=pd.Series(vecs, index=inp.index, dtype=object))

    def __repr__(self) -> str:
        return f"LsrDocEncoder({self.encoder.config.name!r})"


def _text_fields(who: str, text_field) -> list[str]:
    fields = [text_field] if isinstance(text_field, str) else (
        list(text_field) if isinstance(text_field, (list, tuple)) else [])
    if not fields or not all(isinstance(f, str) and f for f in fields):
        raise InputError(f"{who}: text_field must be a column name or a list of them, got {text_field!r}")
    return fields


def _joined(values, fields: list[str], where: str) -> str:
    """The fields' texts joined by a space, empty or missing (None) ones left out."""
    for f, v in zip(fields, values):
        if v is not None and not isinstance(v, str):
            raise InputError(f"{where}: {f} is a {type(v).__name__}, not text")
    return " ".join(v for v in values if v)


# ------------------------------------------------------------------------------------ indexing
class LsrIndexer(pt.Indexer):
    """Build an lsr index from PyTerrier documents: ``LsrIndexer(path).index(iter_dict)``.

    Each document is a dict with ``docno`` and either ``toks`` (``toks_field``: a
    ``{term: weight}`` dict, as pyterrier_pisa's toks indexer takes; used when the first document
    has it) or text, which ``encoder`` encodes. ``text_field``: the text field, or a list of
    fields joined by a space (empty ones left out, as ``lsr index`` reads a BEIR title and text),
    e.g. ``["title", "text"]`` for PyTerrier's BEIR corpora. ``encoder``: an
    :class:`lsr.encoders.Encoder`, or a spec :func:`lsr.encoders.load_encoder` takes (a preset
    name, checkpoint directory, hub id) loaded with ``model_path`` and ``device``. With an encoder
    the index records it (also when it is given ``toks``, which it is then told that encoder made),
    so text queries work on the index. ``config``: an :class:`lsr.IndexConfig`; ``store_text``
    keeps the (joined) text in a docstore; ``overwrite`` replaces an existing lsr index at
    ``path`` (atomically, as :class:`lsr.IndexBuilder` does). Documents stream into the builder:
    texts are encoded ``chunk_docs`` at a time, ``batch_size`` per forward pass. ``index``
    returns the opened :class:`lsr.Index`; a failed build leaves nothing at ``path``.
    """

    def __init__(self, path, encoder=None, *, overwrite: bool = False, config=None,
                 text_field: str | list[str] = "text", toks_field: str = "toks", store_text: bool = False,
                 batch_size: int = 32, chunk_docs: int = 256, model_path=None, device: str = "cpu",
                 progress: bool = False) -> None:
        self.path = os.fspath(path)
        self.encoder = encoder
        self.overwrite = bool(overwrite)
        self.config = config
        self.text_field = text_field
        self._fields = _text_fields("LsrIndexer", text_field)
        if not isinstance(toks_field, str) or not toks_field:
            raise InputError(f"LsrIndexer: toks_field must be a field name, got {toks_field!r}")
        self.toks_field = toks_field
        self.store_text = bool(store_text)
        self.batch_size = _positive_int("LsrIndexer: batch_size", batch_size)
        self.chunk_docs = _positive_int("LsrIndexer: chunk_docs", chunk_docs)
        self.model_path = model_path
        self.device = device
        self.progress = progress

    def index_inputs(self) -> list[list[str]]:
        toks = ["docno", self.toks_field] + (self._fields if self.store_text else [])
        return [toks, ["docno", *self._fields]] if self.encoder is not None else [toks]

    def _load_encoder(self):
        from lsr.encoders import Encoder, load_encoder

        if self.encoder is None or isinstance(self.encoder, Encoder):
            if self.model_path is not None and self.encoder is not None:
                raise InputError("LsrIndexer: model_path applies to an encoder spec, not to a loaded Encoder")
            return self.encoder
        return load_encoder(self.encoder, device=self.device, model_path=self.model_path)

    def index(self, iter_dict: Iterable[Mapping[str, Any]]):
        from lsr.index import IndexBuilder

        it = iter(iter_dict)
        first = next(it, None)
        if first is None:
            raise InputError("LsrIndexer: no documents to index")
        it = itertools.chain([first], it)
        if not isinstance(first, Mapping):
            raise InputError(f"LsrIndexer: documents are dicts (docno, toks or text), not {type(first).__name__}")
        use_toks = self.toks_field in first
        if not use_toks and (self.encoder is None or not all(f in first for f in self._fields)):
            text = " + ".join(map(repr, self._fields))
            raise InputError(f"LsrIndexer: the documents need a docno and {self.toks_field!r} ({{term: weight}})"
                             f"{f' or {text} (text)' if self.encoder is not None else ''}; the first has the "
                             f"fields {', '.join(map(repr, first))}"
                             + ("" if self.encoder is not None else " (give an encoder to index text)"))
        encoder = self._load_encoder()
        info = None if encoder is None else {**encoder.describe(), "runtime": None}
        with IndexBuilder(self.path, self.config, overwrite=self.overwrite, encoder=info, progress=self.progress,
                          store_text=self.store_text) as builder:
            if use_toks:
                self._add_toks(builder, it)
            else:
                self._add_texts(builder, encoder, it)
            if encoder is not None:
                from lsr.encoders.collection import runtime_info

                builder.encoder["runtime"] = runtime_info(encoder, self.batch_size)
        return builder.index

    @staticmethod
    def _docno(n: int, doc) -> str:
        if not isinstance(doc, Mapping):
            raise InputError(f"LsrIndexer: document {n} is a {type(doc).__name__}, not a dict")
        docno = doc.get("docno")
        if not isinstance(docno, str):
            raise InputError(f"LsrIndexer: document {n} has "
                             f"{'no docno' if docno is None else f'docno {docno!r}, not a string'}")
        return docno

    def _text(self, doc, docno: str) -> str:
        missing = [f for f in self._fields if f not in doc]
        if missing:
            raise InputError(f"LsrIndexer: document {docno!r} has no {missing[0]!r} field (its text)")
        return _joined([doc[f] for f in self._fields], self._fields, f"LsrIndexer: document {docno!r}")

    def _add_toks(self, builder, it) -> None:
        for n, doc in enumerate(it):
            docno = self._docno(n, doc)
            toks = doc.get(self.toks_field)
            if not isinstance(toks, Mapping):
                got = "no such field" if self.toks_field not in doc else f"a {type(toks).__name__}"
                raise InputError(f"LsrIndexer: document {docno!r} needs {self.toks_field!r} as a {{term: weight}} "
                                 f"dict ({got})")
            builder.add(docno, toks, where=f"document {docno!r}",
                        text=self._text(doc, docno) if self.store_text else None)

    def _add_texts(self, builder, encoder, it) -> None:
        from lsr.index.text_index import _TermTable

        term_ids = _TermTable(builder)   # terms numbered as `lsr index --encoder` numbers them
        n = 0
        while True:
            chunk = list(itertools.islice(it, self.chunk_docs))
            if not chunk:
                break
            ids = [self._docno(n + i, doc) for i, doc in enumerate(chunk)]
            texts = [self._text(doc, docno) for doc, docno in zip(chunk, ids)]
            n += len(chunk)
            batch = encoder.encode_documents_sparse(texts, batch_size=self.batch_size)
            builder.add_batch(ids, batch.indptr, term_ids(batch), batch.weights,
                              texts if self.store_text else None)

    def __repr__(self) -> str:
        return f"LsrIndexer({self.path!r})"


# ------------------------------------------------------------------------------------ reranking
class LsrReranker(pt.Transformer):
    """An lsr reranker (:mod:`lsr.rerank`) as a PyTerrier re-ranking transformer.

    ``reranker``: an :class:`lsr.Reranker`, or a spec :func:`lsr.load_reranker` takes (a preset
    name, YAML file, config). Input: a result frame with ``qid``, ``query``, ``docno`` and
    ``score`` (the first stage's order: score descending, ties by ``rank`` if present, else row
    order), and the documents' text in ``text_field`` (``pt.text.get_text`` adds it), or
    ``docs``: an index built with ``store_text`` (or its path), a corpus file, ``irds:<id>`` or a
    ``{docno: text}`` mapping. Output: the same rows re-scored as
    :meth:`lsr.Reranker.rerank` does at ``depth`` (default the reranker's): each query's top
    ``depth`` by the reranker's scores, the rest below them in first-stage order with their
    first-stage scores shifted under the lowest reranked one; ``rank`` from 0, rows in query
    order then rank order, other columns kept.
    """

    def __init__(self, reranker, text_field: str = "text", *, depth: int | None = None, docs=None) -> None:
        from lsr.rerank import Reranker, load_reranker

        self.reranker = reranker if isinstance(reranker, Reranker) else load_reranker(reranker)
        self.text_field = text_field
        self.depth = self.reranker.config.depth if depth is None else _positive_int("LsrReranker: depth", depth)
        self.docs = docs
        if docs is not None:
            from lsr.rerank import open_docs

            self._source = open_docs(docs)
        else:
            self._source = None

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        from lsr.results import Results

        needed = ["qid", "query", "docno", "score"] + ([self.text_field] if self._source is None else [])
        _check_columns(inp, "LsrReranker", [("results", needed, [])])
        if len(inp) == 0:
            return inp.assign(score=np.zeros(0), rank=np.zeros(0, np.int64)).reset_index(drop=True)
        frame = inp.reset_index(drop=True)
        qids = [str(q) for q in frame["qid"].tolist()]
        docnos = [str(d) for d in frame["docno"].tolist()]
        row_of: dict[tuple[str, str], int] = {}
        for i, key in enumerate(zip(qids, docnos)):
            if key in row_of:
                raise InputError(f"LsrReranker: docno {key[1]!r} is on more than one row of qid {key[0]!r}")
            row_of[key] = i
        queries: dict[str, str] = {}
        for qid, text in zip(qids, frame["query"].tolist()):
            if not isinstance(text, str):
                raise InputError(f"LsrReranker: the query of qid {qid!r} is a {type(text).__name__}, not text")
            if queries.setdefault(qid, text) != text:
                raise InputError(f"LsrReranker: qid {qid!r} has more than one query text in the frame")
        if self._source is not None:
            docs = self._source
        else:
            docs = {}
            for d, text in zip(docnos, frame[self.text_field].tolist()):
                if not isinstance(text, str):
                    raise InputError(f"LsrReranker: {self.text_field} of docno {d!r} is a {type(text).__name__}, "
                                     "not text")
                docs[d] = text
        first = Results.from_pandas(pd.DataFrame({"qid": qids, "docno": docnos, "score": frame["score"].to_numpy(),
                                                  **({"rank": frame["rank"].to_numpy()} if "rank" in frame else {})}))
        out = self.reranker.rerank(queries, first, docs, depth=self.depth)
        rows = np.fromiter((row_of[k] for k in zip(out.query_ids, out.doc_ids)), dtype=np.int64, count=len(out))
        return _result_frame(frame, rows, out.doc_ids, out.scores, out.ranks - 1)

    def __repr__(self) -> str:
        return f"LsrReranker({self.reranker.name!r}, depth={self.depth})"
