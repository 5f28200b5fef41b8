"""Training configuration: :class:`TrainConfig` (what to train, on what), with the optimiser's
settings in :class:`OptimConfig` and the periodic evaluation's in :class:`EvalConfig`.

All three are frozen dataclasses that check themselves. A *recipe* is a YAML file of these
settings; the shipped ones are package data (``lsr.configs``, folder ``recipes/``) and are
named without ``.yaml`` (:func:`available_recipes`). Settings are overridden with dotted
keys (``optim.learning_rate=2e-5``, ``eval.every=100``) through :func:`train_config`.

The user-facing fields come first in :class:`TrainConfig`:

``model``
    the checkpoint to start from: a ``*ForMaskedLM`` model or a sentence-transformers
    ``SparseEncoder`` directory or hub id (SPLADE), or a plain backbone such as BERT or
    MiniLM (uniCOIL, DeepImpact; their heads are created with ``init_head: random``).
``encoder`` / ``query_encoder``
    the document side (``splade``, ``sparterm``, ``unicoil``, ``deepimpact``; or ``maxsim``, the
    128-d token projection of a ColBERT-style reranker, :mod:`lsr.train.maxsim`) and the query side: ``same``
    (the document side's model), ``static`` (inference-free: one learned weight per
    vocabulary token, sentence-transformers' ``SparseStaticEmbedding``; SPLADE only) or
    ``words`` (DeepImpact's query side, each query word weight 1: the default there).
``data``
    training groups: an ir_datasets id (``beir/scifact/train``,
    ``msmarco-passage/train/triples-small``) or a local TSV triples / JSONL groups file
    (:mod:`lsr.train.data`).
``negatives_from`` / ``mine_window`` / ``negatives``
    hard negatives mined with an lsr index (:mod:`lsr.train.mine`): the index's encoder
    searches the training queries, judged positives are skipped, ``negatives`` per query are
    drawn from ranks ``mine_window = [lo, hi)``.
``teacher_scores`` / ``teacher``
    the distillation losses' (``margin_mse``, ``kl_div``) scores: a TSV (``qid docid score``)
    or JSONL file, or a reranker (a preset name or YAML of :mod:`lsr.rerank`) that scores
    each training group once before training.
``loss``
    ``mnrl`` (in-batch and hard negatives, cross-entropy), ``margin_mse`` or ``kl_div``.
``regularizer``, ``query_regularizer_weight``, ``document_regularizer_weight``, ``regularizer_warmup_steps``
    FLOPS (or L1) on queries and documents with weights λq and λd, raised from 0 as
    λ·min(1, t/T)² over the first T steps (:func:`lsr.train.losses.flops_weight`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lsr.config import _Config, _int_at_least, _number_in, read_yaml_mapping
from lsr.errors import InputError

ENCODERS = ("splade", "sparterm", "unicoil", "deepimpact", "maxsim")
QUERY_ENCODERS = ("same", "static", "words")
LOSSES = ("mnrl", "margin_mse", "kl_div")
REGULARIZERS = ("flops", "l1", "none")
PRECISIONS = ("fp32", "bf16", "fp16")
POOLINGS = ("max", "sum")


@dataclass(frozen=True)
class OptimConfig(_Config):
    """The optimiser and the trainer's schedule.

    ``batch_size`` counts queries per step (each with its positive and negatives);
    ``max_steps`` > 0 overrides ``epochs``; ``warmup_steps`` is the learning rate's linear
    warm-up; ``save_steps`` 0 keeps one checkpoint at the end only (``save_total_limit`` bounds
    how many are kept); ``precision`` bf16/fp16 trains in mixed precision (GPU).
    ``learning_rate_static`` is the learning rate of an inference-free query side's token
    weights (they start at 1 and need a larger rate than the transformer).
    """

    learning_rate: float = 2e-5
    batch_size: int = 32
    epochs: float = 1.0
    max_steps: int = 0
    warmup_steps: int = 0
    weight_decay: float = 0.01
    precision: str = "fp32"
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 1.0
    save_steps: int = 0
    save_total_limit: int = 2
    logging_steps: int = 10
    learning_rate_static: float = 1e-3
    dataloader_workers: int = 0

    def __post_init__(self) -> None:
        _number_in("optim.learning_rate", self.learning_rate, 0.0, 1.0, lo_open=True)
        _number_in("optim.learning_rate_static", self.learning_rate_static, 0.0, 10.0, lo_open=True)
        _int_at_least("optim.batch_size", self.batch_size, 1)
        _number_in("optim.epochs", self.epochs, 0.0, float("inf"), lo_open=True)
        _int_at_least("optim.max_steps", self.max_steps, 0)
        _int_at_least("optim.warmup_steps", self.warmup_steps, 0)
        _number_in("optim.weight_decay", self.weight_decay, 0.0, 1.0)
        if self.precision not in PRECISIONS:
            raise InputError(f"optim.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        _int_at_least("optim.gradient_accumulation_steps", self.gradient_accumulation_steps, 1)
        _number_in("optim.max_grad_norm", self.max_grad_norm, 0.0, float("inf"))
        _int_at_least("optim.save_steps", self.save_steps, 0)
        _int_at_least("optim.save_total_limit", self.save_total_limit, 1)
        _int_at_least("optim.logging_steps", self.logging_steps, 1)
        _int_at_least("optim.dataloader_workers", self.dataloader_workers, 0)


@dataclass(frozen=True)
class EvalConfig(_Config):
    """Periodic evaluation through lsr's own index and evaluation layer.

    ``dataset``: an ir_datasets id or local dataset (``lsr.eval.datasets.load_dataset``);
    None evaluates nothing. It runs before training (step 0), every ``every`` steps (0: only
    before and after) and after the last step, on the first ``queries`` queries (0: all) and
    the whole corpus, retrieving ``k`` documents per query.
    """

    dataset: str | None = None
    every: int = 0
    queries: int = 0
    k: int = 100
    metrics: tuple[str, ...] = ("nDCG@10", "RR@10", "R@100")
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.dataset is not None and (not isinstance(self.dataset, str) or not self.dataset.strip()):
            raise InputError(f"eval.dataset must be a dataset id or path, got {self.dataset!r}")
        _int_at_least("eval.every", self.every, 0)
        _int_at_least("eval.queries", self.queries, 0)
        _int_at_least("eval.k", self.k, 1)
        _int_at_least("eval.batch_size", self.batch_size, 1)
        metrics = self.metrics
        if isinstance(metrics, str):
            metrics = tuple(m.strip() for m in metrics.split(",") if m.strip())
        if not isinstance(metrics, (list, tuple)) or not metrics or not all(isinstance(m, str) for m in metrics):
            raise InputError(f"eval.metrics must be a list of measures, got {self.metrics!r}")
        object.__setattr__(self, "metrics", tuple(metrics))


@dataclass(frozen=True)
class TrainConfig(_Config):
    """What ``lsr train`` trains (module docstring); ``optim`` and ``eval`` hold the internals."""

    model: str
    name: str = "custom"
    encoder: str = "splade"
    query_encoder: str = "same"
    init_head: str | None = None
    data: str | None = None
    negatives_from: str | None = None
    mine_window: tuple[int, int] = (10, 100)
    negatives: int = 1
    teacher_scores: str | None = None
    teacher: str | None = None
    loss: str = "mnrl"
    regularizer: str = "flops"
    query_regularizer_weight: float = 0.0
    document_regularizer_weight: float = 0.0
    regularizer_warmup_steps: int = 0
    max_length: int = 256
    pooling: str = "max"
    seed: int = 42
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    _nested: ClassVar[dict[str, type]] = {"optim": OptimConfig, "eval": EvalConfig}

    def __post_init__(self) -> None:
        for key in ("model", "name"):
            v = getattr(self, key)
            if not isinstance(v, str) or not v.strip():
                raise InputError(f"{key} must be a non-empty string, got {v!r}")
        for key in ("data", "negatives_from", "teacher_scores", "teacher", "init_head"):
            v = getattr(self, key)
            if v is not None and (not isinstance(v, str) or not v.strip()):
                raise InputError(f"{key} must be a non-empty string or null, got {v!r}")
        if self.encoder not in ENCODERS:
            raise InputError(f"encoder must be one of {', '.join(ENCODERS)}, got {self.encoder!r}")
        if self.query_encoder not in QUERY_ENCODERS:
            raise InputError(f"query_encoder must be one of {', '.join(QUERY_ENCODERS)}, "
                             f"got {self.query_encoder!r}")
        if self.query_encoder == "static" and self.encoder != "splade":
            raise InputError("query_encoder: static (inference-free) needs encoder: splade")
        if self.query_encoder == "words" and self.encoder != "deepimpact":
            raise InputError("query_encoder: words needs encoder: deepimpact (whole-word terms)")
        if self.encoder == "deepimpact" and self.query_encoder == "same":
            raise InputError("DeepImpact's queries are their words: set query_encoder: words")
        if self.init_head is not None and self.init_head != "random":
            raise InputError(f"init_head must be 'random' or null, got {self.init_head!r}")
        if self.init_head is not None and self.encoder in ("splade", "sparterm", "maxsim"):
            raise InputError(f"init_head applies to uniCOIL and DeepImpact heads, not {self.encoder}")
        if self.encoder == "maxsim":
            if self.loss != "mnrl":
                raise InputError("the MaxSim projection trains with loss: mnrl (contrastive, hard negatives)")
            if self.regularizer != "none" and (self.query_regularizer_weight or self.document_regularizer_weight):
                raise InputError("the MaxSim projection is dense: set regularizer: none")
        w = self.mine_window
        if (not isinstance(w, (list, tuple)) or len(w) != 2 or not all(isinstance(x, int) and not isinstance(x, bool)
                                                                      for x in w) or not 1 <= w[0] < w[1]):
            raise InputError(f"mine_window must be [lo, hi) ranks with 1 <= lo < hi, got {w!r}")
        object.__setattr__(self, "mine_window", (int(w[0]), int(w[1])))
        _int_at_least("negatives", self.negatives, 0)
        if self.loss not in LOSSES:
            raise InputError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.loss in ("margin_mse", "kl_div"):
            if self.negatives < 1:
                raise InputError(f"loss {self.loss} needs negatives >= 1")
        if self.teacher_scores is not None and self.teacher is not None:
            raise InputError("give teacher scores from a file (teacher_scores) or a reranker (teacher), not both")
        if self.regularizer not in REGULARIZERS:
            raise InputError(f"regularizer must be one of {', '.join(REGULARIZERS)}, got {self.regularizer!r}")
        _number_in("query_regularizer_weight", self.query_regularizer_weight, 0.0, float("inf"))
        _number_in("document_regularizer_weight", self.document_regularizer_weight, 0.0, float("inf"))
        _int_at_least("regularizer_warmup_steps", self.regularizer_warmup_steps, 0)
        _int_at_least("max_length", self.max_length, 8)
        if self.pooling not in POOLINGS:
            raise InputError(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        _int_at_least("seed", self.seed, 0)
        if not isinstance(self.optim, OptimConfig):
            raise InputError("optim must be a mapping of optimiser settings")
        if not isinstance(self.eval, EvalConfig):
            raise InputError("eval must be a mapping of evaluation settings")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mine_window"] = list(self.mine_window)
        d["eval"]["metrics"] = list(self.eval.metrics)
        return d

    @property
    def distills(self) -> bool:
        return self.loss in ("margin_mse", "kl_div")

    def describe(self) -> str:
        """One line: what is trained on what."""
        q = {"same": self.encoder, "static": "static (inference-free)", "words": "words"}[self.query_encoder]
        return (f"{self.name}: {self.encoder} documents, {q} queries, from {self.model}; loss {self.loss}, "
                f"{self.regularizer} λq={self.query_regularizer_weight:g} λd={self.document_regularizer_weight:g}")


def available_recipes() -> list[str]:
    """Names of the recipes shipped with lsr."""
    from lsr import configs

    d = configs.path("recipes")
    return sorted(p.name[:-5] for p in d.iterdir() if p.name.endswith(".yaml")) if d.is_dir() else []


def _recipe_mapping(spec: str | os.PathLike) -> tuple[dict, str | None]:
    """The settings a recipe name or YAML file holds, and the directory relative paths are read from."""
    import yaml

    from lsr import configs

    s = os.fspath(spec)
    if os.sep not in s and not s.endswith((".yaml", ".yml")):
        p = configs.path("recipes", f"{s}.yaml")
        if not p.is_file():
            raise InputError(f"unknown recipe {s!r} (shipped: {', '.join(available_recipes())}; "
                             "or give a YAML file)")
        return yaml.safe_load(p.read_text(encoding="utf-8")) or {}, None
    if not os.path.isfile(s):
        raise InputError(f"recipe file {s} does not exist")
    return read_yaml_mapping(s, "recipe"), os.path.dirname(os.path.abspath(s))


def _set_dotted(d: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    if not all(parts):
        raise InputError(f"bad setting name {key!r}")
    node = d
    for part in parts[:-1]:
        sub = node.get(part)
        if sub is None:
            sub = node[part] = {}
        elif not isinstance(sub, dict):
            raise InputError(f"setting {key!r}: {part!r} is not a group of settings")
        node = sub
    node[parts[-1]] = value


def train_config(recipe: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None,
                 **fields_: Any) -> TrainConfig:
    """A :class:`TrainConfig` from a recipe (a shipped name or a YAML file, or None), then dotted
    ``overrides`` (``{"optim.learning_rate": 1e-5}``), then keyword fields. Unknown keys are an
    :class:`~lsr.errors.InputError` naming the known ones; paths in a recipe file are relative
    to that file."""
    data: dict = {}
    base = None
    if recipe is not None:
        data, base = _recipe_mapping(recipe)
        data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
        if "name" not in data:
            data["name"] = os.path.splitext(os.path.basename(os.fspath(recipe)))[0]
    if base is not None:
        for key in ("data", "negatives_from", "teacher_scores"):
            v = data.get(key)
            if isinstance(v, str) and v.startswith(("./", "../")):
                data[key] = os.path.normpath(os.path.join(base, v))
    for key, value in {**(overrides or {}), **fields_}.items():
        _set_dotted(data, key, value)
    if "model" not in data or data["model"] is None:
        raise InputError("no model to train: give one (--model, or model: in the recipe)")
    return TrainConfig.from_dict(data)


__all__ = ["EvalConfig", "OptimConfig", "TrainConfig", "available_recipes", "train_config"]
