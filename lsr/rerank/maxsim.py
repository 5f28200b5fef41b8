"""ColBERT-style late interaction (MaxSim) reranking.

A document's score for a query is ``sum over query tokens i of max over document
tokens j of q_i . d_j``, where the token vectors are a BERT-family encoder's last
hidden states, projected by a linear layer to a small dimension and L2-normalised.

Queries are augmented ColBERT's way: the text is tokenised to at most
``query_length - 1`` tokens, padded to that length, the query marker is inserted
right after ``[CLS]`` (so the query has exactly ``query_length`` tokens), and the
padding positions become the mask token. With ``attend_to_mask_tokens`` off (the
ColBERTv2 default) the mask positions are not attended to; their output vectors
take part in MaxSim all the same. ``query_length = 0`` turns augmentation off (the
query is its own tokens, up to the model's limit). Documents are tokenised to at
most ``doc_length`` tokens (marker included); tokens of the checkpoint's skiplist
(punctuation) and padding are left out of the max.

Two checkpoint layouts are read, each with the settings its own files hold:

* ``stanford`` (``colbert-ir/colbertv2.0``): ``config.json`` with the architecture
  ``HF_ColBERT``, weights with the encoder under ``bert.`` (the model type's base
  prefix) plus ``linear.weight`` (bias-free projection), and ``artifact.metadata``
  (JSON: ``query_maxlen``, ``doc_maxlen``, ``dim``, ``mask_punctuation``,
  ``attend_to_mask_tokens``, ``query_token_id`` / ``doc_token_id`` markers such as
  ``[unused0]`` / ``[unused1]``, ``similarity``, ``interaction``). Settings that
  the metadata lacks take the ColBERT library's defaults (32, 220, punctuation
  masked, no attention to mask tokens, ``[unused0]`` / ``[unused1]``).
* ``pylate`` (sentence-transformers module stack): ``modules.json`` listing a
  ``Transformer`` module and one or more ``Dense`` modules (each a directory with
  ``config.json`` -- ``in_features``, ``out_features``, ``bias``,
  ``activation_function``, optionally ``use_residual`` -- and its weights
  ``linear.weight`` [``linear.bias``, ``residual.weight``]), and
  ``config_sentence_transformers.json`` (``query_prefix`` / ``document_prefix``,
  tokens that PyLate adds to the vocabulary and inserts right after ``[CLS]``;
  ``query_length``, ``document_length``, ``attend_to_expansion_tokens``,
  ``skiplist_words``, ``do_query_expansion``). Missing settings take PyLate's
  defaults (``[Q] ``, ``[D] ``, 32, 180, no attention to expansion tokens,
  punctuation skipped, expansion on). As in sentence-transformers' ``Transformer``
  module, texts are stripped, and lower-cased where ``sentence_bert_config.json``
  says ``do_lower_case``.

What comes from libraries: the encoder and tokenizer (transformers ``AutoModel`` /
``AutoTokenizer``), the weight files (safetensors / torch). Written here: reading
the two layouts' settings, the query/document token layout, the projection and the
MaxSim reduction.

With ``doc_embeddings`` set, document token vectors come from a precomputed store
(:mod:`lsr.rerank.colbert_store`) looked up by doc id, and no document is encoded.
"""

from __future__ import annotations

import hashlib
import json
import os
import string
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from lsr.errors import InputError

from .base import Reranker, RerankerConfig, torch_dtype

LAYOUTS = ("auto", "stanford", "pylate")

# the ColBERT library's defaults (colbert/infra/config/settings.py), used for settings artifact.metadata lacks
_STANFORD_DEFAULTS = {"query_maxlen": 32, "doc_maxlen": 220, "mask_punctuation": True,
                      "attend_to_mask_tokens": False, "query_token_id": "[unused0]",
                      "doc_token_id": "[unused1]", "similarity": "cosine", "interaction": "colbert"}
# PyLate's defaults (pylate/models/colbert.py), used for settings config_sentence_transformers.json lacks
_PYLATE_DEFAULTS = {"query_prefix": "[Q] ", "document_prefix": "[D] ", "query_length": 32,
                    "document_length": 180, "attend_to_expansion_tokens": False,
                    "skiplist_words": list(string.punctuation), "do_query_expansion": True}
