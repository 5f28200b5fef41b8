"""The reranker contract, the shared reranker settings and the registry.

A reranker re-scores the candidates of a first stage::

    reranker.rerank(queries, results, docs) -> Results

``queries`` maps query id to text (or is a query source, see
:func:`lsr.rerank.sources.read_query_texts`), ``results`` is the first stage's
:class:`~lsr.results.Results`, ``docs`` a document text source
(:func:`lsr.rerank.sources.open_docs`: an index with stored text, a JSONL/TSV
corpus, ``irds:<id>``, or a mapping). For each query the top ``depth``
candidates are re-scored and re-ranked (score descending, ties in first-stage
order); the candidates below ``depth`` are kept below them in first-stage order
with their first-stage scores shifted to lie under the lowest reranked score
(as PyTerrier's concatenation ``^`` does), so the output's scores never increase
with the rank. Query and doc ids are kept as they are.

A reranker implements :meth:`Reranker.score` (one query, its candidate texts,
in the order given, returning one float per candidate) and may override
:meth:`Reranker.score_many` to batch across queries. Scores depend only on the
query and its candidates, never on how they are batched.

Adding a reranker is one module defining a :class:`Reranker` subclass with its
:class:`RerankerConfig` subclass, plus one line in :data:`RERANKERS`.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from lsr.config import _Config, read_yaml_mapping
from lsr.errors import InputError, LsrError
from lsr.results import Results

#: reranker name -> "module:Class" (imported when first used, so that the base install does not need torch)
RERANKERS: dict[str, str] = {
    "maxsim": "lsr.rerank.maxsim:MaxSimReranker",
    "icr": "lsr.rerank.icr:ICRReranker",
    "sft": "lsr.rerank.sft:SFTReranker",
}

DTYPES = ("float32", "bfloat16", "float16")

#: the gap put between the lowest reranked score and the highest kept (not reranked) candidate
TAIL_GAP = 1.0


@dataclass(frozen=True)
class RerankerConfig(_Config):
    """Settings every reranker has.

    ``model``: a local checkpoint directory or a Hugging Face hub id;
    ``revision``: the hub branch, tag or commit; ``depth``: how many of each
    query's first-stage candidates are re-scored (the rest keep their order
    below them); ``batch_size``: sequences per forward pass (it changes speed,
    never scores); ``device``: a torch device (``cpu``, ``cuda``, ``cuda:1``);
    ``dtype``: ``float32``, ``bfloat16`` or ``float16``.
    """

    model: str = ""
    revision: str | None = None
    depth: int = 100
    batch_size: int = 8
    device: str = "cpu"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        name = type(self).__name__
        if not isinstance(self.model, str) or not self.model:
            raise InputError(f"{name}: model must name a local checkpoint directory or a hub id")
        if not isinstance(self.depth, int) or isinstance(self.depth, bool) or self.depth < 1:
            raise InputError(f"{name}: depth must be a positive integer, got {self.depth!r}")
        if not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise InputError(f"{name}: batch_size must be a positive integer, got {self.batch_size!r}")
        if self.dtype not in DTYPES:
            raise InputError(f"{name}: dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not isinstance(self.device, str) or not self.device:
            raise InputError(f"{name}: device must be a torch device name such as 'cpu' or 'cuda'")

    def replace(self, **changes: Any):
        """A copy with ``changes`` (validated like the original)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise InputError(f"{type(self).__name__}: unknown setting(s) {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(names))})")
        return dataclasses.replace(self, **changes)


