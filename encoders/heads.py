"""Backbones and sparse heads, loaded from public checkpoint formats, and the pooling kernels.

* MLM models (SPLADE, SparTerm): ``AutoModelForMaskedLM.from_pretrained``; the
  model is split into backbone, head transform and vocabulary projection
  (:class:`MLMParts`) so that pooling can run fused over vocabulary chunks.
* Head models (uniCOIL, DeepImpact): the backbone (``AutoModel`` of the
  checkpoint's config) and an MLP head read from a state dict
  (:class:`MLPHead`): either the checkpoint's own weight file or a separate
  ``head_file``. Keys are matched by suffix, so ``tok_proj.weight``,
  ``coil_encoder.tok_proj.weight`` and ``impact_score_encoder.0.weight`` are
  all found.

CPU efficiency of SPLADE's max pooling (:func:`fused_max_pool`): since
``log(1 + ReLU(x))`` is monotone, ``max_i log1p(relu(l_i)) = log1p(relu(max_i
l_i))``, and the bias is added after the max (``max_i (x_i + b) = max_i x_i +
b`` exactly, in floating point too). The projection is computed only for the
non-padding rows of each text, in vocabulary chunks small enough to stay in
cache, each reduced by max right away; the batch x length x vocabulary tensor
is never built and the activation runs once per vocabulary entry per text.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from .checkpoints import Checkpoint, read_tensors
from .errors import IncompatibleModelError, ModelLoadError, one_line

_CACHE: dict[tuple, Any] = {}
_CACHE_LOCK = threading.Lock()


def cached(key: tuple, build):
    """Load once per key (models are shared between sides and encoders)."""
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    value = build()
    with _CACHE_LOCK:
        return _CACHE.setdefault(key, value)


def clear_model_cache() -> None:
    """Forget every loaded model (frees memory; later loads read the checkpoints again)."""
    with _CACHE_LOCK:
        _CACHE.clear()


# --------------------------------------------------------------------------- MLM models
class MLMParts:
    """A ``*ForMaskedLM`` model split into backbone, head transform and vocabulary projection.

    Supported families: BERT (``cls.predictions``) and DistilBERT
    (``vocab_transform``/``vocab_layer_norm``/``vocab_projector``). Other MLM
    architectures run through :attr:`generic` (full logits, still chunked per
    text and masked, never padded across texts).
    """

    def __init__(self, model) -> None:
        import torch

        self.model = model
        self.generic = False
        if hasattr(model, "cls") and hasattr(model.cls, "predictions"):
            self.backbone = model.base_model
            self.transform = model.cls.predictions.transform
            dec = model.cls.predictions.decoder
        elif all(hasattr(model, a) for a in ("vocab_transform", "vocab_layer_norm", "vocab_projector")):
            self.backbone = model.base_model
            vt, act, ln = model.vocab_transform, model.activation, model.vocab_layer_norm

            def transform(x):
                return ln(act(vt(x)))

            self.transform = transform
            dec = model.vocab_projector
        else:
            self.backbone = None
            self.transform = None
            dec = model.get_output_embeddings()
            self.generic = True
        if dec is None or not hasattr(dec, "weight"):
            raise IncompatibleModelError(f"{type(model).__name__}: no vocabulary projection (output embeddings)")
        self.weight = dec.weight.detach()
        bias = getattr(dec, "bias", None)
        self.bias = bias.detach() if bias is not None else torch.zeros(
            self.weight.shape[0], dtype=self.weight.dtype, device=self.weight.device)
        self.vocab_size = int(self.weight.shape[0])

    def hidden(self, input_ids, attention_mask):
        """Last hidden states ``[B, L, H]`` of the backbone."""
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask)[0]

    def logits(self, input_ids, attention_mask):
        """Full MLM logits ``[B, L, V]`` (the generic path)."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def needs_remote_code(ckpt: Checkpoint) -> bool:
    """Whether a checkpoint's model class exists only as code in a repository: its ``config.json`` has an
    ``auto_map`` and a ``model_type`` that transformers does not know."""
    cfg = ckpt.config_dict
    if not cfg.get("auto_map"):
        return False
    from transformers import CONFIG_MAPPING

    return cfg.get("model_type") not in CONFIG_MAPPING