_ACTIVATIONS = ("torch.nn.modules.linear.Identity", "torch.nn.modules.activation.Tanh")


def _optional_int(name: str, v: Any, lo: int) -> None:
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < lo):
        raise InputError(f"MaxSimConfig: {name} must be an integer >= {lo}, got {v!r}")


def _optional_bool(name: str, v: Any) -> None:
    if v is not None and not isinstance(v, bool):
        raise InputError(f"MaxSimConfig: {name} must be true or false, got {v!r}")


@dataclass(frozen=True)
class MaxSimConfig(RerankerConfig):
    """Settings of the MaxSim reranker (the shared ones: :class:`RerankerConfig`).

    ``None`` means "as the checkpoint says" (module docstring). ``query_length``:
    query tokens after augmentation (0: no augmentation); ``doc_length``: the most
    document tokens, marker included; ``attend_to_mask_tokens``: whether the
    augmentation's mask tokens are attended to; ``query_expansion``: pad queries
    with mask tokens at all (PyLate's ``do_query_expansion``; off, the query is
    truncated to ``query_length`` without padding); ``layout``: ``auto``,
    ``stanford`` or ``pylate``; ``doc_embeddings``: a precomputed document
    embedding store (:func:`lsr.rerank.colbert_store.build_doc_embeddings`).
    """

    query_length: int | None = None
    doc_length: int | None = None
    attend_to_mask_tokens: bool | None = None
    query_expansion: bool | None = None
    layout: str = "auto"
    doc_embeddings: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _optional_int("query_length", self.query_length, 0)
        _optional_int("doc_length", self.doc_length, 1)
        _optional_bool("attend_to_mask_tokens", self.attend_to_mask_tokens)
        _optional_bool("query_expansion", self.query_expansion)
        if self.layout not in LAYOUTS:
            raise InputError(f"MaxSimConfig: unknown checkpoint layout {self.layout!r} "
                             f"(known: {', '.join(LAYOUTS)})")
        if self.doc_embeddings is not None and (not isinstance(self.doc_embeddings, str)
                                                or not self.doc_embeddings):
            raise InputError("MaxSimConfig: doc_embeddings must be the path of a document embedding store")


@dataclass(frozen=True)
class ColbertSettings:
    """The settings in force, resolved from the checkpoint's files and the config's overrides."""

    layout: str
    query_marker: str | None       # token string inserted after [CLS] (None: no marker)
    doc_marker: str | None
    query_length: int              # 0: no augmentation
    doc_length: int
    attend_to_mask_tokens: bool
    query_expansion: bool
    skiplist: tuple[int, ...]      # document token ids left out of the max
    lowercase: bool                # texts lower-cased before tokenising (PyLate's do_lower_case)
    strip: bool                    # texts stripped before tokenising (PyLate's Transformer module)
    dim: int
    sources: dict = field(default_factory=dict, compare=False)   # setting -> file it came from


# ----------------------------------------------------------------------------------------- loading
def _read_json(ckpt, name: str, required: bool = True):
    from lsr.encoders.errors import ModelLoadError
    from lsr.io import read_json

    path = ckpt.file(name, required=required)
    return None if path is None else read_json(path, ModelLoadError, f"{name} of {ckpt.what} {ckpt.label}")


def _setting_reader(values: dict, file: str, defaults: dict, default_label: str, sources: dict):
    """``get(key, name=None)``: ``values[key]`` when set, else ``defaults[key]``; records in ``sources``
    (under ``name`` or ``key``) which one it was."""
    def get(key, name=None):
        if values.get(key) is not None:
            sources[name or key] = f"{file} {key}"
            return values[key]
        sources[name or key] = default_label
        return defaults[key]

    return get


