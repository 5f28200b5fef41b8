"""Configuration: frozen dataclasses that validate themselves.

They load from YAML or dicts (``from_dict`` / ``from_yaml``), dump to plain
dicts (``to_dict``) and are stored in the index manifest so that an index
records how it was built. Nothing here reads environment variables.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .errors import InputError



def read_yaml_mapping(path: str | os.PathLike, what: str = "config") -> dict:
    """The mapping a YAML file holds (an empty file gives ``{}``); :class:`InputError` naming the file
    (as a ``what``) when it cannot be read, is not YAML, or holds something other than a mapping."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise InputError(f"cannot read {what} {path}: {e.strerror or e}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path}: invalid YAML ({first})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of settings in the {what}")
    return data

class _Config:
    """Mixin: dict / YAML round trip with unknown-key checking."""

    _nested: ClassVar[dict[str, type]] = {}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None):
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - names)
        if unknown:
            raise InputError(f"{cls.__name__}: unknown setting(s) {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(names))})")
        for key, sub in cls._nested.items():
            if key in d and isinstance(d[key], dict):
                d[key] = sub.from_dict(d[key])
        try:
            return cls(**d)
        except TypeError as e:
            raise InputError(f"{cls.__name__}: {e}") from None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, section: str | None = None):
        data = read_yaml_mapping(path, "config")
        if section is not None:
            data = data.get(section, {})
            if not isinstance(data, dict):
                raise InputError(f"{path}: expected a mapping of settings under {section!r}")
        return cls.from_dict(data)


QUANTIZATION_METHODS = ("auto", "max", "fixed", "float")


@dataclass(frozen=True)
class QuantizationConfig(_Config):
    """How document weights become impacts.

    * ``auto`` (default): integer weights that fit in ``bits`` are kept as
      they are (pre-quantised input, scale 1); otherwise as ``max``.
    * ``max``: ``impact = round(weight * scale)`` with
      ``scale = (2**bits - 1) / max_weight`` over the whole collection.
    * ``fixed``: the same with a given ``scale`` (Anserini uses 100);
      impacts above ``2**bits - 1`` are clipped and counted in the manifest.
    * ``float``: no quantisation, float32 impacts and float scores.

    Rounding is half-up (``floor(x + 0.5)``). A posting whose impact rounds to
    0 contributes nothing to any score and is dropped.
    """

    method: str = "auto"
    bits: int = 8
    scale: float | None = None

    def __post_init__(self) -> None:
        if self.method not in QUANTIZATION_METHODS:
            raise InputError(f"quantization method {self.method!r} is not one of "
                             f"{', '.join(QUANTIZATION_METHODS)}")
        if self.bits not in (8, 16):
            raise InputError(f"quantization bits must be 8 or 16, got {self.bits}")
        if self.method == "fixed":
            if self.scale is None or not (self.scale > 0) or self.scale == float("inf"):
                raise InputError("quantization method 'fixed' needs a positive, finite scale")
        elif self.scale is not None:
            raise InputError(f"a scale is only given with method 'fixed', not {self.method!r}")


