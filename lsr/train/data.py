"""Training data for ``lsr train``: groups of (query, positive, negatives), teacher scores, and the
``datasets.Dataset`` that sentence-transformers' sparse losses take.

A :class:`TrainingData` holds query texts by id, a source of document texts by id (a
:class:`lsr.rerank.sources.DocSource`), the groups (:class:`Group`: query id, one positive doc id,
a tuple of negative doc ids), the judgments used to keep positives out of negatives (``qrels``),
and optional teacher scores ``{(qid, docid): score}``.

Sources read by :func:`load_training_data`:

* **an ir_datasets id** (``beir/scifact/train``, ``msmarco-passage/train/triples-small``; an
  ``irds:`` prefix is optional and needed only where a local path has the same name). Queries come
  from the dataset, documents from its ``docs_store()`` (random access by id). Where the dataset has
  *docpairs* (MS MARCO's training triples) each pair ``(query, doc a, doc b)`` is positive ``a`` and
  negative ``b``, and the pairs of one (query, positive) merge into one group, negatives in the
  dataset's order; otherwise (or with ``use_docpairs=False``) each (query, document judged
  relevance > 0) in the qrels is a group with no negatives (mine them: :mod:`lsr.train.mine`, or let
  :func:`to_hf_dataset` pad). A dataset with neither qrels nor docpairs (a documents-only id such as
  ``beir/scifact``) is an :class:`~lsr.errors.InputError` naming the id, what it lacks, and its
  subsets that have qrels; an id ir_datasets does not know is one too.
* **a local BEIR directory** ``DIR[:SPLIT]`` (``corpus.jsonl``, ``queries.jsonl``,
  ``qrels/<split>.tsv``) or flat directory, read by :func:`lsr.eval.load_dataset`: qrels groups as above.
* **TSV text triples** (``*.tsv``, ``*.tsv.gz``, ``*.txt``): ``query<TAB>positive<TAB>negative`` per
  line (MS MARCO's ``triples.train.small.tsv``). There are no ids in the file, so ids are made from
  the texts: ``q<N>`` / ``d<N>`` numbered by first appearance, equal texts sharing one id; lines of
  one (query, positive) merge into one group. Such data cannot be mined with an index
  (``ids_from_text`` is True): its ids are not the index's. A file whose first line is a qrels line
  (the BEIR header, or ``qid docid <integer>``) is refused rather than read as texts.
* **JSONL groups** (``*.jsonl``, ``*.jsonl.gz``), one object a line, in one of two forms:

  - texts: ``{"qid"?: id, "query": text, "positive": text, "negatives": [texts], "scores"?: [...]}``;
    document ids are made from the texts as for TSV triples, the query id is ``qid`` when given;
  - ids: ``{"qid": id, "query"?: text, "positive_id": id, "negative_ids": [ids], "scores"?: [...]}``
    with the documents' texts from ``corpus=`` (an index built with ``--store-text``, a corpus file,
    or ``irds:<id>``) and query texts from ``"query"`` or ``queries=`` (a query file or ``irds:<id>``).
    ``lsr mine`` writes this form (its ``negative_ranks`` / ``negative_scores`` are the mining
    index's, not teacher scores, and are not read).

  ``"scores"`` are teacher scores, the positive's first, then one per negative.

Teacher scores from a file (:func:`load_teacher_scores`): whitespace-separated ``qid docid score``
lines, TREC run lines ``qid Q0 docid rank score tag`` (a reranker's output), or JSONL
``{"qid", "docid", "score"}`` (``.jsonl`` / ``.jsonl.gz``). Nothing is ever unpickled.

:func:`to_hf_dataset` lays the groups out in the columns sentence-transformers' sparse losses
expect: ``query``, ``positive``, ``negative_1`` .. ``negative_n`` (texts) and, for distillation,
``label``: the teacher's ``[s(q, pos), s(q, neg_1), .., s(q, neg_n)]`` (``label="scores"``, what
``SparseDistillKLDivLoss`` takes and ``SparseMarginMSELoss`` also accepts) or the margins
``[s(q, pos) - s(q, neg_i) for i in 1..n]`` (``label="margins"``, ``SparseMarginMSELoss``).
A group with more negatives than asked keeps its first ``n``. A group with fewer is padded
(``short="pad"``, the default) with documents drawn without replacement by a seeded RNG from the
pool of every document id in the data's groups, leaving out the query's judged positives and the
group's own documents (with teacher scores: only documents that have a score for that query), or
dropped (``short="drop"``); a warning counts the groups padded or dropped.
"""