def load_mlm(ckpt: Checkpoint, device, dtype, trust_remote_code: bool = False) -> MLMParts:
    """Load a ``*ForMaskedLM`` checkpoint; a checkpoint without an MLM head is an error.

    A checkpoint whose model class is code in a repository (:func:`needs_remote_code`) loads only with
    ``trust_remote_code`` (transformers then imports and runs that code); without it, it is refused.
    """
    arch = ckpt.architectures
    if arch and not any(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in arch):
        raise IncompatibleModelError(
            f"{ckpt.what} {ckpt.label} is a {', '.join(arch)} checkpoint without an MLM head; "
            "SPLADE and SparTerm need a *ForMaskedLM checkpoint (MLM logits over the vocabulary)")
    if not trust_remote_code and needs_remote_code(ckpt):
        mapped = ckpt.config_dict["auto_map"]
        target = mapped.get("AutoModelForMaskedLM") if isinstance(mapped, dict) else None
        raise IncompatibleModelError(
            f"{ckpt.what} {ckpt.label}: its model type {ckpt.config_dict.get('model_type')!r} is code from the "
            f"repository ({target or 'auto_map in config.json'}), which lsr runs only when the side sets "
            "trust_remote_code: true (in a preset; it executes that Python code)")

    def build() -> MLMParts:
        def load():
            from transformers import AutoModelForMaskedLM

            kwargs = {"trust_remote_code": True} if trust_remote_code else {}
            return AutoModelForMaskedLM.from_pretrained(ckpt.spec, output_loading_info=True, **kwargs,
                                                        **ckpt.hub_kwargs)

        model, info = ckpt.guard("MLM model", load)
        prefix = getattr(model, "base_model_prefix", "")
        missing = [k for k in info.get("missing_keys", []) if not k.startswith(prefix + ".")]
        if missing:
            raise IncompatibleModelError(
                f"{ckpt.what} {ckpt.label} has no trained MLM head (missing {', '.join(sorted(missing)[:3])}"
                f"{', ...' if len(missing) > 3 else ''}); SPLADE and SparTerm need a *ForMaskedLM checkpoint")
        model.eval().to(device=device, dtype=dtype)
        return MLMParts(model)

    return cached(("mlm", ckpt.spec, ckpt.revision, str(device), str(dtype), bool(trust_remote_code)), build)


# --------------------------------------------------------------------------- head models
class MLPHead:
    """A stack of ``Linear`` layers, each followed by ReLU (uniCOIL: one layer; DeepImpact: two)."""

    def __init__(self, layers: list) -> None:
        self.layers = layers

    def __call__(self, x):
        import torch

        for layer in self.layers:
            x = torch.relu(layer(x))
        return x

    def to(self, device, dtype) -> MLPHead:
        self.layers = [layer.to(device=device, dtype=dtype) for layer in self.layers]
        return self

    @property
    def shape(self) -> list[list[int]]:
        return [[int(layer.in_features), int(layer.out_features)] for layer in self.layers]

    @classmethod
    def from_state_dict(cls, sd: dict, prefix: str, hidden_size: int, source: str) -> MLPHead:
        """Find ``{prefix}.weight`` or ``{prefix}.{i}.weight`` (any leading module path) in ``sd``."""
        import re

        import torch

        single = re.compile(rf"^(?:.*\.)?{re.escape(prefix)}\.weight$")
        seq = re.compile(rf"^(?:.*\.)?{re.escape(prefix)}\.(\d+)\.weight$")
        names: list[tuple[int, str]] = []
        for key in sd:
            m = seq.match(key)
            if m:
                names.append((int(m.group(1)), key))
            elif single.match(key):
                names.append((0, key))
        if not names:
            near = [k for k in sd if not k.split(".")[0] in ("bert", "embeddings", "encoder", "pooler")][:5]
            raise IncompatibleModelError(
                f"{source}: no head weights named {prefix}.weight or {prefix}.<i>.weight"
                + (f" (found e.g. {', '.join(near)})" if near else ""))
        names.sort()
        layers = []
        in_dim = hidden_size
        for _, wkey in names:
            w = sd[wkey]
            bkey = wkey[: -len("weight")] + "bias"
            b = sd.get(bkey)
            if w.ndim != 2 or w.shape[1] != in_dim or (b is not None and tuple(b.shape) != (w.shape[0],)):
                raise IncompatibleModelError(
                    f"{source}: head weight {wkey} has shape {tuple(w.shape)}, expected [*, {in_dim}]")
            layer = torch.nn.Linear(int(w.shape[1]), int(w.shape[0]), bias=b is not None)
            with torch.no_grad():
                layer.weight.copy_(w.float())
                if b is not None:
                    layer.bias.copy_(b.float())
            layers.append(layer.eval())
            in_dim = int(w.shape[0])
        if in_dim != 1:
            raise IncompatibleModelError(f"{source}: the head must end in one output per token, ends in {in_dim}")
        return cls(layers)


