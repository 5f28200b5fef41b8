"""sentence-transformers ``SparseEncoder`` checkpoints: their modules mapped to lsr's encoder sides.

A sentence-transformers (ST) checkpoint lists its modules in ``modules.json``
(index, path inside the checkpoint, type). :func:`st_config` reads that list
and the modules' own config files and returns the :class:`EncoderConfig` that
encodes the same, or None when the checkpoint has no ``modules.json``. Module
types are matched by class name under the ``sentence_transformers`` package,
so the paths of ST 5.x (``sentence_transformers.sparse_encoder.models.MLMTransformer``)
and 6.x (``sentence_transformers.sparse_encoder.modules.mlm_transformer.MLMTransformer``,
``sentence_transformers.base.modules.router.Router``) are both accepted.

Stacks understood:

* ``MLMTransformer`` (or ``Transformer`` with ``transformer_task: fill-mask``)
  + ``SpladePooling``: a ``splade`` side for documents and queries.
  ``pooling_strategy`` max or sum; ``activation_function`` relu
  (``log(1 + ReLU(x))``) or log1p_relu (``log(1 + log(1 + ReLU(x)))``, the
  OpenSearch v3 models), kept as the side's ``activation``; ``chunk_size``
  only bounds ST's memory and is ignored. The MLM may be any
  ``*ForMaskedLM`` with a fast tokenizer (WordPiece, or byte-level BPE as
  RoBERTa's); its token strings are the terms. A model whose class is code in
  a repository (``auto_map`` in ``config.json``, e.g. the GTE backbone of
  OpenSearch doc-v3-gte) is read, but loads only from a preset that sets
  ``trust_remote_code: true``. ``max_length`` is
  ST's: ``max_seq_length`` of ``sentence_bert_config.json`` (5.x) if given,
  else the tokenizer's ``model_max_length`` capped at the model's
  ``max_position_embeddings``.
* ``Router`` with routes ``query`` and ``document`` (``router_config.json``),
  each route one of the stack above or a ``SparseStaticEmbedding`` (the
  inference-free side): a ``tokens`` side with the module's static per-token
  weights (``weights: <module>/model.safetensors``, or the JSON file its
  config's ``path`` names), on its own tokenizer and ``model_max_length``.
  A module path may be empty (the repository root): the OpenSearch
  inference-free repositories keep their document MLM at the root.

* lsr's own modules (:mod:`lsr.encoders.st_modules`, type paths
  ``lsr.encoders.st_modules.*``): ``Transformer`` + ``ImpactHead`` (kind
  ``unicoil``) is a ``unicoil`` side for documents and queries, each with its
  pooling (``document_pooling`` / ``query_pooling``); ``ImpactTransformer`` +
  ``ImpactHead`` (kind ``deepimpact``) a ``deepimpact`` side; ``WordBag`` a
  ``words`` side (``max_words`` words, weight 1). The model is the backbone's
  folder, the head ``<head folder>/model.safetensors`` with prefix ``mlp``.
  ``MLMTransformer`` (or ``Transformer`` with ``transformer_task: fill-mask``)
  + ``SparTermPooling`` is a ``sparterm`` side with the lexical gate and the
  module's ``pooling`` (max or sum); its ``special_token_ids`` must be the
  tokenizer's special tokens and its ``embedding_dimension`` the vocabulary
  size, as lsr's ``sparterm`` side assumes.

The max length of a Transformer side is ST's: the module's ``query_length`` /
``document_length`` (ST 6.x) for that side if set, else ``max_seq_length`` of
``sentence_bert_config.json`` (5.x) if given, else the tokenizer's
``model_max_length`` capped at the model's ``max_position_embeddings``.

Anything else (other modules, other routes, query/document prompts, a
``do_lower_case`` the tokenizer does not already do) is an
:class:`~lsr.encoders.errors.IncompatibleModelError` naming what was found.
Hub checkpoints whose modules sit in sub-folders (a ``Router``) are downloaded
with ``huggingface_hub.snapshot_download`` and used from the local cache.
"""

from __future__ import annotations

import os
from typing import Any

from lsr.io import read_json

from .checkpoints import Checkpoint
from .config import SPLADE_ACTIVATIONS, EncoderConfig, SideConfig
from .errors import EncoderConfigError, IncompatibleModelError, ModelLoadError