from __future__ import annotations

import math
import os
import random
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from lsr.errors import InputError, LsrError
from lsr.io import check_input_file, open_text, parse_json_object, reading

IRDS_PREFIX = "irds:"
_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")
_TSV_SUFFIXES = (".tsv", ".tsv.gz", ".txt", ".txt.gz")
LABEL_FORMS = ("scores", "margins")
SHORT_POLICIES = ("pad", "drop")


@dataclass(frozen=True)
class Group:
    """One training example: a query id, one positive doc id, and negative doc ids (maybe none)."""

    qid: str
    positive: str
    negatives: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainingData:
    """Queries, a document text source, groups, judgments and optional teacher scores.

    ``queries``: ``{qid: text}``; ``docs``: a :class:`lsr.rerank.sources.DocSource` (``texts(ids)``) or
    anything :func:`lsr.rerank.sources.open_docs` opens (a ``{docid: text}`` mapping, a corpus file, an
    index with stored text, ``irds:<id>``); ``qrels``: ``{qid: {docid: relevance}}``, the judgments that keep
    a query's positives (relevance > 0) out of its negatives; ``scores``: teacher scores
    ``{(qid, docid): score}`` or None; ``ids_from_text``: the ids were made from texts (TSV triples,
    JSONL text groups) and mean nothing to an index.
    """

    name: str
    queries: Mapping[str, str]
    docs: Any
    groups: tuple[Group, ...]
    qrels: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    scores: Mapping[tuple[str, str], float] | None = None
    ids_from_text: bool = False

    def __post_init__(self) -> None:
        from lsr.rerank.sources import DocSource, open_docs

        if not isinstance(self.docs, DocSource):   # a mapping, a corpus file, an index, irds:<id>
            object.__setattr__(self, "docs", open_docs(self.docs))
        object.__setattr__(self, "groups", tuple(self.groups))

    def __len__(self) -> int:
        return len(self.groups)

    def positives(self, qid: str) -> set[str]:
        """Doc ids judged relevant (> 0) for ``qid`` in ``qrels``, and the positives of its groups."""
        by_query = self.__dict__.get("_positives")
        if by_query is None:
            by_query = {}
            for g in self.groups:
                by_query.setdefault(g.qid, set()).add(g.positive)
            object.__setattr__(self, "_positives", by_query)
        return {d for d, r in self.qrels.get(qid, {}).items() if r > 0} | by_query.get(qid, set())

    def with_negatives(self, mined: Mapping[str, Sequence[str]]) -> "TrainingData":
        """A copy whose groups of each query in ``mined`` have ``mined[qid]`` as their negatives
        (replacing the ones they had); groups of other queries are kept as they are."""
        groups = tuple(Group(g.qid, g.positive, tuple(mined[g.qid])) if g.qid in mined else g
                       for g in self.groups)
        return replace(self, groups=groups)

    def with_scores(self, scores: Mapping[tuple[str, str], float] | str | os.PathLike | None) -> "TrainingData":
        """A copy with these teacher scores (a mapping or a file :func:`load_teacher_scores` reads)."""
        if isinstance(scores, (str, os.PathLike)):
            scores = load_teacher_scores(scores)
        return replace(self, scores=None if scores is None else dict(scores))

    def negative_counts(self) -> dict[int, int]:
        """``{number of negatives: number of groups}``."""
        out: dict[int, int] = {}
        for g in self.groups:
            out[len(g.negatives)] = out.get(len(g.negatives), 0) + 1
        return dict(sorted(out.items()))