class HeadModel:
    """A backbone (``AutoModel``) and an :class:`MLPHead` on its last hidden states."""

    def __init__(self, backbone, head: MLPHead) -> None:
        self.backbone = backbone
        self.head = head

    def hidden(self, input_ids, attention_mask):
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask)[0]


def _backbone_prefix(sd: dict) -> str | None:
    for key in sd:
        if key.endswith("embeddings.word_embeddings.weight"):
            return key[: -len("embeddings.word_embeddings.weight")]
    return None


def _from_config_without_init(auto_cls, config):
    """Build a model skipping random weight initialisation (all weights are loaded right after)."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers: initialise normally (slower, same result)
        return auto_cls.from_config(config)
    with no_init_weights():
        return auto_cls.from_config(config)


def load_head_model(ckpt: Checkpoint, head_file: str | None, head_prefix: str, device, dtype) -> HeadModel:
    """Load backbone + MLP head from public formats (see the module docstring)."""
    def build() -> HeadModel:
        from transformers import AutoConfig, AutoModel

        config = ckpt.guard("config", lambda: AutoConfig.from_pretrained(ckpt.spec, **ckpt.hub_kwargs))
        sd = ckpt.state_dict()
        prefix = _backbone_prefix(sd)
        if prefix is None:
            raise IncompatibleModelError(f"{ckpt.what} {ckpt.label}: no transformer backbone in the weights "
                                         "(no embeddings.word_embeddings.weight)")
        backbone_sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        model = ckpt.guard("backbone", lambda: _from_config_without_init(AutoModel, config))
        if hasattr(model, "pooler"):
            model.pooler = None
        try:
            result = model.load_state_dict(backbone_sd, strict=False)
        except RuntimeError as e:
            raise IncompatibleModelError(f"{ckpt.what} {ckpt.label}: backbone weights do not fit its config "
                                         f"({one_line(e)})") from None
        missing = [k for k in result.missing_keys if not k.startswith("pooler.") and "position_ids" not in k]
        if missing:
            raise IncompatibleModelError(f"{ckpt.what} {ckpt.label}: backbone weights missing "
                                         f"{', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}")
        if head_file is not None:
            if not os.path.isfile(head_file):
                raise ModelLoadError(f"head file {head_file} does not exist")
            head_sd = read_tensors(head_file)
            source = head_file
        else:
            head_sd = sd
            source = f"{ckpt.what} {ckpt.label}"
        hidden = int(getattr(config, "hidden_size", getattr(config, "dim", 0)))
        head = MLPHead.from_state_dict(head_sd, head_prefix, hidden, source)
        model.eval().to(device=device, dtype=dtype)
        head.to(device, dtype)
        del sd
        return HeadModel(model, head)

    return cached(("head", ckpt.spec, ckpt.revision, head_file, head_prefix, str(device), str(dtype)), build)


# --------------------------------------------------------------------------- pooling kernels
# activations made of log1p after ReLU: how many times log1p is applied
LOG1P_ACTIVATIONS = {"log1p_relu": 1, "log1p_log1p_relu": 2}
SPLADE_HEAD_ACTIVATION = {"relu": "log1p_relu", "log1p_relu": "log1p_log1p_relu"}
"""The pooling activation of a ``splade`` side for each sentence-transformers ``activation_function``."""

def vocab_chunk(rows: int, vocab: int) -> int:
    """Vocabulary entries per projection chunk: about 512K scores (2 MiB) at a time, at least 2048."""
    return min(vocab, max(2048, (1 << 19) // max(rows, 1)))


ROW_MULTIPLE = 16


def _padded_rows(seg):
    """``seg`` with its last row repeated up to a multiple of 16 rows.

    BLAS kernels are several times faster when this dimension is a multiple
    of 16 (measured: 22 rows take longer than 32); a repeated row cannot
    change a maximum, and sums use only the first rows.
    """
    import torch

    L = seg.shape[0]
    Lp = -(-L // ROW_MULTIPLE) * ROW_MULTIPLE
    if Lp == L:
        return seg
    return torch.cat([seg, seg[-1:].expand(Lp - L, seg.shape[1])])


def _scratch(T, lengths: list[int], V: int):
    """One scratch buffer for a whole batch (no allocation, and no page faults, per text)."""
    import torch

    need = 0
    for L in lengths:
        Lp = -(-L // ROW_MULTIPLE) * ROW_MULTIPLE
        need = max(need, vocab_chunk(Lp, V) * Lp)
    return torch.empty(need, dtype=T.dtype, device=T.device)


def _chunk_scores(T, lengths: list[int], weight):
    """For each text with rows, in vocabulary chunks: ``(b, L, c, n, s)``, ``s = W[c:c+n] @ rows^T``.

    ``s`` is ``[n, Lp]`` (rows padded to ``ROW_MULTIPLE`` by repeating the last
    one; columns ``L..Lp`` are those repeats) in one scratch buffer reused by
    every chunk, so it is valid only until the next item.
    """
    import torch

    V = weight.shape[0]
    buf = _scratch(T, lengths, V)
    off = 0
    for b, L in enumerate(lengths):
        seg = T[off: off + L]
        off += L
        if L == 0:
            continue
        seg_t = _padded_rows(seg).t()
        Lp = seg_t.shape[1]
        chunk = vocab_chunk(Lp, V)
        for c in range(0, V, chunk):
            w = weight[c: c + chunk]
            n = w.shape[0]
            # scores transposed ([chunk, rows]): reductions run along contiguous rows
            s = buf[: n * Lp].view(n, Lp)
            torch.mm(w, seg_t, out=s)
            yield b, L, c, n, s


def fused_max_pool(T, lengths: list[int], weight, bias, out, activation: str = "log1p_relu") -> None:
    """``out[b] = act(max_i (T_i W^T) + bias)`` over the rows of each text, without the full tensor.

    ``T`` holds the transformed hidden states of all texts' non-padding rows,
    one text after another (``lengths`` rows each); ``out`` is ``[B, V]``.
    ``activation``: ``log1p_relu`` (SPLADE), ``log1p_log1p_relu``
    (``log(1 + log(1 + ReLU))``, sentence-transformers' ``log1p_relu``), ``relu``
    (SparTerm's importance) or ``none`` (raw max logits). Each is monotone, so it
    is applied once to the maximum.
    """
    import torch

    for b, L in enumerate(lengths):
        if L == 0:
            out[b].fill_(float("-inf"))
    for b, _, c, n, s in _chunk_scores(T, lengths, weight):
        torch.amax(s, 1, out=out[b, c: c + n])   # repeated rows do not change a max
    out.add_(bias)
    if activation in LOG1P_ACTIVATIONS:
        for _ in range(LOG1P_ACTIVATIONS[activation]):
            out.relu_().log1p_()
    elif activation == "relu":
        out.relu_()


def fused_sum_pool(T, lengths: list[int], weight, bias, out, activation: str = "log1p_relu") -> None:
    """``out[b] = sum_i act(T_i W^T + bias)`` over the rows of each text (chunked, no full tensor)."""
    import torch

    for b, L in enumerate(lengths):
        if L == 0:
            out[b].zero_()
    for b, L, c, n, s in _chunk_scores(T, lengths, weight):
        s = s[:, :L]
        s.add_(bias[c: c + n].unsqueeze(1)).relu_()
        for _ in range(LOG1P_ACTIVATIONS.get(activation, 0)):
            s.log1p_()
        torch.sum(s, 1, out=out[b, c: c + n])


def padded_pool(T_pad, mask, weight, bias, pooling: str, activation: str = "log1p_relu"):
    """Pooling over padded ``[B, L, H]`` states, in vocabulary chunks (the GPU path).

    On a GPU one batched matrix product per chunk beats a loop over texts;
    padding rows are masked out (``-inf`` for max, 0 for sum).
    """
    import torch

    B, L, _ = T_pad.shape
    V = weight.shape[0]
    out = torch.empty((B, V), dtype=T_pad.dtype, device=T_pad.device)
    m = mask.to(torch.bool).unsqueeze(-1)
    chunk = vocab_chunk(B * L, V)
    for c in range(0, V, chunk):
        s = torch.matmul(T_pad, weight[c: c + chunk].t()) + bias[c: c + chunk]
        out[:, c: c + s.shape[-1]] = pool_logits(s, m, pooling, activation)
    return out


def pool_logits(logits, m, pooling: str, activation: str = "log1p_relu"):
    """Reference-style pooling of a ``[B, L, V]`` logits tensor with mask ``m`` ``[B, L, 1]`` (bool)."""
    import torch

    logs = LOG1P_ACTIVATIONS.get(activation, 0)
    if pooling == "max":
        x = torch.relu(logits.masked_fill(~m, float("-inf")).amax(1))
        for _ in range(logs):
            x = torch.log1p(x)
        return x
    x = torch.relu(logits)
    for _ in range(logs):
        x = torch.log1p(x)
    return x.masked_fill(~m, 0.0).sum(1)


__all__ = [
    "HeadModel",
    "MLMParts",
    "MLPHead",
    "clear_model_cache",
    "fused_max_pool",
    "fused_sum_pool",
    "load_head_model",
    "load_mlm",
    "needs_remote_code",
    "padded_pool",
    "pool_logits",
    "vocab_chunk",
]