@dataclass(frozen=True)
class IndexConfig(_Config):
    """Index build settings.

    ``block_size``: postings per block for the stored per-block maxima
    (used by Block-Max WAND and block-max MaxScore). ``range_block_docs``:
    documents per doc-range block (a power of two up to 256): doc ids are
    stored as (range block, offset) pairs, and per term the maximum impact in
    each range block it touches is kept for the block-max traversal
    (``blockmax``; see :mod:`lsr.index.kernels.postings`). ``reorder``:
    ``none`` keeps the collection order as the internal doc id order (ties
    are then broken by collection order); ``bp`` renumbers the documents by
    recursive graph bisection (:mod:`lsr.index.kernels.reorder`) so that
    documents sharing terms get nearby ids, which shrinks the pair-coded
    postings and tightens the block maxima where the collection order has
    no locality (ties are then broken by the new order). ``run_postings``: postings buffered in memory
    before a sorted run is spilled to disk (bounds the build's memory: about
    24 bytes per buffered posting). ``batch_docs``: documents parsed per batch.
    """

    _nested: ClassVar[dict[str, type]] = {"quantization": QuantizationConfig}

    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    block_size: int = 64
    range_block_docs: int = 16
    reorder: str = "none"
    run_postings: int = 32_000_000
    batch_docs: int = 20_000

    def __post_init__(self) -> None:
        if not isinstance(self.quantization, QuantizationConfig):
            raise InputError("quantization must be a QuantizationConfig")
        if not (8 <= self.block_size <= 4096) or self.block_size & (self.block_size - 1):
            raise InputError(f"block_size must be a power of two in [8, 4096], got {self.block_size}")
        if not (1 <= self.range_block_docs <= 256) or self.range_block_docs & (self.range_block_docs - 1):
            raise InputError(f"range_block_docs must be a power of two in [1, 256], got {self.range_block_docs}")
        if self.reorder not in ("none", "bp"):
            raise InputError(f"reorder must be none or bp, got {self.reorder!r}")
        if self.run_postings < 1000:
            raise InputError(f"run_postings must be at least 1000, got {self.run_postings}")
        if self.batch_docs < 1:
            raise InputError(f"batch_docs must be positive, got {self.batch_docs}")


ALGORITHMS = ("auto", "exhaustive", "blockmax", "filtered", "maxscore", "bmm", "wand", "bmw")
LARGE_K = ("exhaustive", "filtered")  # what ``auto`` runs for k > max_k on queries with doc id locality