MODULES_FILE = "modules.json"
ST_PACKAGE = "sentence_transformers."
LSR_PACKAGE = "lsr.encoders.st_modules."   # lsr's own modules (uniCOIL / DeepImpact heads)
MLM_CLASSES = ("MLMTransformer", "Transformer")
SPARSE_CLASSES = {"MLMTransformer", "SpladePooling", "SparseStaticEmbedding", "SparseAutoEncoder", "Router",
                  "ImpactHead", "ImpactTransformer", "WordBag", "SparTermPooling"}
LSR_CLASSES = ("ImpactHead", "ImpactTransformer", "WordBag", "SparTermPooling")
MAX_LENGTH_LIMIT = 100_000   # SideConfig's largest max_length ("no limit" tokenizers are clamped to it)


class _Source:
    """Files of an ST checkpoint: a local directory, or a hub id (files fetched one by one, or the
    whole snapshot when a module lives in a sub-folder)."""

    def __init__(self, ckpt: Checkpoint) -> None:
        self.ckpt = ckpt
        self._snapshot: str | None = None

    @property
    def label(self) -> str:
        return self.ckpt.label

    def file(self, rel: str) -> str | None:
        """Local path of a file of the checkpoint (None if absent)."""
        if self.ckpt.local or self._snapshot is not None:
            path = os.path.join(self._snapshot or self.ckpt.spec, *rel.split("/"))
            return path if os.path.isfile(path) else None
        return _hub_file(self.ckpt, rel)

    def json(self, rel: str, required: bool = True) -> dict | list | None:
        path = self.file(rel)
        if path is None:
            if required:
                raise IncompatibleModelError(f"sentence-transformers checkpoint {self.label}: no {rel}")
            return None
        return read_json(path, ModelLoadError, f"{rel} of {self.label}")

    def model_spec(self, sub: str) -> str:
        """What a :class:`SideConfig` names as ``model`` for the module folder ``sub`` ('' = the root)."""
        if self.ckpt.local:
            return os.path.join(self.ckpt.spec, sub) if sub else self.ckpt.spec
        if not sub:
            return self.ckpt.spec
        return os.path.join(self.snapshot(), sub)

    def snapshot(self) -> str:
        if self._snapshot is None:
            def download() -> str:
                from huggingface_hub import snapshot_download

                return snapshot_download(self.ckpt.spec, **self.ckpt.hub_kwargs)

            self._snapshot = self.ckpt.guard("snapshot", download)
        return self._snapshot


def _hub_file(ckpt: Checkpoint, rel: str) -> str | None:
    """A hub checkpoint's file, or None when the repository lacks it or, offline, it is not cached."""
    from huggingface_hub import constants, try_to_load_from_cache

    cached = try_to_load_from_cache(ckpt.spec, rel, revision=ckpt.revision)
    if isinstance(cached, str):
        return cached
    if cached is not None or constants.HF_HUB_OFFLINE:   # cached as absent, or offline and not cached
        return None

    def fetch() -> str | None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

        try:
            return hf_hub_download(ckpt.spec, rel, revision=ckpt.revision)
        except (EntryNotFoundError, LocalEntryNotFoundError):
            return None

    return ckpt.guard(rel, fetch)


def _class(entry: Any) -> str:
    """Class name of a ``modules.json`` / router type path; '' when it is neither a sentence-transformers
    class nor one of lsr's modules."""
    t = entry if isinstance(entry, str) else ""
    if t.startswith(LSR_PACKAGE):
        name = t[len(LSR_PACKAGE):]
        return name if name in LSR_CLASSES else ""
    return t.rsplit(".", 1)[-1] if t.startswith(ST_PACKAGE) else ""


def _stack_text(types: list[str]) -> str:
    return " + ".join(t.rsplit(".", 1)[-1] if t.startswith((ST_PACKAGE, LSR_PACKAGE)) else t
                      for t in types) or "no modules"


def _refuse(src: _Source, types: list[str], why: str = "") -> IncompatibleModelError:
    return IncompatibleModelError(
        f"sentence-transformers checkpoint {src.label}: modules {_stack_text(types)} are not supported"
        + (f" ({why})" if why else "")
        + "; lsr reads MLMTransformer + SpladePooling (or lsr's SparTermPooling), lsr's Transformer + "
        "ImpactHead / WordBag stacks, and a Router whose routes are such stacks or a SparseStaticEmbedding")