# --------------------------------------------------------------------------- loading
def load_training_data(source: str | os.PathLike, *, negatives_per_query: int | None = None,
                       corpus: Any = None, queries: Any = None,
                       teacher_scores: Mapping[tuple[str, str], float] | str | os.PathLike | None = None,
                       use_docpairs: bool | None = None, limit: int | None = None) -> TrainingData:
    """:class:`TrainingData` from an ir_datasets id, a local BEIR directory, TSV triples or JSONL groups
    (see the module docstring).

    ``negatives_per_query``: keep at most this many negatives per group (the first ones; None: all).
    ``corpus`` / ``queries``: texts for JSONL groups given by ids. ``teacher_scores``: a mapping or a
    file; it replaces scores given inside JSONL groups. ``use_docpairs``: for an ir_datasets id with
    both, True reads the docpairs, False the qrels (None: docpairs where there are any).
    ``limit``: read at most this many groups' worth of lines or docpairs (None: all).
    """
    if negatives_per_query is not None and (isinstance(negatives_per_query, bool)
                                            or not isinstance(negatives_per_query, int)
                                            or negatives_per_query < 0):
        raise InputError(f"negatives_per_query must be an integer >= 0, got {negatives_per_query!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError(f"limit must be a positive integer, got {limit!r}")
    s = os.fspath(source)
    if not s.strip():
        raise InputError("no training data given: an ir_datasets id, TSV triples or JSONL groups")
    if s.startswith(IRDS_PREFIX):
        data = _load_irds(s[len(IRDS_PREFIX):], use_docpairs, limit)
    elif os.path.isfile(s):
        if s.endswith(_JSONL_SUFFIXES):
            data = _load_jsonl_groups(s, corpus, queries, limit)
        elif s.endswith(_TSV_SUFFIXES):
            data = _load_tsv_triples(s, limit)
        else:
            raise InputError(f"{s}: training data files are TSV triples (.tsv, .tsv.gz, .txt) or JSONL "
                             "groups (.jsonl, .jsonl.gz)")
    elif os.path.isdir(os.path.expanduser(s)) or _is_split_dir(s):
        data = _load_local_dataset(s)
    elif s.startswith((".", "~", os.sep)) or os.path.isabs(s):
        raise InputError(f"training data {s}: no such file or directory")
    else:
        data = _load_irds(s, use_docpairs, limit)
    if negatives_per_query is not None:
        data = replace(data, groups=tuple(Group(g.qid, g.positive, g.negatives[:negatives_per_query])
                                          for g in data.groups))
    if teacher_scores is not None:
        data = data.with_scores(teacher_scores)
    if not data.groups:
        raise InputError(f"{data.name}: no training groups (no query with a positive document)")
    return data


def load_queries_qrels(source: str | os.PathLike) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """``({qid: text}, {qid: {docid: relevance}})`` of an ir_datasets id or a local BEIR directory:
    what mining needs. A dataset without qrels is an :class:`~lsr.errors.InputError`."""
    s = os.fspath(source)
    if s.startswith(IRDS_PREFIX) or not (os.path.isdir(os.path.expanduser(s)) or _is_split_dir(s)):
        name = s[len(IRDS_PREFIX):] if s.startswith(IRDS_PREFIX) else s
        ds, raw = _open_irds(name)
        if not raw.has_qrels():
            raise InputError(f"ir_datasets {name!r} has no qrels to mine negatives for{_subsets_hint(name)}")
        if not raw.has_queries():
            raise InputError(f"ir_datasets {name!r} has no queries")
        return {q.id: q.text for q in ds.queries()}, ds.qrels()
    from lsr.eval.datasets import load_dataset

    ds = load_dataset(s)
    if not ds.has_qrels:
        raise InputError(f"dataset {ds.name} has no qrels to mine negatives for")
    return {q.id: q.text for q in ds.queries()}, ds.qrels()


def _is_split_dir(s: str) -> bool:
    if ":" not in s:
        return False
    d, split = s.rsplit(":", 1)
    return bool(split) and os.sep not in split and os.path.isdir(os.path.expanduser(d))


def _qrels_groups(queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]], name: str) -> tuple:
    groups = []
    missing = [q for q in qrels if q not in queries and any(r > 0 for r in qrels[q].values())]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"{name}: judged query {missing[0]!r} has no text among the queries{more}")
    for qid, judged in qrels.items():
        for did, rel in judged.items():
            if rel > 0:
                groups.append(Group(qid, did))
    return tuple(groups)


def _subsets_hint(name: str) -> str:
    from lsr.eval.datasets import _irds_subsets_with_qrels

    subs = _irds_subsets_with_qrels(name)
    if not subs:
        return ""
    return f"; its subsets with qrels: {', '.join(subs[:6])}{', ...' if len(subs) > 6 else ''}"


