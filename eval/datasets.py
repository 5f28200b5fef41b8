"""Datasets for evaluation: documents, queries and qrels from one spec.

:func:`load_dataset` takes

* an ``ir_datasets`` id (``msmarco-passage/dev/small``,
  ``msmarco-passage/trec-dl-2019/judged``, ``beir/scifact/test``, ...), with
  an optional ``irds:`` prefix (needed only when a local path of that
  name exists: local paths are looked up first). ``beir/<name>`` without a split, where
  ir_datasets has qrels only for its splits, means ``beir/<name>/test``.
  ir_datasets downloads into ``$IR_DATASETS_HOME`` as usual;
* a local directory, optionally ``DIR:SPLIT``: the BEIR layout
  (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``; the split
  defaults to ``test``, or to the only qrels file) or a flat one
  (``collection.tsv``/``corpus.tsv``/``corpus.jsonl``, ``queries.tsv``/
  ``queries.jsonl``, ``qrels.txt``/``qrels.tsv``/``qrels``);
* a single qrels file (TREC ``qid iter docid rel`` or BEIR TSV
  ``query-id corpus-id score`` with or without its header).

:meth:`Dataset.from_files` builds one from separate files. Every dataset
gives ``docs_iter()`` -> ``(doc_id, text)`` where ``text`` is
``title + " " + body`` when the document has a non-empty title (BEIR's and
ir_datasets' ``default_text`` convention) and the body alone otherwise;
``queries()`` -> a list of :class:`lsr.io.Query` (text queries);
``qrels()`` -> ``{query_id: {doc_id: relevance}}``; and
``default_metrics()`` -> the field's usual measures for that dataset family.

``ir_datasets`` is imported lazily, on the first use of an ir_datasets id,
and it reads ``IR_DATASETS_HOME`` when it is imported.
"""

from __future__ import annotations

import difflib
import json
import os
from typing import Iterator

from lsr.errors import InputError, LsrError
from lsr.io import Query, check_input_file, open_text, read_queries, reading

# Default measures per dataset family (ir-measures names).
DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "msmarco-dev": ("RR@10", "R@1000"),
    "trec-dl": ("nDCG@10", "R(rel=2)@1000"),
    "beir": ("nDCG@10", "R@100"),
    "generic": ("nDCG@10", "RR@10", "R@1000"),
}

_DOC_FILES = ("corpus.jsonl", "corpus.jsonl.gz", "docs.jsonl", "docs.jsonl.gz", "collection.tsv",
              "collection.tsv.gz", "corpus.tsv", "corpus.tsv.gz", "docs.tsv", "docs.tsv.gz")
_QUERY_FILES = ("queries.jsonl", "queries.jsonl.gz", "queries.tsv", "queries.tsv.gz", "topics.tsv")
_QREL_FILES = ("qrels.txt", "qrels.tsv", "qrels", "qrels.txt.gz", "qrels.tsv.gz")


def dataset_family(name: str) -> str:
    """``msmarco-dev``, ``trec-dl``, ``beir`` or ``generic`` for a dataset id."""
    n = name.lower()
    if n.startswith("irds:"):
        n = n[5:]
    if n.startswith("msmarco-passage") and "trec-dl" in n:
        return "trec-dl"
    if n.startswith(("msmarco-passage", "msmarco-document")) and "/dev" in n:
        return "msmarco-dev"
    if n.startswith("beir/"):
        return "beir"
    return "generic"