def _lowercases(tokenizer_json: str | None) -> bool:
    """Whether a tokenizer.json's normaliser lower-cases."""
    if tokenizer_json is None:
        return False
    from tokenizers import Tokenizer

    norm = Tokenizer.from_file(tokenizer_json).normalizer
    return norm is not None and norm.normalize_str("AZ") == "az"


def _mlm_config(src: _Source, mlm_cls: str, mlm_dir: str, types: list[str]) -> dict:
    """The ``sentence_bert_config.json`` of an MLM Transformer folder, checked: fill-mask task, and no
    ``do_lower_case`` on a tokenizer that does not lower-case."""
    join = (lambda d, f: f"{d}/{f}" if d else f)
    sbc = src.json(join(mlm_dir, "sentence_bert_config.json"), required=False) or {}
    if not isinstance(sbc, dict):
        raise _refuse(src, types, "sentence_bert_config.json is not a JSON object")
    task = sbc.get("transformer_task", "fill-mask" if mlm_cls == "MLMTransformer" else None)
    if task != "fill-mask":
        raise _refuse(src, types, f"the Transformer's task is {task!r}, not fill-mask: no MLM logits")
    if sbc.get("do_lower_case") and not _lowercases(src.file(join(mlm_dir, "tokenizer.json"))):
        raise _refuse(src, types, "do_lower_case on a tokenizer that does not lower-case")
    return sbc


def _splade_side(src: _Source, mlm: tuple[str, str], pool: tuple[str, str], types: list[str],
                 role: str) -> SideConfig:
    """A ``splade`` side from an MLM module folder and a SpladePooling module folder."""
    (mlm_cls, mlm_dir), (_, pool_dir) = mlm, pool
    join = (lambda d, f: f"{d}/{f}" if d else f)
    sbc = _mlm_config(src, mlm_cls, mlm_dir, types)
    pc = src.json(join(pool_dir, "config.json"), required=False) or {}
    strategy = pc.get("pooling_strategy", "max")
    if strategy not in ("max", "sum"):
        raise _refuse(src, types, f"SpladePooling pooling_strategy {strategy!r}")
    activation = pc.get("activation_function", "relu")
    if activation not in SPLADE_ACTIVATIONS:
        raise _refuse(src, types, f"SpladePooling activation_function {activation!r}: lsr's SPLADE side "
                                  f"computes {' or '.join(SPLADE_ACTIVATIONS)}")
    return SideConfig(kind="splade", model=src.model_spec(mlm_dir), revision=_rev(src, mlm_dir),
                      pooling=strategy, activation=activation,
                      max_length=_transformer_length(src, mlm_dir, sbc, role))


def _sparterm_side(src: _Source, mlm: tuple[str, str], pool: tuple[str, str], types: list[str],
                   role: str) -> SideConfig:
    """A ``sparterm`` side (lexical gate) from an MLM module folder and a SparTermPooling module folder."""
    (mlm_cls, mlm_dir), (_, pool_dir) = mlm, pool
    sbc = _mlm_config(src, mlm_cls, mlm_dir, types)
    pc = _module_config(src, pool_dir, "SparTermPooling", types)
    pooling = pc.get("pooling")
    if pooling not in ("max", "sum"):
        raise _refuse(src, types, f"SparTermPooling pooling {pooling!r}")
    gate = pc.get("gate")
    if gate != "lexical":
        raise _refuse(src, types, f"SparTermPooling gate {gate!r}: lsr reads the lexical gate")
    tok = _checked_special_ids(src, types, "SparTermPooling", pc.get("special_token_ids"), mlm_dir, "SparTerm")
    dim, size = pc.get("embedding_dimension"), max(tok.get_vocab().values()) + 1
    if not _int(dim, 1) or dim != size:
        raise _refuse(src, types, f"SparTermPooling embedding_dimension {dim!r} is not the vocabulary size {size}")
    return SideConfig(kind="sparterm", model=src.model_spec(mlm_dir), revision=_rev(src, mlm_dir),
                      pooling=pooling, gate="lexical", max_length=_transformer_length(src, mlm_dir, sbc, role))