def _open_irds(name: str):
    """``(IrdsDataset, raw ir_datasets dataset)`` of ``name``; an unknown id is an InputError naming
    the closest ids."""
    from lsr.eval.datasets import IrdsDataset, load_dataset

    if not name:
        raise InputError("irds: needs a dataset id, e.g. irds:beir/scifact/train")
    load_dataset(IRDS_PREFIX + name)   # the unknown-id error, with the closest ids
    import ir_datasets

    raw = ir_datasets.load(name)
    return IrdsDataset(name, raw), raw


def _irds_error(name: str, what: str, e: BaseException) -> LsrError:
    from lsr.encoders.errors import one_line

    home = os.environ.get("IR_DATASETS_HOME", "~/.ir_datasets")
    return InputError(f"cannot read the {what} of ir_datasets {name!r} ({one_line(e)}); it reads and "
                      f"downloads into IR_DATASETS_HOME={home}")


def _load_irds(name: str, use_docpairs: bool | None, limit: int | None) -> TrainingData:
    from lsr.rerank.sources import IrdsDocs

    ds, raw = _open_irds(name)
    has_qrels, has_pairs = bool(raw.has_qrels()), bool(raw.has_docpairs())
    if not has_qrels and not has_pairs:
        raise InputError(f"ir_datasets {name!r} has no training data: no qrels and no docpairs"
                         f"{_subsets_hint(name)}")
    if use_docpairs and not has_pairs:
        raise InputError(f"ir_datasets {name!r} has no docpairs (it has qrels: use_docpairs=False)")
    if use_docpairs is False and not has_qrels:
        raise InputError(f"ir_datasets {name!r} has no qrels (it has docpairs: use_docpairs=True)")
    if not raw.has_queries():
        raise InputError(f"ir_datasets {name!r} has no queries to train with")
    if not raw.has_docs():
        raise InputError(f"ir_datasets {name!r} has no documents to train with")
    queries = {q.id: q.text for q in ds.queries()}
    qrels = ds.qrels() if has_qrels else {}
    label = f"irds:{name}"
    if has_pairs and use_docpairs is not False:
        merged: dict[tuple[str, str], list[str]] = {}
        try:
            for i, pair in enumerate(raw.docpairs_iter()):
                if limit is not None and i >= limit:
                    break
                qid, a, b = str(pair.query_id), str(pair.doc_id_a), str(pair.doc_id_b)
                merged.setdefault((qid, a), []).append(b)
        except LsrError:
            raise
        except Exception as e:  # noqa: BLE001 - ir_datasets raises many kinds (downloads, caches)
            raise _irds_error(name, "docpairs", e) from None
        missing = [q for q, _ in merged if q not in queries]
        if missing:
            raise InputError(f"{label}: docpair query {missing[0]!r} has no text among the queries")
        if not has_qrels:
            for qid, pos in merged:
                qrels.setdefault(qid, {})[pos] = 1
        groups = _groups_of(merged)
    else:
        groups = _qrels_groups(queries, qrels, label)
        if limit is not None:
            groups = groups[:limit]
    return TrainingData(label, queries, IrdsDocs(name), groups, qrels)


def _load_local_dataset(s: str) -> TrainingData:
    from lsr.eval.datasets import load_dataset
    from lsr.rerank.sources import open_docs

    ds = load_dataset(s)
    if not ds.has_qrels:
        raise InputError(f"dataset {ds.name} has no training data: no qrels")
    if not ds.has_docs or not ds.has_queries:
        raise InputError(f"dataset {ds.name} needs documents and queries besides its qrels")
    queries = {q.id: q.text for q in ds.queries()}
    qrels = ds.qrels()
    return TrainingData(ds.name, queries, open_docs(ds.docs_path), _qrels_groups(queries, qrels, ds.name), qrels)