class Dataset:
    """Documents, queries and qrels of one evaluation dataset.

    Subclasses implement ``_docs``, ``_queries`` and ``_qrels``; queries and
    qrels are loaded once and cached.
    """

    def __init__(self, name: str, family: str = "generic") -> None:
        self.name = name
        self.family = family
        self._queries_cache: list[Query] | None = None
        self._qrels_cache: dict[str, dict[str, int]] | None = None

    # -- what a dataset has ---------------------------------------------------
    has_docs = False
    has_queries = False
    has_qrels = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def docs_iter(self) -> Iterator[tuple[str, str]]:
        """``(doc_id, text)`` pairs in collection order."""
        if not self.has_docs:
            raise InputError(f"dataset {self.name} has no documents")
        return self._docs()

    def queries(self) -> list[Query]:
        """Text queries (:class:`lsr.io.Query` with ``text`` set)."""
        if not self.has_queries:
            raise InputError(f"dataset {self.name} has no queries")
        if self._queries_cache is None:
            self._queries_cache = self._queries()
        return list(self._queries_cache)

    def qrels(self) -> dict[str, dict[str, int]]:
        """``{query_id: {doc_id: relevance}}``."""
        if not self.has_qrels:
            raise InputError(f"dataset {self.name} has no relevance judgments (qrels)")
        if self._qrels_cache is None:
            q = self._qrels()
            if not q:
                raise InputError(f"dataset {self.name}: the qrels are empty")
            self._qrels_cache = q
        return self._qrels_cache

    def default_metrics(self) -> list[str]:
        return list(DEFAULT_METRICS.get(self.family, DEFAULT_METRICS["generic"]))

    # -- construction from files ---------------------------------------------
    @classmethod
    def from_files(cls, docs: str | os.PathLike | None = None, queries: str | os.PathLike | None = None,
                   qrels: str | os.PathLike | None = None, name: str | None = None,
                   family: str = "generic") -> "LocalDataset":
        """A dataset from separate files (any may be None).

        ``docs``: JSONL (``_id``/``id``/``docid``, optional ``title``,
        ``text``/``contents``) or TSV (``id<TAB>text`` or
        ``id<TAB>title<TAB>text``), optionally gzipped. ``queries``: what
        :func:`lsr.io.read_queries` reads, as text. ``qrels``: TREC or BEIR TSV.
        """
        for label, p in (("documents", docs), ("queries", queries), ("qrels", qrels)):
            if p is not None:
                check_input_file(p, f"{label} file")
        if family not in DEFAULT_METRICS:
            raise InputError(f"unknown dataset family {family!r} (known: {', '.join(DEFAULT_METRICS)})")
        nm = name or os.fspath(qrels or queries or docs or "dataset")
        return LocalDataset(nm, docs=docs, queries=queries, qrels=qrels, family=family)

    # -- to implement -----------------------------------------------------------
    def _docs(self) -> Iterator[tuple[str, str]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _queries(self) -> list[Query]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _qrels(self) -> dict[str, dict[str, int]]:  # pragma: no cover - abstract
        raise NotImplementedError


# --------------------------------------------------------------------------- local files
def read_qrels(path: str | os.PathLike) -> dict[str, dict[str, int]]:
    """Read a qrels file: TREC (``qid iter docid rel``) or BEIR TSV (``qid docid rel``).

    A BEIR header line (``query-id corpus-id score``) is skipped. Relevance
    must be an integer; a (query, doc) pair judged twice with different
    grades is an error.
    """
    path = check_input_file(path, "qrels file")
    out: dict[str, dict[str, int]] = {}
    with reading(path, "qrels file"), open_text(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                parts = raw.decode("utf-8").split()
            except UnicodeDecodeError:
                raise InputError(f"{where}: not valid UTF-8") from None
            if not parts:
                continue
            if len(parts) == 4:
                qid, _, did, rel = parts
            elif len(parts) == 3:
                qid, did, rel = parts
            else:
                raise InputError(f"{where}: a qrels line has 4 fields (qid iter docid rel) "
                                 f"or 3 (qid docid rel), found {len(parts)}")
            try:
                r = int(rel)
            except ValueError:
                try:
                    fr = float(rel)
                except ValueError:
                    fr = None
                if fr is not None and fr.is_integer():
                    r = int(fr)
                elif lineno == 1 and len(parts) == 3:
                    continue  # BEIR header: query-id corpus-id score
                else:
                    raise InputError(f"{where}: relevance {rel!r} is not an integer") from None
            judged = out.setdefault(qid, {})
            if did in judged and judged[did] != r:
                raise InputError(f"{where}: document {did!r} is judged twice for query {qid!r} "
                                 f"({judged[did]} and {r})")
            judged[did] = r
    if not out:
        raise InputError(f"qrels file {path} has no judgments")
    return out


def _read_docs(path: str) -> Iterator[tuple[str, str]]:
    is_json = path.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz"))
    with reading(path, "documents file"), open_text(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(f"{where}: not valid UTF-8") from None
            if is_json:
                try:
                    rec = json.loads(line)
                except ValueError as e:
                    raise InputError(f"{where}: malformed JSON ({e})") from None
                if not isinstance(rec, dict):
                    raise InputError(f"{where}: expected a JSON object per line")
                did = next((rec[k] for k in ("_id", "id", "docid", "doc_id") if k in rec), None)
                if did is None:
                    raise InputError(f"{where}: record has no \"_id\"/\"id\"")
                body = rec.get("text", rec.get("contents", ""))
                title = rec.get("title") or ""
                if not isinstance(body, str) or not isinstance(title, str):
                    raise InputError(f"{where}: \"title\" and \"text\" must be strings")
            else:
                parts = line.rstrip("\r\n").split("\t")
                if len(parts) == 2:
                    did, body = parts
                    title = ""
                elif len(parts) == 3:
                    did, title, body = parts
                else:
                    raise InputError(f"{where}: expected 'id<TAB>text' or 'id<TAB>title<TAB>text'")
            did = str(did)
            if not did or any(ch.isspace() for ch in did):
                raise InputError(f"{where}: document id {did!r} is empty or contains whitespace")
            yield did, _join_title(title, body)


def _join_title(title: str | None, body: str | None) -> str:
    title = (title or "").strip()
    body = body or ""
    return f"{title} {body}" if title else body


def _first(directory: str, names: tuple[str, ...]) -> str | None:
    for n in names:
        p = os.path.join(directory, n)
        if os.path.isfile(p):
            return p
    return None


class LocalDataset(Dataset):
    """A dataset from local files (see :meth:`Dataset.from_files` and :func:`load_dataset`)."""

    def __init__(self, name: str, docs=None, queries=None, qrels=None, family: str = "generic",
                 restrict_queries_to_qrels: bool = False) -> None:
        super().__init__(name, family)
        self.docs_path = os.fspath(docs) if docs is not None else None
        self.queries_path = os.fspath(queries) if queries is not None else None
        self.qrels_path = os.fspath(qrels) if qrels is not None else None
        self.has_docs = self.docs_path is not None
        self.has_queries = self.queries_path is not None
        self.has_qrels = self.qrels_path is not None
        self._restrict = restrict_queries_to_qrels and self.has_qrels

    def _docs(self):
        return _read_docs(self.docs_path)

    def _queries(self):
        qs = read_queries(self.queries_path, fmt="text")
        if self._restrict:
            judged = self.qrels()
            qs = [q for q in qs if q.id in judged]
        return qs

    def _qrels(self):
        return read_qrels(self.qrels_path)

    @classmethod
    def from_directory(cls, directory: str, split: str | None = None) -> "LocalDataset":
        """A BEIR-layout or flat directory (see the module docstring)."""
        directory = os.fspath(directory)
        docs = _first(directory, _DOC_FILES)
        queries = _first(directory, _QUERY_FILES)
        qrels_dir = os.path.join(directory, "qrels")
        beir = os.path.isdir(qrels_dir)
        name = directory if split is None else f"{directory}:{split}"
        if beir:
            splits = sorted(f[:-4] for f in os.listdir(qrels_dir) if f.endswith(".tsv"))
            if split is None:
                if "test" in splits:
                    split = "test"
                elif len(splits) == 1:
                    split = splits[0]
                else:
                    raise InputError(f"{directory}: choose a split with {directory}:SPLIT "
                                     f"(qrels for: {', '.join(splits) or 'none'})")
            qrels = os.path.join(qrels_dir, f"{split}.tsv")
            if not os.path.isfile(qrels):
                raise InputError(f"{directory}: no qrels for split {split!r} "
                                 f"(qrels/ has: {', '.join(splits) or 'nothing'})")
            family = "beir"
        else:
            if split is not None:
                raise InputError(f"{directory}: a split ({split!r}) needs the BEIR layout "
                                 "with a qrels/ directory")
            qrels = _first(directory, _QREL_FILES)
            family = "generic"
        if docs is None and queries is None and qrels is None:
            raise InputError(f"{directory}: no corpus, queries or qrels files found (expected the "
                             "BEIR layout corpus.jsonl, queries.jsonl, qrels/<split>.tsv, or "
                             "collection.tsv, queries.tsv, qrels.txt)")
        return cls(name, docs=docs, queries=queries, qrels=qrels, family=family,
                   restrict_queries_to_qrels=beir)


# --------------------------------------------------------------------------- ir_datasets
def _import_irds():
    try:
        import ir_datasets
    except ImportError:
        raise LsrError("ir_datasets is not installed: pip install 'lsr[eval]' "
                       "(or pip install ir_datasets)") from None
    return ir_datasets


def _irds_fail(what: str, name: str, e: BaseException) -> LsrError:
    home = os.environ.get("IR_DATASETS_HOME", "~/.ir_datasets")
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return InputError(f"cannot load the {what} of {name} through ir_datasets "
                      f"({type(e).__name__}{': ' + msg if msg else ''}); it reads and downloads "
                      f"into IR_DATASETS_HOME={home}")


class IrdsDataset(Dataset):
    """A dataset served by ``ir_datasets`` (documents, queries and qrels may come from different ids)."""

    def __init__(self, name: str, dataset, eval_dataset=None, eval_name: str | None = None) -> None:
        super().__init__(eval_name or name, dataset_family(eval_name or name))
        self.irds_id = name
        self._ds = dataset
        self._eval = eval_dataset if eval_dataset is not None else dataset
        self.has_docs = bool(dataset.has_docs())
        self.has_queries = bool(self._eval.has_queries())
        self.has_qrels = bool(self._eval.has_qrels())

    def _docs(self):
        try:
            it = self._ds.docs_iter()
        except Exception as e:  # noqa: BLE001 - ir_datasets raises many kinds
            raise _irds_fail("documents", self.name, e) from None
        return self._iter_docs(it)

    def _iter_docs(self, it):
        try:
            for doc in it:
                yield str(doc.doc_id), _doc_text(doc)
        except LsrError:
            raise
        except Exception as e:  # noqa: BLE001
            raise _irds_fail("documents", self.name, e) from None

    def _queries(self):
        try:
            return [Query(str(q.query_id), text=_query_text(q)) for q in self._eval.queries_iter()]
        except Exception as e:  # noqa: BLE001
            raise _irds_fail("queries", self.name, e) from None

    def _qrels(self):
        out: dict[str, dict[str, int]] = {}
        try:
            for qr in self._eval.qrels_iter():
                out.setdefault(str(qr.query_id), {})[str(qr.doc_id)] = int(qr.relevance)
        except Exception as e:  # noqa: BLE001
            raise _irds_fail("qrels", self.name, e) from None
        return out

    def docs_count(self) -> int | None:
        try:
            return self._ds.docs_count()
        except Exception:  # noqa: BLE001
            return None


def _doc_text(doc) -> str:
    if hasattr(doc, "text"):
        return _join_title(getattr(doc, "title", None), doc.text)
    if hasattr(doc, "body"):
        return _join_title(getattr(doc, "title", None), doc.body)
    if hasattr(doc, "default_text"):
        return doc.default_text()
    return " ".join(str(v) for v in doc[1:] if isinstance(v, str))


def _query_text(q) -> str:
    for attr in ("text", "title", "query"):
        v = getattr(q, attr, None)
        if isinstance(v, str):
            return v
    if hasattr(q, "default_text"):
        return q.default_text()
    return " ".join(str(v) for v in q[1:] if isinstance(v, str))


class _UnknownDataset(InputError):
    pass


def _load_irds(spec: str) -> IrdsDataset:
    irds = _import_irds()
    try:
        ds = irds.load(spec)
    except KeyError:
        close = difflib.get_close_matches(spec, list(irds.registry), n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise _UnknownDataset(f"unknown dataset {spec!r}: not an ir_datasets id{hint} "
                         "and no such file or directory") from None
    except Exception as e:  # noqa: BLE001
        raise _irds_fail("definition", spec, e) from None
    eval_ds, eval_name = ds, spec
    if not ds.has_qrels() and spec.startswith("beir/"):
        try:
            eval_ds, eval_name = irds.load(spec + "/test"), spec + "/test"
        except KeyError:
            pass
    return IrdsDataset(spec, ds, eval_ds, eval_name)


def _irds_subsets_with_qrels(spec: str) -> list[str]:
    irds = _import_irds()
    out = []
    for name in irds.registry:
        if name.startswith(spec + "/"):
            try:
                if irds.load(name).has_qrels():
                    out.append(name)
            except Exception:  # noqa: BLE001
                continue
    return out


def _looks_like_path(spec: str) -> bool:
    return (spec.startswith((".", "~", os.sep)) or os.path.isabs(spec)
            or (os.altsep is not None and spec.startswith(os.altsep)))


def load_dataset(spec: "str | os.PathLike | Dataset") -> Dataset:
    """A :class:`Dataset` from an ir_datasets id, a local directory or a qrels file.

    Resolution order: a :class:`Dataset` is returned as it is; ``irds:ID``
    is an ir_datasets id; a spec that starts with ``/``, ``.`` or ``~``, or
    names an existing file or directory (``DIR:SPLIT`` for a BEIR
    directory's split), is local; anything else is an ir_datasets id, and an
    id ir_datasets does not know is an :class:`~lsr.errors.InputError`
    naming the closest ones. ir_datasets is imported only for ids.
    """
    if isinstance(spec, Dataset):
        return spec
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        raise InputError("no dataset given: an ir_datasets id (e.g. msmarco-passage/dev/small), "
                         "a BEIR directory or a qrels file")
    s = os.fspath(spec)
    if s.startswith("irds:"):
        return _load_irds(s[5:])
    if _looks_like_path(s) or os.path.exists(os.path.expanduser(s)) or _split_dir(s) is not None:
        return _load_path(s)
    return _load_irds(s)


def _split_dir(s: str) -> tuple[str, str] | None:
    if ":" in s:
        d, split = s.rsplit(":", 1)
        if split and os.sep not in split and os.path.isdir(os.path.expanduser(d)):
            return os.path.expanduser(d), split
    return None


def _load_path(s: str) -> Dataset:
    p = os.path.expanduser(s)
    if os.path.isdir(p):
        return LocalDataset.from_directory(p)
    if os.path.isfile(p):
        return LocalDataset(p, qrels=p, family="generic")
    sd = _split_dir(s)
    if sd is not None:
        return LocalDataset.from_directory(*sd)
    raise InputError(f"dataset {s}: no such file or directory")


def require_qrels(ds: Dataset) -> dict[str, dict[str, int]]:
    """The qrels of ``ds``, or an error that names subsets that have qrels."""
    if not ds.has_qrels:
        hint = ""
        if isinstance(ds, IrdsDataset):
            subs = _irds_subsets_with_qrels(ds.irds_id)
            if subs:
                shown = ", ".join(subs[:6]) + (", ..." if len(subs) > 6 else "")
                hint = f"; its subsets with qrels: {shown}"
        raise InputError(f"dataset {ds.name} has no relevance judgments (qrels){hint}")
    return ds.qrels()