def _transformer_length(src: _Source, sub: str, sbc: dict, role: str) -> int:
    """ST's token limit of a Transformer module folder for one side (see the module docstring)."""
    join = (lambda f: f"{sub}/{f}" if sub else f)
    length = sbc.get("query_length" if role == "query" else "document_length")
    if length is None:
        length = sbc.get("max_seq_length")
    if length is None:
        tc = src.json(join("tokenizer_config.json"), required=False) or {}
        mc = src.json(join("config.json"), required=False) or {}
        length = tc.get("model_max_length")
        limit = mc.get("max_position_embeddings")
        if isinstance(limit, int) and limit != -1:
            length = limit if not isinstance(length, (int, float)) else min(length, limit)
    return _length(length)


def _static_side(src: _Source, sub: str, types: list[str]) -> SideConfig:
    """A ``tokens`` side with the static per-token weights of a SparseStaticEmbedding folder."""
    join = (lambda f: f"{sub}/{f}" if sub else f)
    cfg = src.json(join("config.json"), required=False) or {}
    path = cfg.get("path")
    if isinstance(path, str) and path.endswith(".json"):
        # a JSON table {token: weight}: in the module's folder, else at the checkpoint's root (idf.json)
        weights = path if os.path.isabs(path) else (src.file(join(path)) or src.file(path))
        if weights is None or not os.path.isfile(weights):
            raise _refuse(src, types, f"SparseStaticEmbedding in {sub or 'the root'} names the weight file "
                                      f"{path}, which the checkpoint does not have")
    else:
        weights = src.file(join("model.safetensors"))
    if weights is None or not os.path.isfile(weights):
        raise _refuse(src, types, f"SparseStaticEmbedding in {sub or 'the root'} has no model.safetensors "
                                  "(a pytorch_model.bin is not read: convert it to safetensors)")
    tc = src.json(join("tokenizer_config.json"), required=False) or {}
    return SideConfig(kind="tokens", model=src.model_spec(sub), revision=_rev(src, sub),
                      weights=weights, max_length=_length(tc.get("model_max_length")))


def _rev(src: _Source, sub: str) -> str | None:
    return src.ckpt.revision if not src.ckpt.local and not sub else None


def _length(value: Any) -> int:
    """ST's token limit as a SideConfig max_length (none given, or a "no limit" value: 100000)."""
    if value is None:
        return MAX_LENGTH_LIMIT
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise IncompatibleModelError(f"sentence-transformers checkpoint: max length {value!r} is not a number")
    return int(max(3, min(value, MAX_LENGTH_LIMIT)))


def _stack_side(src: _Source, stack: list[tuple[str, str, str]], role: str) -> SideConfig:
    """The ``role`` (doc or query) side for a list of (type, class, folder) modules, or an error naming them."""
    types = [t for t, _, _ in stack]
    classes = [c for _, c, _ in stack]
    if len(stack) == 2 and classes[1] == "ImpactHead" and classes[0] in ("Transformer", "ImpactTransformer"):
        return _impact_side(src, stack[0][2], stack[1][2], classes[0], types, role)
    if classes == ["WordBag"]:
        return _wordbag_side(src, stack[0][2], types)
    if len(stack) == 2 and classes[0] in MLM_CLASSES and classes[1] == "SpladePooling":
        return _splade_side(src, stack[0][1:], stack[1][1:], types, role)
    if len(stack) == 2 and classes[0] in MLM_CLASSES and classes[1] == "SparTermPooling":
        return _sparterm_side(src, stack[0][1:], stack[1][1:], types, role)
    if classes == ["SparseStaticEmbedding"]:
        return _static_side(src, stack[0][2], types)
    if not set(classes) & SPARSE_CLASSES:
        raise _refuse(src, types, "a dense embedding model: no MLM head with SpladePooling, so no sparse vectors")
    raise _refuse(src, types)


def _module_config(src: _Source, sub: str, what: str, types: list[str]) -> dict:
    join = (lambda f: f"{sub}/{f}" if sub else f)
    cfg = src.json(join("config.json"), required=False)
    if not isinstance(cfg, dict):
        raise _refuse(src, types, f"{what} in {sub or 'the root'} has no config.json object")
    return cfg