class _TextIds:
    """Ids made from texts: ``<prefix><N>`` by first appearance, equal texts sharing one id."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.ids: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        i = self.ids.get(text)
        if i is None:
            i = self.ids[text] = f"{self.prefix}{len(self.ids)}"
        return i

    def texts(self) -> dict[str, str]:
        return {i: t for t, i in self.ids.items()}


def _merge(groups: dict[tuple[str, str], list[str]], qid: str, pos: str, negs: Iterable[str]) -> None:
    groups.setdefault((qid, pos), []).extend(negs)


def _groups_of(merged: Mapping[tuple[str, str], list[str]]) -> tuple[Group, ...]:
    return tuple(Group(q, p, tuple(d for d in dict.fromkeys(n) if d != p)) for (q, p), n in merged.items())


def _looks_like_qrels(parts: list[str]) -> bool:
    """A BEIR qrels header, or three single tokens of which the last is an integer."""
    if [x.strip() for x in parts] == ["query-id", "corpus-id", "score"]:
        return True
    return all(x.strip() and len(x.split()) == 1 for x in parts) and parts[2].strip().lstrip("-").isdigit()


def _load_tsv_triples(path: str, limit: int | None) -> TrainingData:
    qids, dids = _TextIds("q"), _TextIds("d")
    merged: dict[tuple[str, str], list[str]] = {}
    n = 0
    with reading(path, "triples file"), open_text(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise InputError(f"{where}: not valid UTF-8") from None
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 3:
                raise InputError(f"{where}: expected 'query<TAB>positive<TAB>negative', found "
                                 f"{len(parts)} field{'s' if len(parts) != 1 else ''}")
            if n == 0 and _looks_like_qrels(parts):
                raise InputError(f"{where}: this looks like a qrels line (qid docid relevance), not a text "
                                 "triple 'query<TAB>positive<TAB>negative'; give the dataset (an ir_datasets "
                                 "id or a BEIR directory DIR:SPLIT) instead")
            if limit is not None and n >= limit:
                break
            n += 1
            q, p, neg = parts
            _merge(merged, qids(q), dids(p), [dids(neg)])
    if not merged:
        raise InputError(f"{path}: no triples")
    qrels: dict[str, dict[str, int]] = {}
    for q, p in merged:
        qrels.setdefault(q, {})[p] = 1
    return TrainingData(path, qids.texts(), dids.texts(), _groups_of(merged), qrels, ids_from_text=True)


def _str_field(rec: dict, key: str, where: str, required: bool = True) -> str | None:
    v = rec.get(key)
    if v is None:
        if required:
            raise InputError(f"{where}: no {key!r}")
        return None
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise InputError(f"{where}: {key!r} must be a string, got {type(v).__name__}")
    return str(v)


def _list_field(rec: dict, key: str, where: str) -> list[str]:
    v = rec.get(key, [])
    if not isinstance(v, list) or any(isinstance(x, bool) or not isinstance(x, (str, int)) for x in v):
        raise InputError(f"{where}: {key!r} must be a list of strings")
    return [str(x) for x in v]


def _score_list(rec: dict, where: str, n: int) -> list[float] | None:
    v = rec.get("scores")
    if v is None:
        return None
    if (not isinstance(v, list) or len(v) != n
            or any(isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) for x in v)):
        raise InputError(f"{where}: \"scores\" must be {n} finite numbers (the positive's, then one per "
                         "negative)")
    return [float(x) for x in v]


def _load_jsonl_groups(path: str, corpus: Any, queries: Any, limit: int | None) -> TrainingData:
    from lsr.rerank.sources import open_docs, query_texts

    qids, dids = _TextIds("q"), _TextIds("d")
    merged: dict[tuple[str, str], list[str]] = {}
    qtext: dict[str, str] = {}
    scores: dict[tuple[str, str], float] = {}
    form: str | None = None
    n = 0
    with reading(path, "groups file"), open_text(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            where = f"{path}:{lineno}"
            if limit is not None and n >= limit:
                break
            n += 1
            rec = parse_json_object(raw, where)
            this = "ids" if "positive_id" in rec else "texts" if "positive" in rec else None
            if this is None:
                raise InputError(f"{where}: a group needs \"positive\" (a text) or \"positive_id\" (a doc id)")
            if form is not None and this != form:
                raise InputError(f"{where}: groups given by {this} after groups given by {form}; use one form")
            form = this
            text = _str_field(rec, "query", where, required=(this == "texts"))
            qid = _str_field(rec, "qid", where, required=(this == "ids"))
            if qid is None:
                qid = qids(text)
            if text is not None:
                if qtext.setdefault(qid, text) != text:
                    raise InputError(f"{where}: query {qid!r} has another text on an earlier line")
            if this == "texts":
                pos = dids(_str_field(rec, "positive", where))
                negs = [dids(t) for t in _list_field(rec, "negatives", where)]
            else:
                pos = _str_field(rec, "positive_id", where)
                negs = _list_field(rec, "negative_ids", where)
            sc = _score_list(rec, where, 1 + len(negs))
            if sc is not None:
                for d, s in zip([pos, *negs], sc):
                    if scores.setdefault((qid, d), s) != s:
                        raise InputError(f"{where}: query {qid!r}, doc {d!r} has another teacher score on an "
                                         "earlier line")
            _merge(merged, qid, pos, negs)
    if not merged:
        raise InputError(f"{path}: no groups")
    if form == "ids":
        if corpus is None:
            raise InputError(f"{path}: groups given by doc ids need the documents' texts (corpus=: an index "
                             "with stored text, a corpus file or irds:<id>)")
        docs = open_docs(corpus)
        if queries is not None:
            for q, t in query_texts(queries).items():
                qtext.setdefault(q, t)
        missing = [q for q, _ in merged if q not in qtext]
        if missing:
            raise InputError(f"{path}: query {missing[0]!r} has no text (give \"query\" in the groups or "
                             "queries=)")
    else:
        docs = dids.texts()
    qrels: dict[str, dict[str, int]] = {}
    for q, p in merged:
        qrels.setdefault(q, {})[p] = 1
    queries_out = {q: qtext[q] for q in dict.fromkeys(q for q, _ in merged)}
    return TrainingData(path, queries_out, docs, _groups_of(merged), qrels, scores or None,
                        ids_from_text=(form == "texts"))


def load_teacher_scores(path: str | os.PathLike) -> dict[tuple[str, str], float]:
    """``{(qid, docid): score}`` from whitespace-separated ``qid docid score`` lines, TREC run lines
    (``qid Q0 docid rank score tag``) or JSONL ``{"qid", "docid", "score"}`` (``.jsonl``,
    ``.jsonl.gz``). A pair scored twice with different scores, a score that is not a finite number,
    or an empty file is an :class:`~lsr.errors.InputError` naming the file (and line)."""
    path = check_input_file(path, "teacher scores file")
    is_json = path.endswith(_JSONL_SUFFIXES)
    out: dict[tuple[str, str], float] = {}
    with reading(path, "teacher scores file"), open_text(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            where = f"{path}:{lineno}"
            if is_json:
                rec = parse_json_object(raw, where)
                qid = _str_field(rec, "qid", where)
                did = _str_field(rec, "docid", where)
                value = rec.get("score")
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise InputError(f"{where}: \"score\" must be a number, got {value!r}")
                score = float(value)
            else:
                try:
                    parts = raw.decode("utf-8").split()
                except UnicodeDecodeError:
                    raise InputError(f"{where}: not valid UTF-8") from None
                if len(parts) == 3:
                    qid, did, value = parts
                elif len(parts) == 6:
                    qid, _, did, _, value, _ = parts
                else:
                    raise InputError(f"{where}: expected 'qid docid score' (3 fields) or a TREC run line "
                                     f"(6 fields), found {len(parts)}")
                try:
                    score = float(value)
                except ValueError:
                    raise InputError(f"{where}: score {value!r} is not a number") from None
            if not math.isfinite(score):
                raise InputError(f"{where}: score {score} is not finite")
            if out.setdefault((qid, did), score) != score:
                raise InputError(f"{where}: query {qid!r}, doc {did!r} is scored twice "
                                 f"({out[(qid, did)]} and {score})")
    if not out:
        raise InputError(f"teacher scores file {path} has no scores")
    return out


# --------------------------------------------------------------------------- to datasets.Dataset
def _pad(data: TrainingData, negatives: int, with_scores: bool, short: str, seed: int) -> tuple[list, int, int]:
    """The rows' ``(group, negative ids)``, the number of groups padded and of groups dropped."""
    pool: list[str] | None = None
    scored: dict[str, list[str]] | None = None
    rows = []
    padded = dropped = 0
    for g in data.groups:
        negs = list(g.negatives[:negatives])
        if len(negs) < negatives:
            if short == "drop":
                dropped += 1
                continue
            exclude = data.positives(g.qid) | {g.positive, *negs}
            if with_scores:
                if scored is None:
                    scored = {}
                    for (q, d) in sorted(data.scores or {}):
                        scored.setdefault(q, []).append(d)
                cands = [d for d in scored.get(g.qid, []) if d not in exclude]
            else:
                if pool is None:
                    pool = sorted({d for h in data.groups for d in (h.positive, *h.negatives)})
                cands = pool
            rng = random.Random(f"{seed}:{g.qid}:{g.positive}")
            need = negatives - len(negs)
            extra = _sample(rng, cands, exclude, need)
            if len(extra) < need:
                dropped += 1
                continue
            negs += extra
            padded += 1
        rows.append((g, negs))
    return rows, padded, dropped


