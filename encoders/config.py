"""Encoder configuration: frozen, self-validating dataclasses.

One structure covers every encoder (the unified LSR framework of Nguyen et
al., ECIR 2023): an :class:`EncoderConfig` pairs a *document* side and a
*query* side, each a :class:`SideConfig` = a backbone checkpoint plus a sparse
head (its ``kind``), chosen independently.

Side kinds and the term space they write weights in:

=============  ======================================================  ===========
kind           head                                                    terms
=============  ======================================================  ===========
``splade``     MLM logits -> log(1 + ReLU) -> max (or sum) over tokens  WordPieces
``sparterm``   MLM importance (ReLU, sum/max) x binary gate             WordPieces
``unicoil``    Linear(hidden, 1) + ReLU per token, max (or sum) over    WordPieces
               repeated tokens
``deepimpact`` MLP (Linear -> ReLU [-> Linear -> ReLU]) on the first    whole words
               WordPiece of each word's first occurrence
``tokens``     no transformer: the query's WordPieces, weight 1, the   WordPieces
               count, or a learned per-token weight (JSON file)
``words``      no transformer: the text's whole words (DeepImpact's     whole words
               segmentation), weight 1 or the count
=============  ======================================================  ===========

The two sides of one encoder must write in the same term space.
Configs round-trip through :meth:`EncoderConfig.to_dict` /
:meth:`EncoderConfig.from_dict` and load from YAML presets
(:meth:`EncoderConfig.from_yaml`); relative paths in a YAML file are taken
relative to that file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .errors import EncoderConfigError

KINDS = ("splade", "sparterm", "unicoil", "deepimpact", "tokens", "words")
NEURAL_KINDS = ("splade", "sparterm", "unicoil", "deepimpact")
TERM_SPACE = {"splade": "wordpiece", "sparterm": "wordpiece", "unicoil": "wordpiece",
              "tokens": "wordpiece", "deepimpact": "word", "words": "word"}
DEFAULT_HEAD_PREFIX = {"unicoil": "tok_proj", "deepimpact": "impact_score_encoder"}
DTYPES = ("float32", "bfloat16", "float16")
SPLADE_ACTIVATIONS = ("relu", "log1p_relu")   # sentence-transformers' SpladePooling activation_function names

DEEPERIMPACT_PROMPT = "Predict possible search queries for the following document:\n{document}\n---\n"


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _opt_str(name: str, v: Any, where: str) -> None:
    if v is not None and (not isinstance(v, str) or not v.strip()):
        raise EncoderConfigError(f"{where}: {name} must be a non-empty string or null, got {v!r}")


def _from_mapping(cls, data: Any, where: str, nested: Mapping[str, Any] | None = None):
    if not isinstance(data, Mapping):
        raise EncoderConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise EncoderConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))} "
                                 f"(known: {', '.join(sorted(names))})")
    kwargs = dict(data)
    for key, conv in (nested or {}).items():
        if kwargs.get(key) is not None:
            kwargs[key] = conv(kwargs[key], f"{where}.{key}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise EncoderConfigError(f"{where}: {e}") from None


@dataclass(frozen=True)
class ExpansionConfig:
    """doc2query expansion with a causal LM (DeeperImpact's expansion step).

    For each document the LM generates ``num_queries`` queries from
    ``prompt`` (``{document}`` is replaced by the document text, cut to
    ``max_input_tokens`` LM tokens); the words of those queries that the
    document does not contain are appended once each, in order of first
    appearance. Sampling is seeded per document (``seed`` mixed with a CRC of
    the text), so a document's expansion does not depend on its batch.
    Defaults follow the DeeperImpact paper's generation settings.
    """

    model: str
    revision: str | None = None
    gguf_file: str | None = None
    tokenizer: str | None = None
    prompt: str = DEEPERIMPACT_PROMPT
    chat_template: bool = False
    num_queries: int = 80
    max_new_tokens: int = 50
    max_input_tokens: int = 512
    do_sample: bool = True
    top_k: int = 50
    top_p: float = 0.95
    temperature: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        where = "expansion"
        if not isinstance(self.model, str) or not self.model.strip():
            raise EncoderConfigError(f"{where}: model must name a causal LM (directory or hub id)")
        for name in ("revision", "gguf_file", "tokenizer"):
            _opt_str(name, getattr(self, name), where)
        if not isinstance(self.prompt, str) or "{document}" not in self.prompt:
            raise EncoderConfigError(f"{where}: prompt must contain the placeholder {{document}}")
        for name in ("chat_template", "do_sample"):
            if not isinstance(getattr(self, name), bool):
                raise EncoderConfigError(f"{where}: {name} must be true or false")
        for name, lo in (("num_queries", 1), ("max_new_tokens", 1), ("max_input_tokens", 8),
                         ("top_k", 0), ("seed", 0)):
            v = getattr(self, name)
            if not _is_int(v) or v < lo:
                raise EncoderConfigError(f"{where}: {name} must be an integer >= {lo}, got {v!r}")
        if not _is_num(self.top_p) or not 0 < self.top_p <= 1:
            raise EncoderConfigError(f"{where}: top_p must be in (0, 1], got {self.top_p!r}")
        if not _is_num(self.temperature) or self.temperature <= 0:
            raise EncoderConfigError(f"{where}: temperature must be > 0, got {self.temperature!r}")
        if not self.do_sample and self.num_queries > 1:
            raise EncoderConfigError(f"{where}: greedy decoding (do_sample: false) gives one query; "
                                     "set num_queries: 1 or do_sample: true")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "expansion") -> ExpansionConfig:
        return _from_mapping(cls, data, where)


@dataclass(frozen=True)
class SideConfig:
    """One side (documents or queries) of an encoder: a backbone and a sparse head.

    ``model`` is a checkpoint (a local directory or a Hugging Face hub id; for
    ``tokens``/``words`` the source of the tokenizer) and ``revision`` the hub
    revision. ``top_k`` keeps the k largest weights, ``min_weight`` drops
    weights below it (weights of 0 are always dropped).
    """

    kind: str
    model: str
    revision: str | None = None
    tokenizer: str | None = None
    max_length: int = 256
    pooling: str = "max"
    gate: str = "lexical"
    gate_model: str | None = None
    gate_threshold: float = 0.5
    head_file: str | None = None
    head_prefix: str | None = None
    weights: str = "binary"
    top_k: int | None = None
    min_weight: float = 0.0
    expansion: ExpansionConfig | None = None
    activation: str = "relu"
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        k = self.kind
        where = f"{k if isinstance(k, str) else '?'} side"
        if k not in KINDS:
            raise EncoderConfigError(f"unknown encoder kind {k!r} (one of: {', '.join(KINDS)})")
        if not isinstance(self.model, str) or not self.model.strip():
            raise EncoderConfigError(f"{where}: model must name a checkpoint (directory or hub id)")
        for name in ("revision", "tokenizer", "gate_model", "head_file", "head_prefix"):
            _opt_str(name, getattr(self, name), where)
        if not _is_int(self.max_length) or not 2 < self.max_length <= 100_000:
            raise EncoderConfigError(f"{where}: max_length must be an integer in 3..100000, "
                                     f"got {self.max_length!r}")
        if self.pooling not in ("max", "sum"):
            raise EncoderConfigError(f"{where}: pooling must be 'max' or 'sum', got {self.pooling!r}")
        if self.pooling != "max" and k not in ("splade", "sparterm", "unicoil"):
            raise EncoderConfigError(f"{where}: pooling applies to splade, sparterm and unicoil only")
        if self.gate not in ("lexical", "expansion"):
            raise EncoderConfigError(f"{where}: gate must be 'lexical' or 'expansion', got {self.gate!r}")
        if k != "sparterm" and (self.gate != "lexical" or self.gate_model is not None):
            raise EncoderConfigError(f"{where}: gate and gate_model apply to sparterm only")
        if not _is_num(self.gate_threshold) or not 0 < self.gate_threshold < 1:
            raise EncoderConfigError(f"{where}: gate_threshold must be in (0, 1), got {self.gate_threshold!r}")
        if k not in ("unicoil", "deepimpact") and (self.head_file or self.head_prefix):
            raise EncoderConfigError(f"{where}: head_file and head_prefix apply to unicoil and deepimpact only")
        if not isinstance(self.weights, str) or not self.weights:
            raise EncoderConfigError(f"{where}: weights must be 'binary', 'counts' or a JSON file path")
        if self.weights != "binary":
            if k not in ("tokens", "words"):
                raise EncoderConfigError(f"{where}: weights applies to tokens and words only")
            if self.weights != "counts" and (k == "words" or not self.weights.endswith((".json", ".safetensors"))):
                raise EncoderConfigError(
                    f"{where}: weights must be 'binary', 'counts'"
                    + (" or a .json / .safetensors file of token weights" if k == "tokens" else "")
                    + f", got {self.weights!r}")
        if self.top_k is not None and (not _is_int(self.top_k) or self.top_k < 1):
            raise EncoderConfigError(f"{where}: top_k must be a positive integer or null, got {self.top_k!r}")
        if not _is_num(self.min_weight) or self.min_weight < 0:
            raise EncoderConfigError(f"{where}: min_weight must be a finite number >= 0, got {self.min_weight!r}")
        if self.activation not in SPLADE_ACTIVATIONS:
            raise EncoderConfigError(f"{where}: activation must be one of {', '.join(SPLADE_ACTIVATIONS)}, "
                                     f"got {self.activation!r}")
        if self.activation != "relu" and k != "splade":
            raise EncoderConfigError(f"{where}: activation applies to splade only")
        if not isinstance(self.trust_remote_code, bool):
            raise EncoderConfigError(f"{where}: trust_remote_code must be true or false")
        if self.trust_remote_code and k not in ("splade", "sparterm"):
            raise EncoderConfigError(f"{where}: trust_remote_code applies to splade and sparterm only")
        if self.expansion is not None:
            if k != "deepimpact":
                raise EncoderConfigError(f"{where}: expansion (doc2query generation) applies to deepimpact only")
            if not isinstance(self.expansion, ExpansionConfig):
                raise EncoderConfigError(f"{where}: expansion must be an ExpansionConfig")

    @property
    def term_space(self) -> str:
        """``wordpiece`` (tokenizer token strings) or ``word`` (whole words)."""
        return TERM_SPACE[self.kind]

    @property
    def neural(self) -> bool:
        """Whether this side runs a transformer."""
        return self.kind in NEURAL_KINDS

    @property
    def effective_head_prefix(self) -> str | None:
        return self.head_prefix or DEFAULT_HEAD_PREFIX.get(self.kind)

    def replace(self, **changes: Any) -> SideConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        """The fields as a dict; ``activation`` and ``trust_remote_code`` only where they differ from their
        defaults, so the descriptions of encoders that do not use them read as before these fields."""
        d = asdict(self)
        d["expansion"] = self.expansion.to_dict() if self.expansion is not None else None
        for key, default in (("activation", "relu"), ("trust_remote_code", False)):
            if d[key] == default:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "side") -> SideConfig:
        return _from_mapping(cls, data, where, nested={"expansion": ExpansionConfig.from_dict})


@dataclass(frozen=True)
class EncoderConfig:
    """A document encoder and a query encoder, chosen independently."""

    name: str
    doc: SideConfig
    query: SideConfig
    type: str = "custom"
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise EncoderConfigError("encoder name must be a non-empty string")
        if not isinstance(self.type, str) or not self.type:
            raise EncoderConfigError("encoder type must be a non-empty string")
        if not isinstance(self.description, str):
            raise EncoderConfigError("encoder description must be a string")
        for side, cfg in (("doc", self.doc), ("query", self.query)):
            if not isinstance(cfg, SideConfig):
                raise EncoderConfigError(f"{side} must be a SideConfig, got {type(cfg).__name__}")
        if self.doc.term_space != self.query.term_space:
            raise EncoderConfigError(
                f"encoder {self.name!r}: the document side ({self.doc.kind}) writes {self.doc.term_space}s "
                f"but the query side ({self.query.kind}) writes {self.query.term_space}s; they must match")
        if self.query.expansion is not None:
            raise EncoderConfigError(f"encoder {self.name!r}: doc2query expansion applies to documents only")

    def replace(self, **changes: Any) -> EncoderConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "description": self.description,
                "doc": self.doc.to_dict(), "query": self.query.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "encoder config") -> EncoderConfig:
        return _from_mapping(cls, data, where, nested={"doc": SideConfig.from_dict,
                                                      "query": SideConfig.from_dict})

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> EncoderConfig:
        """Load a YAML preset file; relative paths that exist next to the file are made absolute.

        A preset may give ``both:`` (settings shared by the two sides) and
        then only what differs under ``doc:`` / ``query:``. The name defaults
        to the file name without ``.yaml``.
        """
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise EncoderConfigError(f"{path}: cannot read preset ({e.strerror or e})") from None
        except UnicodeDecodeError as e:
            raise EncoderConfigError(f"{path}: not a valid YAML preset ({e})") from None
        return cls.from_yaml_text(text, source=path, base_dir=os.path.dirname(os.path.abspath(path)))

    @classmethod
    def from_yaml_text(cls, text: str, source: str = "preset", base_dir: str | None = None,
                       default_name: str | None = None) -> EncoderConfig:
        """Parse a YAML preset given as text (e.g. a shipped preset read through importlib.resources).

        ``source`` names it in error messages and gives the default name (its
        base name without ``.yaml``) unless ``default_name`` is given;
        relative paths that exist under ``base_dir`` are made absolute (with
        no ``base_dir``, values are kept as written).
        """
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EncoderConfigError(f"{source}: not a valid YAML preset ({first})") from None
        if not isinstance(data, dict):
            raise EncoderConfigError(f"{source}: a preset must be a YAML mapping")
        data = dict(data)
        both = data.pop("both", None) or {}
        if not isinstance(both, dict):
            raise EncoderConfigError(f"{source}: 'both' must be a mapping")
        for side in ("doc", "query"):
            sd = data.get(side)
            if sd is not None and not isinstance(sd, dict):
                raise EncoderConfigError(f"{source}: '{side}' must be a mapping")
            merged = {**both, **(sd or {})}
            if not merged:
                raise EncoderConfigError(f"{source}: missing '{side}' settings")
            data[side] = _resolve_paths(merged, base_dir) if base_dir is not None else merged
        if default_name is None:
            default_name = os.path.splitext(os.path.basename(source))[0]
        data.setdefault("name", default_name)
        return cls.from_dict(data, where=source)


_PATH_KEYS = ("model", "tokenizer", "gate_model", "head_file", "weights")


def _resolve_paths(side: dict, base: str) -> dict:
    out = dict(side)
    for key in _PATH_KEYS:
        v = out.get(key)
        if isinstance(v, str) and v and not os.path.isabs(v):
            cand = os.path.normpath(os.path.join(base, v))
            if os.path.exists(cand):
                out[key] = cand
    exp = out.get("expansion")
    if isinstance(exp, dict):
        exp = dict(exp)
        for key in ("model", "tokenizer"):
            v = exp.get(key)
            if isinstance(v, str) and v and not os.path.isabs(v):
                cand = os.path.normpath(os.path.join(base, v))
                if os.path.exists(cand):
                    exp[key] = cand
        out["expansion"] = exp
    return out


@dataclass(frozen=True)
class RuntimeConfig:
    """Where and how to run: device, dtype, CPU threads (not part of the encoder's identity,
    except ``dtype``, which changes the weights and is recorded in ``describe()``)."""

    device: str = "cpu"
    dtype: str = "float32"
    threads: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.device, str) or not self.device:
            raise EncoderConfigError(f"device must be a string such as cpu, cuda or cuda:1, got {self.device!r}")
        if self.dtype not in DTYPES:
            raise EncoderConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.threads is not None and (not _is_int(self.threads) or self.threads < 1):
            raise EncoderConfigError(f"threads must be a positive integer, got {self.threads!r}")


__all__ = [
    "DEEPERIMPACT_PROMPT",
    "DTYPES",
    "KINDS",
    "NEURAL_KINDS",
    "EncoderConfig",
    "ExpansionConfig",
    "RuntimeConfig",
    "SideConfig",
]