def detect_layout(ckpt) -> str:
    """``stanford`` or ``pylate`` from the checkpoint's files; InputError for neither."""
    if ckpt.file("modules.json", required=False) is not None:
        return "pylate"
    if ckpt.file("artifact.metadata", required=False) is not None:
        return "stanford"
    if ckpt.file("config.json", required=False) is not None and "HF_ColBERT" in ckpt.architectures:
        return "stanford"
    raise InputError(f"{ckpt.label} is neither a Stanford ColBERT checkpoint (config.json with HF_ColBERT, "
                     "artifact.metadata) nor a PyLate / sentence-transformers one (modules.json with a "
                     "Dense module)")


def _tensors(paths: list[str], keys: Sequence[str], where: str) -> dict:
    """The named tensors of a weight file (safetensors read key by key; torch files in full)."""
    from lsr.encoders.checkpoints import read_tensors
    from lsr.encoders.errors import ModelLoadError

    out: dict = {}
    for path in paths:
        if path.endswith(".safetensors"):
            from safetensors import safe_open

            try:
                with safe_open(path, framework="pt", device="cpu") as f:
                    names = set(f.keys())
                    for k in keys:
                        if k in names and k not in out:
                            out[k] = f.get_tensor(k)
            except Exception as e:  # a damaged file
                raise ModelLoadError(f"{path}: cannot read weights ({type(e).__name__}: {e})") from None
        else:
            t = read_tensors(path)
            out.update({k: t[k] for k in keys if k in t and k not in out})
    missing = [k for k in keys if k not in out]
    if missing:
        raise InputError(f"{where}: the weights lack {', '.join(missing)}")
    return out


def _check_loading(info: dict, where: str) -> None:
    missing = [k for k in info.get("missing_keys", []) if "pooler" not in k]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"{where}: the encoder weights lack {missing[0]}{more}; not a checkpoint of this layout?")


class _Projection:
    """A stack of linear layers (weight, optional bias, activation, optional residual)."""

    def __init__(self, layers: list[dict]) -> None:
        self.layers = layers

    @property
    def dim(self) -> int:
        return int(self.layers[-1]["weight"].shape[0])

    def to(self, device, dtype) -> _Projection:
        moved = []
        for layer in self.layers:
            moved.append({k: (v.to(device=device, dtype=dtype) if hasattr(v, "to") else v)
                          for k, v in layer.items()})
        return _Projection(moved)

    def __call__(self, x):
        import torch

        for layer in self.layers:
            y = torch.nn.functional.linear(x, layer["weight"], layer.get("bias"))
            if layer["activation"] == "torch.nn.modules.activation.Tanh":
                y = torch.tanh(y)
            if layer.get("use_residual"):
                y = y + (torch.nn.functional.linear(x, layer["residual"]) if "residual" in layer else x)
            x = y
        return x


def _model_kwargs(ckpt, subfolder: str = "") -> dict:
    kw = dict(ckpt.hub_kwargs)
    if subfolder:
        if ckpt.local:
            return {}
        kw["subfolder"] = subfolder
    return kw


def _load_backbone(ckpt, subfolder: str = ""):
    from transformers import AutoModel, AutoTokenizer

    spec = os.path.join(ckpt.spec, subfolder) if (ckpt.local and subfolder) else ckpt.spec
    kw = _model_kwargs(ckpt, subfolder)
    model, info = ckpt.guard("encoder", lambda: AutoModel.from_pretrained(spec, output_loading_info=True, **kw))
    _check_loading(info, ckpt.label)
    tok = ckpt.guard("tokenizer", lambda: AutoTokenizer.from_pretrained(spec, **kw))
    if not getattr(tok, "is_fast", False):
        raise InputError(f"{ckpt.label}: needs a fast tokenizer (tokenizer.json)")
    return model, tok


def _token_id(tok, token: str, what: str, where: str) -> int:
    vocab = tok.get_vocab()
    if token not in vocab:
        raise InputError(f"{where}: the tokenizer has no {what} token {token!r}")
    return int(vocab[token])