@dataclass(frozen=True)
class SearchConfig(_Config):
    """Search settings.

    ``k``: hits per query. ``threads``: threads for batch search (0 = all
    cores). ``query_scale``: for integer-impact indexes, float query weights
    become integers ``round(w * query_scale)`` (integer query weights are kept
    as they are); scores are then exact integers. ``algorithm``: the query
    processor; every one returns the same top k:

    * ``auto`` (default): per query, where the query terms' postings show
      doc id locality, the block-max traversal for ``k`` up to ``max_k`` on a
      collection of ``max_k_docs`` documents or more, and up to
      ``floor(max_k * (N / max_k_docs) ** max_k_power)`` on a smaller one of
      N documents (by default in proportion to N, none below 15,000
      documents: the traversal's fixed costs weigh more on a small
      collection; on nested random subsets of the 300,000-passage
      real-encoder collection the k up to which it paid was 45, 31, 15 and
      3 at 300,000, 150,000, 75,000 and 37,500 documents, and at 37,500 the
      planner lost to exhaustive scoring at every k from 1 to 20;
      docs/benchmarks.md, "How far pruning pays, by collection size";
      ``max_k_power = 0`` keeps ``max_k`` at every size); for larger
      k, ``large_k``: ``exhaustive`` (default; measured the faster at k=1000
      on the real-encoder collection since the exhaustive scorer's histogram
      selection) or ``filtered`` (the filtered scorer below, integer
      impacts); else exhaustive scoring (:mod:`lsr.index.kernels.planner`;
      ``max_k``, ``max_k_docs``, ``max_k_power``, ``large_k``, ``locality_ratio``, ``pair_ratio``,
      ``common_df``, ``max_common``, ``budget_ratio``, ``sweep_after`` and
      ``full_ratio`` are its settings; measured in docs/benchmarks.md; a
      query with more than ``max_common`` terms in at least ``common_df`` of
      the documents is scored exhaustively);
    * ``exhaustive``: term-at-a-time scoring of every posting (the reference);
    * ``blockmax``: doc-range block-max traversal (BMP-style, exact;
      ``sweep_after``: blocks scored in bound order before the rest are
      swept in doc id order, -1 = never);
    * ``filtered``: two-phase term-at-a-time (:mod:`lsr.index.kernels.filtered`,
      exact): the query terms with the largest possible contributions, at
      least ``full_ratio`` of the query's postings, are scored in full; the
      other terms' postings only in the range blocks that can still reach
      the top k. Integer impacts only (float-impact indexes are scored
      exhaustively);
    * ``maxscore``, ``bmm`` (block-max MaxScore), ``wand``, ``bmw``
      (Block-Max WAND): document-at-a-time dynamic pruning (they decode the
      index's doc ids into memory once, 4 bytes a posting).

    ``dense_df``: the terms in at least this share of the documents are also
    held in memory as dense impact rows (one entry per document), which the
    term-at-a-time processors (``exhaustive``, ``filtered``, ``blockmax``,
    ``auto``) add in one vectorised pass instead of posting by posting
    (:mod:`lsr.index.kernels.dense`; integer impacts; 0 = none); at most
    ``dense_mb`` MiB of rows, the most frequent terms first. The hits do not
    change, only the time.
    """

    k: int = 10
    threads: int = 0
    query_scale: float = 100.0
    algorithm: str = "auto"
    max_k: int = 20
    max_k_docs: int = 300_000
    max_k_power: float = 1.0
    locality_ratio: float = 0.95
    pair_ratio: float = 0.5
    common_df: float = 0.0625
    max_common: int = 9
    budget_ratio: float = 2.0
    sweep_after: int = 1024
    full_ratio: float = 0.5
    large_k: str = "exhaustive"
    dense_df: float = 0.0625
    dense_mb: int = 1024

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise InputError(f"k must be a positive integer, got {self.k!r}")
        if self.threads < 0:
            raise InputError(f"threads must be >= 0, got {self.threads}")
        if not (self.query_scale > 0) or self.query_scale == float("inf"):
            raise InputError(f"query_scale must be positive and finite, got {self.query_scale}")
        if isinstance(self.max_k, bool) or not isinstance(self.max_k, int) or self.max_k < 0:
            raise InputError(f"max_k must be an integer >= 0, got {self.max_k!r}")
        if isinstance(self.max_k_docs, bool) or not isinstance(self.max_k_docs, int) or self.max_k_docs < 1:
            raise InputError(f"max_k_docs must be an integer >= 1, got {self.max_k_docs!r}")
        if not (0 <= self.max_k_power < float("inf")):
            raise InputError(f"max_k_power must be a finite number >= 0, got {self.max_k_power}")
        if isinstance(self.max_common, bool) or not isinstance(self.max_common, int) or self.max_common < 0:
            raise InputError(f"max_common must be an integer >= 0, got {self.max_common!r}")
        if not (0 < self.common_df <= 1):
            raise InputError(f"common_df must be a number in (0, 1], got {self.common_df}")
        if isinstance(self.sweep_after, bool) or not isinstance(self.sweep_after, int) or self.sweep_after < -1:
            raise InputError(f"sweep_after must be an integer >= -1, got {self.sweep_after!r}")
        for name in ("locality_ratio", "pair_ratio", "budget_ratio"):
            v = getattr(self, name)
            if not (0 <= v < float("inf")):
                raise InputError(f"{name} must be a finite number >= 0, got {v}")
        if not (0 <= self.dense_df <= 1):
            raise InputError(f"dense_df must be a number in [0, 1], got {self.dense_df}")
        if isinstance(self.dense_mb, bool) or not isinstance(self.dense_mb, int) or self.dense_mb < 0:
            raise InputError(f"dense_mb must be an integer >= 0, got {self.dense_mb!r}")
        if not (0 <= self.full_ratio <= 1):
            raise InputError(f"full_ratio must be a number in [0, 1], got {self.full_ratio}")
        if self.large_k not in LARGE_K:
            raise InputError(f"large_k must be one of {', '.join(LARGE_K)}, got {self.large_k!r}")
        if self.algorithm not in ALGORITHMS:
            raise InputError(f"unknown algorithm {self.algorithm!r} (known: {', '.join(ALGORITHMS)})")
