"""Configuration: frozen dataclasses that validate themselves.

They load from YAML or dicts (``from_dict`` / ``from_yaml``), dump to plain
dicts (``to_dict``) and are stored in the index manifest so that an index
records how it was built. Nothing here reads environment variables.
"""

from __future__ import annotations

import dataclasses
import functools
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


ALGORITHMS = ("auto", "exhaustive", "blockmax", "filtered", "maxscore", "bmm", "wand", "bmw", "approx")
"""The query processors' names (``lsr.index.processors.PROCESSORS`` holds one entry for each; a test checks that)."""
LARGE_K = ("exhaustive", "filtered")  # what ``auto`` runs for k > max_k on queries with doc id locality


def _int_at_least(name: str, v: Any, lo: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise InputError(f"{name} must be an integer >= {lo}, got {v!r}")


def _number_in(name: str, v: Any, lo: float, hi: float, lo_open: bool = False) -> None:
    """A number in [lo, hi] ((lo, hi] with ``lo_open``); ``hi`` infinite: any finite number from lo."""
    ok = (isinstance(v, (int, float)) and not isinstance(v, bool) and (lo < v if lo_open else lo <= v)
          and v <= hi and v != float("inf"))
    if not ok:
        if hi == float("inf"):
            raise InputError(f"{name} must be a finite number {'>' if lo_open else '>='} {lo:g}, got {v!r}")
        raise InputError(f"{name} must be a number in {'(' if lo_open else '['}{lo:g}, {hi:g}], got {v!r}")


@dataclass(frozen=True)
class PlannerConfig(_Config):
    """The query planner's settings (``algorithm = "auto"``; :mod:`lsr.index.kernels.planner`), and
    the block-max traversal's and filtered scorer's own.

    The shipped defaults, each with its reason, are ``configs/search/planner.yaml``
    (:func:`shipped_planner`); the field defaults here are the same values (a test checks).

    * ``max_k``: the largest k at which the planner tries the block-max traversal on a collection
      of ``max_k_docs`` documents or more; on a smaller one of N documents,
      ``floor(max_k * (N / max_k_docs) ** max_k_power)`` (``max_k_power = 0`` keeps ``max_k`` at
      every size).
    * ``locality_ratio``, ``pair_ratio``, ``common_df`` (a share of the documents),
      ``max_common``: the planner's tests that send a query to exhaustive scoring (no doc id
      locality; bounds too costly; more than ``max_common`` terms in at least ``common_df`` of
      the documents).
    * ``budget_ratio``: the traversal's budget in multiples of the exhaustive scorer's estimated
      cost; it gives up (and the query is scored exhaustively) beyond it.
    * ``sweep_after``: blocks the traversal scores in bound order before it visits the rest in doc
      id order (-1 = never); used by ``auto`` and ``blockmax``.
    * ``full_ratio``: the share of the query's postings the filtered scorer scores in full; used
      by ``filtered`` and by ``auto`` with ``large_k = "filtered"``.
    * ``large_k``: what ``auto`` runs above ``max_k``: ``exhaustive`` or ``filtered``.
    """

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

    def __post_init__(self) -> None:
        _int_at_least("max_k", self.max_k, 0)
        _int_at_least("max_k_docs", self.max_k_docs, 1)
        _int_at_least("max_common", self.max_common, 0)
        _int_at_least("sweep_after", self.sweep_after, -1)
        _number_in("max_k_power", self.max_k_power, 0, float("inf"))
        _number_in("common_df", self.common_df, 0, 1, lo_open=True)
        for name in ("locality_ratio", "pair_ratio", "budget_ratio"):
            _number_in(name, getattr(self, name), 0, float("inf"))
        _number_in("full_ratio", self.full_ratio, 0, 1)
        if self.large_k not in LARGE_K:
            raise InputError(f"large_k must be one of {', '.join(LARGE_K)}, got {self.large_k!r}")


PLANNER_KEYS = tuple(f.name for f in dataclasses.fields(PlannerConfig))


@functools.lru_cache(maxsize=None)
def _shipped(cls: type, name: str):
    """The shipped settings file ``configs/search/<name>`` (package data) as a ``cls``, read once."""
    import yaml

    from lsr import configs

    return cls.from_dict(yaml.safe_load(configs.path("search", name).read_text(encoding="utf-8")))


def shipped_planner() -> PlannerConfig:
    """The planner's shipped defaults: ``configs/search/planner.yaml`` (package data), read once."""
    return _shipped(PlannerConfig, "planner.yaml")


@dataclass(frozen=True)
class ApproxConfig(_Config):
    """The approximate processor's knobs (``algorithm = "approx"``; :mod:`lsr.index.kernels.approx`):
    the block-max traversal made approximate. Every returned score is the document's exact score;
    which documents are returned depends on the knobs. The defaults (all exact, so ``approx`` at its
    defaults returns the exhaustive top k) are ``configs/search/approx.yaml``; settings measured
    against recall are in docs/benchmarks.md.

    * ``alpha`` in (0, 1]: a range block is scored only while ``alpha`` times its score bound beats
      the k-th score found so far (1 = exact; smaller prunes more, as BMP's alpha).
    * ``query_cut``: only the this many query terms with the largest bound (weight x the term's
      largest impact) drive the traversal (None = all); the others are added to the scores of the
      hits found.
    * ``query_mass`` in (0, 1]: likewise, the fewest terms whose bounds reach this share of the
      query's total bound (1 = all). With both, the stricter one decides.
    * ``max_blocks``: stop after scoring this many range blocks (an anytime budget; None = no limit).
    """

    alpha: float = 1.0
    query_cut: int | None = None
    query_mass: float = 1.0
    max_blocks: int | None = None

    def __post_init__(self) -> None:
        _number_in("alpha", self.alpha, 0, 1, lo_open=True)
        if self.query_cut is not None:
            _int_at_least("query_cut", self.query_cut, 1)
        _number_in("query_mass", self.query_mass, 0, 1, lo_open=True)
        if self.max_blocks is not None:
            _int_at_least("max_blocks", self.max_blocks, 1)

    @property
    def is_exact(self) -> bool:
        """Whether these settings return the exhaustive top k."""
        return self.alpha == 1 and self.query_cut is None and self.query_mass == 1 and self.max_blocks is None


APPROX_KEYS = tuple(f.name for f in dataclasses.fields(ApproxConfig))


def shipped_approx() -> ApproxConfig:
    """The approximate processor's shipped defaults: ``configs/search/approx.yaml`` (package data), read once."""
    return _shipped(ApproxConfig, "approx.yaml")


@dataclass(frozen=True)
class SearchConfig(_Config):
    """Search settings.

    * ``algorithm``: the query processor; every one returns the same top k
      (ties by doc id), only the time differs:

      - ``auto`` (default): per query, the planner's choice among the three below
        (:class:`PlannerConfig`);
      - ``exhaustive``: term-at-a-time scoring of every posting (the reference);
      - ``blockmax``: doc-range block-max traversal (BMP-style);
      - ``filtered``: two-phase term-at-a-time: the high-impact terms in full, the others only
        in the range blocks that can still reach the top k; integer impacts (float-impact
        indexes are scored exhaustively);
      - ``maxscore``, ``bmm`` (block-max MaxScore), ``wand``, ``bmw`` (Block-Max WAND):
        document-at-a-time dynamic pruning (they decode the index's doc ids into memory once,
        4 bytes a posting);
      - ``approx``: the block-max traversal made approximate by the knobs of ``approx``
        (:class:`ApproxConfig`); exact scores, approximate top k (at its defaults, exact).

    * ``k``: hits per query.
    * ``threads``: threads for batch search (0 = all cores).
    * ``query_scale``: for integer-impact indexes, float query weights become integers
      ``round(w * query_scale)`` (integer query weights are kept as they are); scores are then
      exact integers.
    * ``dense_df``, ``dense_mb``: the terms in at least ``dense_df`` of the documents are also
      held in memory as dense impact rows, at most ``dense_mb`` MiB of them, the most frequent
      terms first; the term-at-a-time processors add such a term in one vectorised pass
      (:mod:`lsr.index.kernels.dense`; integer impacts; 0 = none). Time and memory only.
    * ``approx``: the ``approx`` processor's knobs (:class:`ApproxConfig`; defaults from
      ``configs/search/approx.yaml``).
    * ``planner``: the planner's and the pruning processors' internals (:class:`PlannerConfig`;
      defaults from ``configs/search/planner.yaml``).

    :meth:`from_dict` also takes the planner's keys at the top level (as before they had their
    own section) and moves them into ``planner``; :meth:`with_overrides` takes the planner's and
    the approximate processor's keys at the top level.
    """

    _nested: ClassVar[dict[str, type]] = {"planner": PlannerConfig, "approx": ApproxConfig}

    algorithm: str = "auto"
    k: int = 10
    threads: int = 0
    query_scale: float = 100.0
    dense_df: float = 0.0625
    dense_mb: int = 1024
    approx: ApproxConfig = field(default_factory=shipped_approx)
    planner: PlannerConfig = field(default_factory=shipped_planner)

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise InputError(f"unknown algorithm {self.algorithm!r} (known: {', '.join(ALGORITHMS)})")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise InputError(f"k must be a positive integer, got {self.k!r}")
        _int_at_least("threads", self.threads, 0)
        _number_in("query_scale", self.query_scale, 0, float("inf"), lo_open=True)
        _number_in("dense_df", self.dense_df, 0, 1)
        _int_at_least("dense_mb", self.dense_mb, 0)
        if not isinstance(self.planner, PlannerConfig):
            raise InputError("planner must be a PlannerConfig (or a mapping of its settings)")
        if not isinstance(self.approx, ApproxConfig):
            raise InputError("approx must be an ApproxConfig (or a mapping of its settings)")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None):
        d = dict(d or {})
        flat = {key: d.pop(key) for key in PLANNER_KEYS if key in d}
        if flat:
            planner = d.get("planner", {})
            if isinstance(planner, PlannerConfig):
                planner = planner.to_dict()
            if not isinstance(planner, dict):
                raise InputError("SearchConfig: planner must be a mapping of PlannerConfig settings")
            both = sorted(set(flat) & set(planner))
            if both:
                raise InputError(f"SearchConfig: {', '.join(both)} given both at the top level and under planner")
            d["planner"] = {**shipped_planner().to_dict(), **planner, **flat}
        elif isinstance(d.get("planner"), dict):
            d["planner"] = {**shipped_planner().to_dict(), **d["planner"]}
        if isinstance(d.get("approx"), dict):
            d["approx"] = {**shipped_approx().to_dict(), **d["approx"]}
        return super().from_dict(d)

    def with_overrides(self, **overrides: Any) -> "SearchConfig":
        """A copy with settings replaced; the planner's keys (:class:`PlannerConfig`) and the approximate
        processor's (:class:`ApproxConfig`) may be given at the top level, e.g.
        ``with_overrides(k=100, max_k=50)``, ``with_overrides(algorithm="approx", alpha=0.9)``."""
        planner = {key: overrides.pop(key) for key in PLANNER_KEYS if key in overrides}
        approx = {key: overrides.pop(key) for key in APPROX_KEYS if key in overrides}
        cfg = dataclasses.replace(self, **overrides) if overrides else self
        if planner:
            cfg = dataclasses.replace(cfg, planner=dataclasses.replace(cfg.planner, **planner))
        if approx:
            cfg = dataclasses.replace(cfg, approx=dataclasses.replace(cfg.approx, **approx))
        return cfg