def _load_stanford(ckpt, cfg: MaxSimConfig):
    meta = _read_json(ckpt, "artifact.metadata", required=False)
    sources = {}
    if meta is None:
        meta = {}
    elif isinstance(meta, dict) and isinstance(meta.get("config"), dict):
        meta = meta["config"]
    if not isinstance(meta, dict):
        raise InputError(f"{ckpt.label}: artifact.metadata is not a JSON object")

    get = _setting_reader(meta, "artifact.metadata", _STANFORD_DEFAULTS, "ColBERT default", sources)

    if get("similarity") != "cosine":
        raise InputError(f"{ckpt.label}: similarity {meta.get('similarity')!r} is not supported (only cosine)")
    if get("interaction") != "colbert":
        raise InputError(f"{ckpt.label}: interaction {meta.get('interaction')!r} is not supported "
                         "(only colbert)")
    model, tok = _load_backbone(ckpt)
    w = _tensors(ckpt.weight_files(), ["linear.weight"], ckpt.label)["linear.weight"]
    if w.ndim != 2 or w.shape[1] != model.config.hidden_size:
        raise InputError(f"{ckpt.label}: linear.weight has shape {tuple(w.shape)}, the encoder's hidden size "
                         f"is {model.config.hidden_size}")
    if meta.get("dim") is not None and meta["dim"] != w.shape[0]:
        raise InputError(f"{ckpt.label}: artifact.metadata says dim {meta['dim']}, linear.weight gives "
                         f"{w.shape[0]}")
    proj = _Projection([{"weight": w.float(), "activation": "torch.nn.modules.linear.Identity"}])
    qm, dm = get("query_token_id"), get("doc_token_id")
    _token_id(tok, qm, "query marker", ckpt.label)
    _token_id(tok, dm, "document marker", ckpt.label)
    skip: set[int] = set()
    if get("mask_punctuation"):
        for sym in string.punctuation:   # ColBERT's skiplist: the first token of each punctuation symbol
            ids = tok.encode(sym, add_special_tokens=False)
            if ids:
                skip.add(int(ids[0]))
    raw = {"query_length": get("query_maxlen", "query_length"), "doc_length": get("doc_maxlen", "doc_length"),
           "attend_to_mask_tokens": get("attend_to_mask_tokens"), "query_expansion": True}
    sources["query_expansion"] = "ColBERT (always)"
    files = [ckpt.file("config.json"), *ckpt.weight_files(), ckpt.file("artifact.metadata", required=False),
             ckpt.file("tokenizer.json", required=False), ckpt.file("vocab.txt", required=False)]
    return model, tok, proj, dict(layout="stanford", query_marker=qm, doc_marker=dm, skiplist=skip,
                                  lowercase=False, strip=False, raw=raw, sources=sources, files=files)