class Reranker(ABC):
    """Base class of the rerankers: :meth:`rerank` over :meth:`score`.

    Subclasses set ``name`` (the registry name) and ``config_class``, take
    their config in ``__init__`` and implement :meth:`score`. ``stats`` is a
    dict of counters (forward passes, tokens processed, ...) that a reranker
    updates while scoring; :meth:`reset_stats` zeroes it.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[RerankerConfig]] = RerankerConfig

    def __init__(self, config: RerankerConfig) -> None:
        self.config = config
        self.stats: dict[str, int] = {}

    # ---------------------------------------------------------------- to implement
    @abstractmethod
    def score(self, query: str, docs: Sequence[str]) -> np.ndarray:
        """Scores (float64, one per document, in the order given) of one query's candidates."""

    def score_many(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[np.ndarray]:
        """:meth:`score` of several queries; override to batch across them."""
        return [self.score(q, d) for q, d in items]

    # ---------------------------------------------------------------- the contract
    def reset_stats(self) -> None:
        self.stats = {k: 0 for k in self.stats}

    def describe(self) -> dict:
        """What identifies this reranker in run metadata: its name and settings."""
        return {"reranker": self.name, **self.config.to_dict()}

    def rerank(self, queries, results: Results, docs, depth: int | None = None, *,
               progress: bool = False) -> Results:
        """Re-score the top ``depth`` (default ``config.depth``) candidates of every query.

        ``queries``: ``{qid: text}``, a sequence of ``(qid, text)`` or of
        :class:`~lsr.io.Query`, or a query source (path or ``irds:<id>``).
        ``docs``: anything :func:`~lsr.rerank.sources.open_docs` takes.
        :class:`~lsr.errors.InputError` for an empty run, a query id of the run
        that ``queries`` lacks, or a doc id that ``docs`` lacks (naming it).
        """
        from .sources import open_docs, query_texts

        depth = self.config.depth if depth is None else depth
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise InputError(f"depth must be a positive integer, got {depth!r}")
        if len(results) == 0:
            raise InputError("the run to rerank is empty (no hits)")
        qtexts = query_texts(queries)
        if docs is None:
            raise InputError("give the documents' text (docs: an index with stored text, a corpus file, "
                             "irds:<id> or a mapping)")
        source = open_docs(docs)
        groups = _groups(results)
        for qid, _, _ in groups:
            if qid not in qtexts:
                raise InputError(f"query id {qid!r} of the run is not among the queries")
        needed = list(dict.fromkeys(results.doc_ids[i] for _, s, e in groups
                                    for i in range(s, min(e, s + depth))))
        texts = source.texts(needed)
        out_q: list[str] = []
        out_d: list[str] = []
        out_s: list[np.ndarray] = []
        from lsr.progress import Progress

        with Progress("lsr rerank", total=len(groups), unit="queries", enabled=progress) as bar:
            step = max(1, self.config.batch_size)
            for g0 in range(0, len(groups), step):
                chunk = groups[g0:g0 + step]
                items = [(qtexts[qid], [texts[results.doc_ids[i]] for i in range(s, min(e, s + depth))])
                         for qid, s, e in chunk]
                scored = self.score_many(items)
                for (qid, s, e), new in zip(chunk, scored):
                    new = np.asarray(new, dtype=np.float64)
                    head = min(e, s + depth)
                    if new.shape != (head - s,):
                        raise LsrError(f"reranker {self.name!r} returned {new.shape} scores for "
                                       f"{head - s} candidates of query {qid!r}")
                    if not np.all(np.isfinite(new)):
                        raise LsrError(f"reranker {self.name!r} gave a non-finite score for query {qid!r}")
                    order = np.argsort(-new, kind="stable")       # ties keep the first-stage order
                    ids = [results.doc_ids[s + int(j)] for j in order]
                    scores = new[order]
                    if head < e:
                        tail = results.scores[head:e].astype(np.float64)
                        tail = tail - tail.max() + scores[-1] - TAIL_GAP
                        ids += results.doc_ids[head:e]
                        scores = np.concatenate([scores, tail])
                    out_q += [qid] * len(ids)
                    out_d += ids
                    out_s.append(scores)
                bar.update(len(chunk))
        scores = np.concatenate(out_s)
        ranks = np.concatenate([np.arange(1, e - s + 1) for _, s, e in groups]).astype(np.int64)
        return Results(out_q, out_d, scores, ranks)

    def as_transformer(self, text_field: str = "text", **kwargs: Any):
        """A PyTerrier re-ranking transformer (:class:`lsr.pyterrier.LsrReranker`) over this reranker."""
        from lsr.pyterrier import LsrReranker

        return LsrReranker(self, text_field, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


def _groups(results: Results) -> list[tuple[str, int, int]]:
    """(qid, start, end) of each query's contiguous hits, in rank order; a query whose hits are not
    contiguous or not in rank order is an InputError."""
    out: list[tuple[str, int, int]] = []
    seen: set[str] = set()
    qids = results.query_ids
    n = len(qids)
    s = 0
    while s < n:
        qid = qids[s]
        e = s + 1
        while e < n and qids[e] == qid:
            e += 1
        if qid in seen:
            raise InputError(f"the hits of query {qid!r} are not contiguous in the run")
        seen.add(qid)
        if np.any(np.diff(results.ranks[s:e]) <= 0):
            raise InputError(f"the hits of query {qid!r} are not in rank order")
        out.append((qid, s, e))
        s = e
    return out


# ------------------------------------------------------------------------- registry
def available_rerankers() -> list[str]:
    return sorted(RERANKERS)


def reranker_class(name: str) -> type[Reranker]:
    """The :class:`Reranker` subclass registered as ``name``."""
    target = RERANKERS.get(name)
    if target is None:
        raise InputError(f"unknown reranker {name!r} (known: {', '.join(available_rerankers())})")
    module, _, attr = target.partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name in ("torch", "transformers"):
            raise LsrError(f"the {name} reranker needs torch and transformers: "
                           "pip install 'lsr[rerank]'") from None
        raise
    return getattr(mod, attr)


def register_reranker(name: str, target: str | type[Reranker], *, overwrite: bool = False) -> None:
    """Register a reranker class (or its ``"module:Class"`` path) under ``name``."""
    if not isinstance(name, str) or not name or any(ch.isspace() for ch in name):
        raise InputError(f"reranker name must be a non-empty word, got {name!r}")
    if name in RERANKERS and not overwrite:
        raise InputError(f"reranker {name!r} is already registered")
    if isinstance(target, type):
        target = f"{target.__module__}:{target.__qualname__}"
    RERANKERS[name] = target


def _preset_path(spec: str):
    from lsr import configs

    p = configs.path("rerankers", f"{spec}.yaml")
    return p if p.is_file() else None


def available_presets() -> list[str]:
    from lsr import configs

    d = configs.path("rerankers")
    return sorted(p.name[:-5] for p in d.iterdir() if p.name.endswith(".yaml")) if d.is_dir() else []


def reranker_config(spec: str | os.PathLike | Mapping[str, Any] | RerankerConfig,
                    reranker: str | None = None, **overrides: Any) -> tuple[str, RerankerConfig]:
    """``(name, config)`` from a config object, a mapping, a YAML file or a shipped preset name.

    A mapping or YAML file names the reranker under ``reranker:`` (or ``reranker`` is given) and
    holds its settings beside it. ``overrides`` replace settings (``None`` values are ignored).
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if isinstance(spec, RerankerConfig):
        name = reranker or _name_of_config(spec)
        cfg = spec
        return name, (cfg.replace(**overrides) if overrides else cfg)
    if isinstance(spec, Mapping):
        data = dict(spec)
        where = "reranker config"
    else:
        s = os.fspath(spec)
        preset = _preset_path(s) if not os.path.exists(s) else None
        if preset is not None:
            import yaml

            data = yaml.safe_load(preset.read_text(encoding="utf-8")) or {}
            where = f"preset {s}"
        elif s.endswith((".yaml", ".yml")) or os.path.isfile(s):
            data = read_yaml_mapping(s, "reranker config")
            where = s
        else:
            raise InputError(f"{s!r} is neither a reranker config file nor a preset "
                             f"(presets: {', '.join(available_presets()) or 'none'})")
    name = data.pop("reranker", None) or reranker
    if reranker is not None and name != reranker:
        raise InputError(f"{where} configures the {name!r} reranker, not {reranker!r}")
    if name is None:
        raise InputError(f"{where}: name the reranker with 'reranker: "
                         f"{{{','.join(available_rerankers())}}}'")
    cls = reranker_class(name)
    data.update(overrides)
    return name, cls.config_class.from_dict(data)


def _name_of_config(cfg: RerankerConfig) -> str:
    for name in RERANKERS:
        if reranker_class(name).config_class is type(cfg):
            return name
    raise InputError(f"no registered reranker takes a {type(cfg).__name__}")


def load_reranker(spec, reranker: str | None = None, **overrides: Any) -> Reranker:
    """A ready :class:`Reranker` from what :func:`reranker_config` takes."""
    name, cfg = reranker_config(spec, reranker, **overrides)
    return reranker_class(name)(cfg)


def torch_dtype(name: str):
    """The torch dtype of a :attr:`RerankerConfig.dtype` name."""
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def dtype_kwargs(name: str) -> dict:
    """``from_pretrained``'s dtype argument for a :attr:`RerankerConfig.dtype` name (``dtype`` from
    transformers 4.56 on, ``torch_dtype`` before)."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {("dtype" if (major, minor) >= (4, 56) else "torch_dtype"): torch_dtype(name)}


def model_context(model) -> int | None:
    """The context length (in tokens) a Hugging Face model's config gives, or None."""
    cfg = model.config
    cfg = getattr(cfg, "get_text_config", lambda: cfg)()
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        v = getattr(cfg, key, None)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None