def _sample(rng: random.Random, cands: list[str], exclude: set[str], need: int) -> list[str]:
    """``need`` distinct items of ``cands`` not in ``exclude``, drawn uniformly (fewer if there are not
    that many)."""
    got: list[str] = []
    seen = set(exclude)
    for _ in range(20 * need + 20):   # rejection sampling: cheap when the pool is large
        if len(got) == need:
            return got
        d = cands[rng.randrange(len(cands))] if cands else None
        if d is not None and d not in seen:
            seen.add(d)
            got.append(d)
    rest = [d for d in cands if d not in seen]
    got += rng.sample(rest, min(need - len(got), len(rest)))
    return got


def to_hf_dataset(data: TrainingData, *, negatives: int, with_scores: bool = False, label: str = "scores",
                  short: str = "pad", seed: int = 0):
    """A ``datasets.Dataset`` with columns ``query``, ``positive``, ``negative_1`` .. ``negative_<negatives>``
    (texts), one row per group in the data's order, and with ``with_scores`` a ``label`` column of
    teacher scores (``label="scores"``: ``[s(q, pos), s(q, neg_1), ...]``; ``label="margins"``:
    ``[s(q, pos) - s(q, neg_i)]``). Groups short of negatives are padded or dropped (``short``, see the
    module docstring); a warning counts them. A missing teacher score is an
    :class:`~lsr.errors.InputError` naming the pair."""
    import datasets

    if isinstance(negatives, bool) or not isinstance(negatives, int) or negatives < 0:
        raise InputError(f"negatives must be an integer >= 0, got {negatives!r}")
    if label not in LABEL_FORMS:
        raise InputError(f"label must be one of {', '.join(LABEL_FORMS)}, got {label!r}")
    if short not in SHORT_POLICIES:
        raise InputError(f"short must be one of {', '.join(SHORT_POLICIES)}, got {short!r}")
    if with_scores:
        if data.scores is None:
            raise InputError(f"{data.name}: no teacher scores (give a scores file)")
        if negatives < 1:
            raise InputError("distillation labels need at least one negative per query")
    rows, padded, dropped = _pad(data, negatives, with_scores, short, seed)
    total = len(data.groups)
    if padded:
        warnings.warn(f"{padded} of {total} groups had fewer than {negatives} negatives: padded with documents "
                      f"drawn from the other groups{' that have teacher scores' if with_scores else ''} "
                      f"(seed {seed})")
    if dropped:
        why = "had fewer than" if short == "drop" else "could not be padded to"
        warnings.warn(f"{dropped} of {total} groups {why} {negatives} negatives and were dropped")
    if not rows:
        raise InputError(f"{data.name}: no group has {negatives} negatives")
    ids = sorted({d for g, negs in rows for d in (g.positive, *negs)})
    texts = data.docs.texts(ids)
    missing_q = [g.qid for g, _ in rows if g.qid not in data.queries]
    if missing_q:
        raise InputError(f"{data.name}: query {missing_q[0]!r} has no text")
    cols: dict[str, list] = {"query": [data.queries[g.qid] for g, _ in rows],
                             "positive": [texts[g.positive] for g, _ in rows]}
    for i in range(negatives):
        cols[f"negative_{i + 1}"] = [texts[negs[i]] for _, negs in rows]
    if with_scores:
        sc = data.scores
        missing = [(g.qid, d) for g, negs in rows for d in (g.positive, *negs) if (g.qid, d) not in sc]
        if missing:
            more = f" (and {len(missing) - 1} more pairs)" if len(missing) > 1 else ""
            raise InputError(f"{data.name}: no teacher score for query {missing[0][0]!r}, doc "
                             f"{missing[0][1]!r}{more}")
        labels = []
        for g, negs in rows:
            s_pos = float(sc[(g.qid, g.positive)])
            s_negs = [float(sc[(g.qid, d)]) for d in negs]
            labels.append([s_pos, *s_negs] if label == "scores" else [s_pos - s for s in s_negs])
        cols["label"] = labels
    return datasets.Dataset.from_dict(cols)


__all__ = ["Group", "TrainingData", "load_training_data", "load_queries_qrels", "load_teacher_scores",
           "to_hf_dataset", "LABEL_FORMS", "SHORT_POLICIES"]