def _load_pylate(ckpt, cfg: MaxSimConfig):
    modules = _read_json(ckpt, "modules.json")
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise InputError(f"{ckpt.label}: modules.json is not a list of modules")
    modules = sorted(modules, key=lambda m: m.get("idx", 0))
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if not kinds or kinds[0] != "Transformer" or "Dense" not in kinds:
        raise InputError(f"{ckpt.label}: modules.json lists {', '.join(kinds) or 'nothing'}; a PyLate ColBERT "
                         "checkpoint is a Transformer module followed by Dense modules")
    other = [k for k in kinds[1:] if k not in ("Dense", "Normalize")]
    if other:
        raise InputError(f"{ckpt.label}: modules.json lists a {other[0]} module; a PyLate ColBERT checkpoint "
                         "has only Transformer and Dense modules (is it a single-vector model?)")
    tpath = str(modules[0].get("path", "") or "")
    model, tok = _load_backbone(ckpt, tpath)
    sbert = _read_json(ckpt, os.path.join(tpath, "sentence_bert_config.json") if tpath
                       else "sentence_bert_config.json", required=False) or {}
    files = [ckpt.file(os.path.join(tpath, "config.json") if tpath else "config.json")]
    layers = []
    width = model.config.hidden_size
    for m in modules:
        if str(m.get("type", "")).rsplit(".", 1)[-1] != "Dense":
            continue
        d = str(m.get("path", ""))
        where = f"{ckpt.label} module {d}"
        conf = _read_json(ckpt, f"{d}/config.json")
        if not isinstance(conf, dict):
            raise InputError(f"{where}: config.json is not a JSON object")
        act = conf.get("activation_function")
        if act not in _ACTIVATIONS:
            raise InputError(f"{where}: activation_function {act!r} is not supported "
                             f"(supported: {', '.join(_ACTIVATIONS)})")
        bias = bool(conf.get("bias", True))
        residual = bool(conf.get("use_residual", False))
        n_in, n_out = conf.get("in_features"), conf.get("out_features")
        if n_in != width:
            raise InputError(f"{where}: in_features {n_in!r}, but the layer below gives {width}")
        wpath = ckpt.file(f"{d}/model.safetensors", required=False) or ckpt.file(f"{d}/pytorch_model.bin",
                                                                                 required=False)
        if wpath is None:
            raise InputError(f"{where}: no weights (model.safetensors or pytorch_model.bin)")
        files.append(wpath)
        keys = ["linear.weight"] + (["linear.bias"] if bias else []) \
            + (["residual.weight"] if residual and n_in != n_out else [])
        t = _tensors([wpath], keys, where)
        if "linear.weight" not in t or tuple(t["linear.weight"].shape) != (n_out, n_in):
            raise InputError(f"{where}: linear.weight missing or not of shape ({n_out}, {n_in})")
        layer = {"weight": t["linear.weight"].float(), "activation": act, "use_residual": residual}
        if bias:
            layer["bias"] = t["linear.bias"].float()
        if "residual.weight" in t:
            layer["residual"] = t["residual.weight"].float()
        layers.append(layer)
        width = n_out
    st = _read_json(ckpt, "config_sentence_transformers.json", required=False) or {}
    if not isinstance(st, dict):
        raise InputError(f"{ckpt.label}: config_sentence_transformers.json is not a JSON object")
    sources = {}

    get = _setting_reader(st, "config_sentence_transformers.json", _PYLATE_DEFAULTS, "PyLate default", sources)

    qm, dm = get("query_prefix") or None, get("document_prefix") or None
    for marker, what in ((qm, "query prefix"), (dm, "document prefix")):
        if marker is not None:
            i = _token_id(tok, marker, what, ckpt.label)
            if i >= model.get_input_embeddings().num_embeddings:
                raise InputError(f"{ckpt.label}: the {what} token {marker!r} has no embedding")
    words = get("skiplist_words")
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise InputError(f"{ckpt.label}: skiplist_words must be a list of strings")
    # PyLate maps each skiplist word with convert_tokens_to_ids (an unknown word gives the unknown token's id)
    skip = {int(i) for i in (tok.convert_tokens_to_ids(w) for w in words) if i is not None}
    raw = {"query_length": get("query_length"), "doc_length": get("document_length", "doc_length"),
           "attend_to_mask_tokens": get("attend_to_expansion_tokens", "attend_to_mask_tokens"),
           "query_expansion": get("do_query_expansion", "query_expansion")}
    for p in ("config_sentence_transformers.json", "modules.json", "tokenizer.json"):
        files.append(ckpt.file(os.path.join(tpath, p) if (tpath and p == "tokenizer.json") else p,
                               required=False))
    files += _backbone_weight_files(ckpt, tpath)
    return model, tok, _Projection(layers), dict(
        layout="pylate", query_marker=qm, doc_marker=dm, skiplist=skip,
        lowercase=bool(sbert.get("do_lower_case", False)), strip=True, raw=raw, sources=sources, files=files)


def _backbone_weight_files(ckpt, sub: str) -> list[str]:
    for name in ("model.safetensors", "pytorch_model.bin"):
        p = ckpt.file(f"{sub}/{name}" if sub else name, required=False)
        if p is not None:
            return [p]
    return []