def _int(v: Any, lo: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _impact_side(src: _Source, trans_dir: str, head_dir: str, trans_cls: str, types: list[str],
                 role: str) -> SideConfig:
    """A ``unicoil`` or ``deepimpact`` side from a (Impact)Transformer folder and an ImpactHead folder."""
    join = (lambda d, f: f"{d}/{f}" if d else f)
    hc = _module_config(src, head_dir, "ImpactHead", types)
    kind = hc.get("kind")
    want = {"Transformer": "unicoil", "ImpactTransformer": "deepimpact"}[trans_cls]
    if kind != want:
        raise _refuse(src, types, f"ImpactHead kind {kind!r} after a {trans_cls}: expected {want!r}")
    sizes = hc.get("layer_sizes")
    if not isinstance(sizes, list) or not sizes or not all(_int(x, 1) for x in sizes) or sizes[-1] != 1:
        raise _refuse(src, types, f"ImpactHead layer_sizes {sizes!r}: positive integers ending in 1")
    dim = hc.get("embedding_dimension")
    if not _int(dim, 1):
        raise _refuse(src, types, f"ImpactHead embedding_dimension {dim!r}")
    pooling = hc.get("query_pooling" if role == "query" else "document_pooling", "max")
    if pooling not in ("max", "sum") or (kind == "deepimpact" and pooling != "max"):
        raise _refuse(src, types, f"ImpactHead {role} pooling {pooling!r}")
    head_file = src.file(join(head_dir, "model.safetensors"))
    if head_file is None:
        raise _refuse(src, types, f"ImpactHead in {head_dir or 'the root'} has no model.safetensors")
    sbc = src.json(join(trans_dir, "sentence_bert_config.json"), required=False) or {}
    if not isinstance(sbc, dict):
        raise _refuse(src, types, "sentence_bert_config.json is not a JSON object")
    task = sbc.get("transformer_task", "feature-extraction")
    if task != "feature-extraction":
        raise _refuse(src, types, f"the {trans_cls}'s task is {task!r}, not feature-extraction")
    if sbc.get("do_lower_case") and not _lowercases(src.file(join(trans_dir, "tokenizer.json"))):
        raise _refuse(src, types, "do_lower_case on a tokenizer that does not lower-case")
    model = src.model_spec(trans_dir)
    if kind == "unicoil":
        tok = _checked_special_ids(src, types, "ImpactHead", hc.get("special_token_ids"), trans_dir, "uniCOIL")
        size = max(tok.get_vocab().values()) + 1
        if dim != size:
            raise _refuse(src, types, f"ImpactHead embedding_dimension {dim} is not the vocabulary size {size}")
    else:
        buckets = sbc.get("num_buckets")
        if not _int(buckets, 2) or buckets != dim:
            raise _refuse(src, types, f"ImpactTransformer num_buckets {buckets!r} and ImpactHead "
                                      f"embedding_dimension {dim!r} must be the same number of word buckets")
    return SideConfig(kind=kind, model=model, revision=_rev(src, trans_dir), head_file=head_file,
                      head_prefix="mlp", max_length=_transformer_length(src, trans_dir, sbc, role),
                      **({"pooling": pooling} if kind == "unicoil" else {}))


def _checked_special_ids(src: _Source, types: list[str], module: str, special: Any, tok_dir: str, encoder: str):
    """The tokenizer of ``tok_dir``, once a module's ``special_token_ids`` are checked to be its special ids
    (which lsr's ``encoder`` side leaves out)."""
    if not isinstance(special, list) or not all(_int(i, 0) for i in special):
        raise _refuse(src, types, f"{module} special_token_ids {special!r}")
    tok = _tokenizer(src, tok_dir)
    if sorted(set(special)) != sorted(set(int(i) for i in tok.all_special_ids)):
        raise _refuse(src, types, f"{module} special_token_ids {special} are not the tokenizer's special "
                                  f"tokens {sorted(tok.all_special_ids)}, which lsr's {encoder} leaves out")
    return tok


def _tokenizer(src: _Source, sub: str):
    from .checkpoints import load_tokenizer

    return load_tokenizer(Checkpoint(src.model_spec(sub), _rev(src, sub), what="model"))


def _wordbag_side(src: _Source, sub: str, types: list[str]) -> SideConfig:
    """A ``words`` side (weight 1) from a WordBag folder (its config and tokenizer)."""
    cfg = _module_config(src, sub, "WordBag", types)
    words = cfg.get("max_words")
    if not _int(words, 3) or words > MAX_LENGTH_LIMIT:
        raise _refuse(src, types, f"WordBag max_words {words!r}: an integer in 3..{MAX_LENGTH_LIMIT}")
    if not _int(cfg.get("num_buckets"), 2):
        raise _refuse(src, types, f"WordBag num_buckets {cfg.get('num_buckets')!r}")
    return SideConfig(kind="words", model=src.model_spec(sub), revision=_rev(src, sub), max_length=words)


def st_config(ckpt: Checkpoint) -> EncoderConfig | None:
    """The encoder config of an ST sparse checkpoint (None when it has no ``modules.json``)."""
    src = _Source(ckpt)
    modules = src.json(MODULES_FILE, required=False)
    if modules is None:
        return None
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise IncompatibleModelError(f"{MODULES_FILE} of {src.label} is not a list of modules")
    modules = sorted(modules, key=lambda m: m.get("idx", 0) if isinstance(m.get("idx"), int) else 0)
    stack = [(str(m.get("type")), _class(m.get("type")), str(m.get("path") or "").strip("/")) for m in modules]
    _check_prompts(src, [t for t, _, _ in stack])
    name = os.path.basename(ckpt.spec.rstrip("/")) if ckpt.local else ckpt.spec
    if [c for _, c, _ in stack] == ["Router"]:
        doc, query = _router_sides(src, stack[0][2], stack[0][0])
    else:
        doc, query = _stack_side(src, stack, "doc"), _stack_side(src, stack, "query")
    what = {"splade": "SPLADE ({} pooling)", "tokens": "static token weights",
            "unicoil": "uniCOIL ({} pooling)", "deepimpact": "DeepImpact word impacts",
            "words": "their words (weight 1)", "sparterm": "SparTerm ({} pooling, lexical gate)"}
    def text(side: SideConfig) -> str:
        extra = ", log(1 + log(1 + ReLU))" if side.kind == "splade" and side.activation == "log1p_relu" else ""
        return what[side.kind].format(side.pooling) + extra

    desc = f"sentence-transformers SparseEncoder {ckpt.label}: documents {text(doc)}, queries {text(query)}"
    try:
        kind = doc.kind if doc.kind in ("unicoil", "deepimpact", "sparterm") else "splade"
        return EncoderConfig(name=name, type=kind, doc=doc, query=query, description=desc)
    except EncoderConfigError as e:   # e.g. routes writing different term spaces
        raise IncompatibleModelError(f"sentence-transformers checkpoint {src.label}: {e}") from None


def _check_prompts(src: _Source, types: list[str]) -> None:
    cfg = src.json("config_sentence_transformers.json", required=False) or {}
    prompts = cfg.get("prompts") if isinstance(cfg, dict) else None
    used = {k: v for k, v in (prompts or {}).items() if v} if isinstance(prompts, dict) else {}
    if used:
        raise _refuse(src, types, f"prompts {used!r} (lsr does not prepend prompts)")


def _router_sides(src: _Source, sub: str, router_type: str) -> tuple[SideConfig, SideConfig]:
    join = (lambda f: f"{sub}/{f}" if sub else f)
    rc = src.json(join("router_config.json"), required=False)
    if rc is None:
        rc = src.json(join("config.json"))
    if not isinstance(rc, dict) or not isinstance(rc.get("structure"), dict) or not isinstance(
            rc.get("types"), dict):
        raise _refuse(src, [router_type], "router_config.json has no 'types' and 'structure'")
    routes = rc["structure"]
    if set(routes) != {"query", "document"}:
        raise _refuse(src, [router_type], f"Router routes {sorted(routes)}, expected query and document")
    sides = {}
    for route in ("document", "query"):
        names = routes[route] if isinstance(routes[route], list) else []
        stack = [(str(rc["types"].get(n)), _class(rc["types"].get(n)), join(str(n))) for n in names]
        sides[route] = _stack_side(src, stack, "doc" if route == "document" else "query")
    return sides["document"], sides["query"]


__all__ = ["MODULES_FILE", "st_config"]