def _hash_files(paths: Sequence[str | None]) -> str:
    h = hashlib.sha256()
    for path in sorted({p for p in paths if p}):
        h.update(os.path.basename(path).encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------- reranker
class MaxSimReranker(Reranker):
    """ColBERT-style MaxSim over a BERT-family encoder (module docstring)."""

    name = "maxsim"
    config_class = MaxSimConfig

    def __init__(self, config: MaxSimConfig) -> None:
        if not isinstance(config, MaxSimConfig):
            raise InputError(f"MaxSimReranker takes a MaxSimConfig, not a {type(config).__name__}")
        super().__init__(config)
        import torch

        from lsr.encoders.checkpoints import Checkpoint

        self.checkpoint = Checkpoint(config.model, config.revision, what="ColBERT checkpoint")
        layout = detect_layout(self.checkpoint) if config.layout == "auto" else config.layout
        loader = {"stanford": _load_stanford, "pylate": _load_pylate}[layout]
        model, tok, proj, info = loader(self.checkpoint, config)
        self.tokenizer = tok
        self.tokenizer.padding_side = "right"
        raw = info["raw"]
        sources = dict(info["sources"])
        chosen = {}
        for key in ("query_length", "doc_length", "attend_to_mask_tokens", "query_expansion"):
            v = getattr(config, key)
            if v is not None:
                sources[key] = "config"
            chosen[key] = raw[key] if v is None else v
        for key in ("query_length", "doc_length"):
            v = chosen[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InputError(f"{self.checkpoint.label}: {key} {v!r} from {sources.get(key)} is not a "
                                 "non-negative integer")
        for key in ("attend_to_mask_tokens", "query_expansion"):
            if not isinstance(chosen[key], bool):
                raise InputError(f"{self.checkpoint.label}: {key} {chosen[key]!r} from {sources.get(key)} "
                                 "is not true or false")
        limit = self._model_limit(model, tok)
        marker_q = 1 if info["query_marker"] else 0
        marker_d = 1 if info["doc_marker"] else 0
        least_q = tok.num_special_tokens_to_add() + marker_q + 1
        least_d = tok.num_special_tokens_to_add() + marker_d + 1
        q = chosen["query_length"]
        if q != 0 and not (least_q <= q <= limit):
            raise InputError(f"query_length {q} (from {sources['query_length']}) must be 0 or in "
                             f"[{least_q}, {limit}] for {self.checkpoint.label}")
        if not (least_d <= chosen["doc_length"] <= limit):
            raise InputError(f"doc_length {chosen['doc_length']} (from {sources['doc_length']}) must be in "
                             f"[{least_d}, {limit}] for {self.checkpoint.label}")
        if q == 0:
            chosen["query_expansion"] = False
        if not chosen["query_expansion"]:
            chosen["attend_to_mask_tokens"] = False
        self.mask_id = tok.mask_token_id if tok.mask_token_id is not None else tok.eos_token_id
        if chosen["query_expansion"] and self.mask_id is None:
            raise InputError(f"{self.checkpoint.label}: the tokenizer has no mask (or end) token to augment "
                             "queries with; set query_length: 0")
        self.limit = limit
        self.settings = ColbertSettings(
            layout=layout, query_marker=info["query_marker"], doc_marker=info["doc_marker"],
            query_length=q, doc_length=chosen["doc_length"],
            attend_to_mask_tokens=chosen["attend_to_mask_tokens"],
            query_expansion=chosen["query_expansion"], skiplist=tuple(sorted(info["skiplist"])),
            lowercase=info["lowercase"], strip=info["strip"], dim=proj.dim, sources=sources)
        self.query_marker_id = (tok.convert_tokens_to_ids(info["query_marker"])
                                if info["query_marker"] else None)
        self.doc_marker_id = tok.convert_tokens_to_ids(info["doc_marker"]) if info["doc_marker"] else None
        try:
            self.device = torch.device(config.device)
            self.dtype = torch_dtype(config.dtype)
            self.model = model.to(device=self.device, dtype=self.dtype).eval()
        except (RuntimeError, AssertionError, ValueError) as e:
            from lsr.encoders.errors import DeviceError

            raise DeviceError(f"cannot use device {config.device!r} with {config.dtype}: {e}") from None
        self.projection = proj.to(self.device, self.dtype)
        self._files = info["files"]
        self._identity: dict | None = None
        self.stats = {"forward_passes": 0, "sequences_encoded": 0, "tokens_processed": 0,
                      "docs_from_store": 0}
        self.store = None
        self._ids_mode = False      # True inside rerank()/score_ids() with a store: candidates are doc ids
        if config.doc_embeddings is not None:
            from .colbert_store import DocEmbeddings

            self.store = DocEmbeddings.open(config.doc_embeddings)
            self.store.check_model(self)

    # ------------------------------------------------------------------------------- identity
    @staticmethod
    def _model_limit(model, tok) -> int:
        limit = int(getattr(model.config, "max_position_embeddings", 512) or 512)
        tl = getattr(tok, "model_max_length", None)
        if isinstance(tl, int) and 0 < tl < 1_000_000:
            limit = min(limit, tl)
        return limit

    def doc_identity(self) -> dict:
        """What decides the document vectors: model files, layout and document settings (stores check it)."""
        if self._identity is None:
            ck = self.checkpoint
            ident = {"model": ck.spec, "revision": ck.commit() if not ck.local else None,
                     "sha256": _hash_files(self._files) if ck.local else None}
            s = self.settings
            ident.update(layout=s.layout, doc_marker=s.doc_marker, doc_length=s.doc_length,
                         skiplist=hashlib.sha256(json.dumps(list(s.skiplist)).encode()).hexdigest(),
                         lowercase=s.lowercase, strip=s.strip, dim=s.dim)
            self._identity = ident
        return self._identity

    def describe(self) -> dict:
        s = asdict(self.settings)
        s["skiplist"] = len(self.settings.skiplist)
        return {**super().describe(), "resolved": s}

    # ------------------------------------------------------------------------------- tokenising
    def _prepare(self, text: str) -> str:
        if not isinstance(text, str):
            raise InputError(f"MaxSim: a text is a {type(text).__name__}, not a string")
        if self.settings.strip:
            text = text.strip()
        if self.settings.lowercase:
            text = text.lower()
        return text

    def tokenize(self, texts: Sequence[str], is_query: bool):
        """``(input_ids, attention_mask, keep)``: the ids and masks given to the encoder, and which
        positions' vectors take part in MaxSim."""
        import torch

        s = self.settings
        marker = self.query_marker_id if is_query else self.doc_marker_id
        m = 1 if marker is not None else 0
        if is_query:
            length = s.query_length if s.query_length else self.limit
            pad = "max_length" if s.query_expansion else "longest"
        else:
            length, pad = s.doc_length, "longest"
        enc = self.tokenizer([self._prepare(t) for t in texts], padding=pad, truncation=True,
                             max_length=length - m, return_tensors="pt", add_special_tokens=True)
        ids, att = enc["input_ids"], enc["attention_mask"]
        if marker is not None:
            n = ids.shape[0]
            ids = torch.cat([ids[:, :1], torch.full((n, 1), marker, dtype=ids.dtype), ids[:, 1:]], dim=1)
            att = torch.cat([att[:, :1], torch.ones((n, 1), dtype=att.dtype), att[:, 1:]], dim=1)
        if is_query and s.query_expansion:
            ids = ids.masked_fill(att == 0, self.mask_id)
            keep = torch.ones_like(att, dtype=torch.bool)
            if s.attend_to_mask_tokens:
                att = torch.ones_like(att)
        else:
            keep = att.bool()
            if not is_query and len(s.skiplist):
                keep &= ~torch.isin(ids, torch.tensor(s.skiplist, dtype=ids.dtype))
        return ids, att, keep

    # ------------------------------------------------------------------------------- encoding
    def _encode(self, texts: Sequence[str], is_query: bool) -> list[np.ndarray]:
        """Normalised token vectors (float32, one ``[tokens, dim]`` array per text)."""
        import torch

        for t in texts:
            if not isinstance(t, str):
                raise InputError(f"MaxSim: a {'query' if is_query else 'document'} text is a "
                                 f"{type(t).__name__}, not a string")
        out: list[np.ndarray | None] = [None] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
        bs = self.config.batch_size
        with torch.inference_mode():
            for b in range(0, len(order), bs):
                idx = order[b:b + bs]
                ids, att, keep = self.tokenize([texts[i] for i in idx], is_query)
                ids, att = ids.to(self.device), att.to(self.device)
                hidden = self.model(input_ids=ids, attention_mask=att).last_hidden_state
                vec = torch.nn.functional.normalize(self.projection(hidden).float(), p=2, dim=-1).cpu()
                self.stats["forward_passes"] += 1
                self.stats["sequences_encoded"] += len(idx)
                self.stats["tokens_processed"] += int(ids.numel())
                for row, i in enumerate(idx):
                    out[i] = vec[row][keep[row]].numpy()
        return out  # type: ignore[return-value]

    def encode_queries(self, texts: Sequence[str]) -> list[np.ndarray]:
        return self._encode(list(texts), True)

    def encode_docs(self, texts: Sequence[str]) -> list[np.ndarray]:
        return self._encode(list(texts), False)

    # ------------------------------------------------------------------------------- scoring
    @staticmethod
    def maxsim(query: np.ndarray, docs: Sequence[np.ndarray]) -> np.ndarray:
        """``sum_i max_j q_i . d_j`` of one query's vectors against each document's (float64)."""
        import torch

        if not len(docs):
            return np.zeros(0, dtype=np.float64)
        q = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32))
        lengths = [len(d) for d in docs]
        width = max(lengths)
        dm = np.zeros((len(docs), width, q.shape[1]), dtype=np.float32)
        mask = np.zeros((len(docs), width), dtype=bool)
        for i, d in enumerate(docs):
            dm[i, :len(d)] = d
            mask[i, :len(d)] = True
        sim = torch.einsum("qk,nlk->nql", q, torch.from_numpy(dm))
        sim = sim.masked_fill(~torch.from_numpy(mask)[:, None, :], float("-inf"))
        return sim.max(dim=2).values.sum(dim=1).double().numpy()

    def score(self, query: str, docs: Sequence[str]) -> np.ndarray:
        return self.score_many([(query, docs)])[0]

    def score_many(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[np.ndarray]:
        """Scores of several queries' candidates; each distinct text is encoded once. In store mode
        (inside :meth:`rerank` with ``doc_embeddings`` set) the candidates are doc ids."""
        queries = list(dict.fromkeys(q for q, _ in items))
        qvec = dict(zip(queries, self.encode_queries(queries)))
        if self._ids_mode:
            ids = list(dict.fromkeys(d for _, ds in items for d in ds))
            dvec = dict(zip(ids, self.store.get(ids)))
            self.stats["docs_from_store"] += len(ids)
        else:
            texts = list(dict.fromkeys(d for _, ds in items for d in ds))
            dvec = dict(zip(texts, self.encode_docs(texts)))
        return [self.maxsim(qvec[q], [dvec[d] for d in ds]) for q, ds in items]

    def score_ids(self, query: str, doc_ids: Sequence[str]) -> np.ndarray:
        """Scores of documents of the precomputed store (``doc_embeddings``), by id."""
        if self.store is None:
            raise InputError("score_ids needs doc_embeddings (a precomputed document embedding store)")
        self.store.check_ids(doc_ids)
        self._ids_mode = True
        try:
            return self.score_many([(query, list(doc_ids))])[0]
        finally:
            self._ids_mode = False

    def rerank(self, queries, results, docs=None, depth=None, *, progress=False):
        """:meth:`Reranker.rerank`; with ``doc_embeddings`` set the documents' vectors come from the
        store (``docs`` is not read; a doc id the store lacks is an InputError naming it)."""
        if self.store is None:
            if docs is None:
                raise InputError("MaxSim reranking needs the documents' text (docs) or doc_embeddings")
            return super().rerank(queries, results, docs, depth, progress=progress)
        self._ids_mode = True
        try:
            return super().rerank(queries, results, self.store.id_source(), depth, progress=progress)
        finally:
            self._ids_mode = False


__all__ = ["LAYOUTS", "ColbertSettings", "MaxSimConfig", "MaxSimReranker", "detect_layout"]
