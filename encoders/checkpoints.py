"""Checkpoints: local directories or Hugging Face hub ids, their files, weights and tokenizers.

A checkpoint spec is a local directory (used as it is, no network) or a hub id
``owner/name`` with an optional ``revision`` (branch, tag or commit). Hub
files go through the regular Hugging Face machinery (``from_pretrained`` for
models and tokenizers, ``hf_hub_download`` for single files), so they are
cached as usual and work offline once cached. The commit a hub revision
resolved to is recorded (:meth:`Checkpoint.commit`); a local directory is
identified by a SHA-256 of its config and weight files
(:meth:`Checkpoint.fingerprint`).

Every failure (no such directory, no network, a missing or unreadable file)
is raised as a one-line :class:`~lsr.encoders.errors.ModelLoadError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from functools import cached_property
from typing import Any, TypeVar

from lsr.errors import LsrError

from .errors import IncompatibleModelError, ModelLoadError, one_line

T = TypeVar("T")

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
_COMMIT = re.compile(r"snapshots/([0-9a-f]{40})(/|$)")


def looks_like_hub_id(spec: str) -> bool:
    """Whether ``spec`` is syntactically a hub id (``name`` or ``owner/name``)."""
    return bool(_HUB_ID.match(spec)) and ".." not in spec and not spec.endswith(
        (".yaml", ".yml", ".json", ".jsonl", ".tsv", ".gz"))


class Checkpoint:
    """A model checkpoint: a local directory or a hub id at a revision."""

    def __init__(self, spec: str, revision: str | None = None, what: str = "checkpoint") -> None:
        if not isinstance(spec, str) or not spec:
            raise ModelLoadError(f"{what}: empty checkpoint name")
        self.what = what
        self.revision = revision
        if os.path.isdir(spec):
            self.local = True
            self.spec = os.path.abspath(spec)
        elif os.path.exists(spec):
            raise ModelLoadError(f"{what} {spec}: is a file, not a checkpoint directory")
        elif looks_like_hub_id(spec) and not spec.startswith((".", "/")):
            self.local = False
            self.spec = spec
        else:
            raise ModelLoadError(f"{what} {spec}: no such directory, and not a hub id (owner/name)")

    # -- helpers -------------------------------------------------------------
    def __repr__(self) -> str:
        return f"Checkpoint({self.label})"

    @property
    def label(self) -> str:
        if self.local:
            return self.spec
        return f"{self.spec}@{self.revision}" if self.revision else self.spec

    @property
    def hub_kwargs(self) -> dict:
        """Keyword arguments for ``from_pretrained`` (the revision, for hub ids)."""
        return {} if self.local or self.revision is None else {"revision": self.revision}

    def _check_hub_reachable(self, what: str) -> None:
        """Fail fast when a hub checkpoint is neither cached nor reachable.

        Without a route to the hub, the Hugging Face client retries with
        back-off for half a minute or more per file; when the host name does not
        even resolve (a machine without network), say so at once. A cached
        checkpoint, offline mode (``HF_HUB_OFFLINE``) and a resolvable host go
        to ``from_pretrained`` unchanged.
        """
        if self.local or getattr(self, "_hub_checked", False):
            return
        import socket
        from urllib.parse import urlparse

        from huggingface_hub import constants, try_to_load_from_cache

        self._hub_checked = True
        if constants.HF_HUB_OFFLINE:
            return
        if isinstance(try_to_load_from_cache(self.spec, "config.json", revision=self.revision), str):
            return
        host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
        try:
            socket.getaddrinfo(host, 443)
        except OSError as e:
            raise ModelLoadError(
                f"cannot load {what} of {self.what} {self.label}: no such local directory, not in the Hugging "
                f"Face cache, and the hub ({host}) cannot be reached ({e.strerror or e}); download the model "
                "where there is network and pass its local directory") from None

    def guard(self, what: str, fn: Callable[[], T]) -> T:
        """Run a loading step, turning any failure into a one-line ModelLoadError."""
        self._check_hub_reachable(what)
        try:
            return fn()
        except LsrError:
            raise
        except Exception as e:  # any library failure becomes one clear line
            hint = ""
            if not self.local:
                hint = (" (the Hugging Face hub could not serve it: check the id and revision, the "
                        "network, or download the model and pass its local directory)")
            raise ModelLoadError(f"cannot load {what} of {self.what} {self.label}: {one_line(e)}{hint}") from e

    # -- files -----------------------------------------------------------------
    def file(self, filename: str, required: bool = True) -> str | None:
        """Local path of a file of the checkpoint (downloaded for a hub id); None if absent."""
        if self.local:
            path = os.path.join(self.spec, filename)
            if os.path.isfile(path):
                return path
            if required:
                raise ModelLoadError(f"{self.what} {self.spec}: no {filename}")
            return None

        def fetch() -> str | None:
            from huggingface_hub import hf_hub_download
            from huggingface_hub.errors import RemoteEntryNotFoundError

            try:
                return hf_hub_download(self.spec, filename, revision=self.revision)
            except RemoteEntryNotFoundError:
                if required:
                    raise ModelLoadError(f"{self.what} {self.label}: the repository has no {filename}") from None
                return None

        return self.guard(filename, fetch)

    @cached_property
    def config_dict(self) -> dict:
        """The checkpoint's ``config.json`` as a dict."""
        from lsr.io import read_json_object

        return read_json_object(self.file("config.json"), ModelLoadError,
                                f"config.json of {self.what} {self.label}")

    @property
    def architectures(self) -> list[str]:
        arch = self.config_dict.get("architectures") or []
        return [a for a in arch if isinstance(a, str)]

    def commit(self) -> str | None:
        """The commit hash a hub revision resolved to (None for a local directory)."""
        if self.local:
            return None
        path = self.file("config.json")
        m = _COMMIT.search(path.replace(os.sep, "/"))
        return m.group(1) if m else self.revision

    def weight_files(self) -> list[str]:
        """Local paths of the weight files (safetensors preferred, sharded or not)."""
        for index_name, single in (("model.safetensors.index.json", "model.safetensors"),
                                   ("pytorch_model.bin.index.json", "pytorch_model.bin")):
            single_path = self.file(single, required=False)
            if single_path:
                return [single_path]
            index_path = self.file(index_name, required=False)
            if index_path:
                try:
                    with open(index_path, encoding="utf-8") as f:
                        shards = sorted(set(json.load(f)["weight_map"].values()))
                except (OSError, ValueError, KeyError, TypeError) as e:
                    raise ModelLoadError(f"{self.what} {self.label}: bad {index_name} ({one_line(e)})") from None
                return [self.file(s) for s in shards]
        raise ModelLoadError(f"{self.what} {self.label}: no weights (model.safetensors or pytorch_model.bin)")

    def state_dict(self) -> dict:
        """All tensors of the checkpoint's weight files, on the CPU."""
        out: dict = {}
        for path in self.weight_files():
            out.update(read_tensors(path))
        return out

    def fingerprint(self) -> str:
        """SHA-256 over config.json and the weight files (for identifying a local checkpoint)."""
        h = hashlib.sha256()
        for path in [self.file("config.json")] + self.weight_files():
            h.update(os.path.basename(path).encode())
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        return h.hexdigest()

    def identity(self) -> dict:
        """What identifies this checkpoint in ``describe()``: the commit (hub) or a content hash (local)."""
        if self.local:
            return {"model": self.spec, "revision": None, "sha256": self.fingerprint()}
        return {"model": self.spec, "revision": self.commit(), "sha256": None}


def read_tensors(path: str) -> dict:
    """Tensors of one ``.safetensors`` or PyTorch (``.bin``/``.pt``) file."""
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(path, device="cpu")
        import torch

        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged or foreign file
        raise ModelLoadError(f"{path}: cannot read weights ({one_line(e)})") from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ModelLoadError(f"{path}: not a state dict of tensors")
    import torch

    return {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


# --------------------------------------------------------------------------- tokenizers
def load_tokenizer(ckpt: Checkpoint):
    """The checkpoint's fast (Rust) tokenizer, via ``AutoTokenizer.from_pretrained``.

    Tokenizer code from a repository is never run (``trust_remote_code=False``): a checkpoint whose
    config names model code (``auto_map``) still gets its standard tokenizer, and transformers does not
    stop to ask on the terminal whether to run that code.
    """
    def load():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(ckpt.spec, trust_remote_code=False, **ckpt.hub_kwargs)

    tok = ckpt.guard("tokenizer", load)
    if not getattr(tok, "is_fast", False) or getattr(tok, "backend_tokenizer", None) is None:
        raise IncompatibleModelError(f"{ckpt.what} {ckpt.label}: needs a fast tokenizer (tokenizer.json "
                                     "or a vocab.txt that transformers can convert)")
    return tok


def tokenizer_hash(tok) -> str:
    """SHA-256 of what decides token strings: vocabulary, normaliser, pre-tokeniser, model settings.

    Truncation and padding settings are left out, so the same tokenizer used
    with other lengths hashes the same.
    """
    state = json.loads(tok.backend_tokenizer.to_str())
    keep = {k: state.get(k) for k in ("normalizer", "pre_tokenizer", "model", "added_tokens")}
    blob = json.dumps(keep, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def vocab_list(tok) -> list[str]:
    """Token strings by id (ids without a token get ``[unused-id]``)."""
    vocab = tok.get_vocab()
    size = max(vocab.values()) + 1 if vocab else 0
    out = [f"[unused-{i}]" for i in range(size)]
    for token, i in vocab.items():
        out[i] = token
    return out


# --------------------------------------------------------------------------- public models
# The mapping table from public model ids to the settings this package uses to
# load them (docs/encoders.md has the same table, with notes). "kind" is the
# side kind; "head" says where the head weights live.
PUBLIC_MODELS: dict[str, dict[str, Any]] = {
    # SPLADE: BertForMaskedLM / DistilBertForMaskedLM; the MLM head is part of
    # the checkpoint (cls.predictions.* / vocab_*), the decoder tied to the
    # word embeddings. log(1 + ReLU(logits)), max over tokens.
    "naver/splade_v2_max": {"family": "splade", "kind": "splade", "arch": "BertForMaskedLM",
                            "head": "MLM head in the checkpoint (cls.predictions.*)",
                            "pooling": "max", "doc_max_length": 256, "query_max_length": 256},
    "naver/splade_v2_distil": {"family": "splade", "kind": "splade", "arch": "BertForMaskedLM",
                               "head": "MLM head in the checkpoint (cls.predictions.*)",
                               "pooling": "max", "doc_max_length": 256, "query_max_length": 256},
    "naver/splade-cocondenser-ensembledistil": {
        "family": "splade", "kind": "splade", "arch": "BertForMaskedLM",
        "head": "MLM head in the checkpoint (cls.predictions.*)",
        "pooling": "max", "doc_max_length": 256, "query_max_length": 256},
    "naver/splade-cocondenser-selfdistil": {
        "family": "splade", "kind": "splade", "arch": "BertForMaskedLM",
        "head": "MLM head in the checkpoint (cls.predictions.*)",
        "pooling": "max", "doc_max_length": 256, "query_max_length": 256},
    "naver/splade-v3": {"family": "splade", "kind": "splade", "arch": "BertForMaskedLM",
                        "head": "MLM head in the checkpoint (cls.predictions.*)",
                        "pooling": "max", "doc_max_length": 256, "query_max_length": 256},
    "naver/splade-v3-distilbert": {"family": "splade", "kind": "splade", "arch": "DistilBertForMaskedLM",
                                   "head": "MLM head in the checkpoint (vocab_transform, vocab_layer_norm, "
                                           "vocab_projector)",
                                   "pooling": "max", "doc_max_length": 256, "query_max_length": 256},
    # Inference-free query side: the query's WordPieces with weight 1.
    "naver/splade-v3-doc": {"family": "splade", "kind": "splade", "arch": "BertForMaskedLM",
                            "head": "MLM head in the checkpoint (cls.predictions.*)",
                            "pooling": "max", "doc_max_length": 256, "query_max_length": 256,
                            "query_kind": "tokens", "query_weights": "binary"},
    # Efficient SPLADE: separate query and document checkpoints (entries below the table).
    # uniCOIL: BERT-base + tok_proj = Linear(768, 1) in the same weight file
    # (keys tok_proj.weight / tok_proj.bias, found by suffix, so a
    # coil_encoder. prefix also matches). Pyserini encodes documents with at
    # most 512 tokens and queries with 128, and sums repeated query tokens.
    "castorini/unicoil-msmarco-passage": {
        "family": "unicoil", "kind": "unicoil", "arch": "BertModel + tok_proj",
        "head": "tok_proj.{weight,bias} in the checkpoint's weight file",
        "doc_max_length": 512, "query_max_length": 128, "query_pooling": "sum",
        "notes": "trained on doc2query-T5-expanded passages: give the expansions as an input field"},
    "castorini/unicoil-noexp-msmarco-passage": {
        "family": "unicoil", "kind": "unicoil", "arch": "BertModel + tok_proj",
        "head": "tok_proj.{weight,bias} in the checkpoint's weight file",
        "doc_max_length": 512, "query_max_length": 128, "query_pooling": "sum"},
    # DeeperImpact: BERT (coCondenser init) + impact_score_encoder =
    # Sequential(Linear(768,768), ReLU, Dropout, Linear(768,1), ReLU), keys
    # impact_score_encoder.{0,3}.{weight,bias} (a single-Linear variant,
    # impact_score_encoder.0 only, is detected from the keys). Query side:
    # the query's words with weight 1. The published expansion model
    # (soyuj/llama2-doc2query) is a LoRA adapter on Llama-2-7B; give a merged
    # causal LM as expansion.model to generate, or pass expansions as a field.
    "soyuj/deeper-impact": {
        "family": "deeperimpact", "kind": "deepimpact", "arch": "BertModel + impact_score_encoder",
        "head": "impact_score_encoder.{0,3}.{weight,bias} in the checkpoint's weight file",
        "doc_max_length": 512, "query_max_length": 512, "query_kind": "words"},
}


def _efficient_splade_pair(name: str) -> dict[str, dict[str, Any]]:
    """The ``-doc`` and ``-query`` checkpoints of an Efficient SPLADE model, each naming the other."""
    base = {"family": "splade", "kind": "splade", "arch": "BertForMaskedLM",
            "head": "MLM head in the checkpoint (cls.predictions.*)",
            "pooling": "max", "doc_max_length": 256, "query_max_length": 256}
    doc, query = f"naver/efficient-splade-{name}-doc", f"naver/efficient-splade-{name}-query"
    return {doc: {**base, "query_model": query}, query: {**base, "doc_model": doc}}


for _name in ("V-large", "VI-BT-large"):
    PUBLIC_MODELS.update(_efficient_splade_pair(_name))

# Short registry names for the public models (used by the registry).
PUBLIC_NAMES: dict[str, str] = {
    "splade-v2-max": "naver/splade_v2_max",
    "splade-v2-distil": "naver/splade_v2_distil",
    "splade-cocondenser-ensembledistil": "naver/splade-cocondenser-ensembledistil",
    "splade-cocondenser-selfdistil": "naver/splade-cocondenser-selfdistil",
    "splade-v3": "naver/splade-v3",
    "splade-v3-distilbert": "naver/splade-v3-distilbert",
    "splade-v3-doc": "naver/splade-v3-doc",
    "efficient-splade-v-large": "naver/efficient-splade-V-large-doc",
    "efficient-splade-vi-bt-large": "naver/efficient-splade-VI-BT-large-doc",
    "unicoil-msmarco-passage": "castorini/unicoil-msmarco-passage",
    "unicoil-noexp-msmarco-passage": "castorini/unicoil-noexp-msmarco-passage",
    "deeper-impact": "soyuj/deeper-impact",
}


def public_config(model_id: str, revision: str | None = None, name: str | None = None):
    """The :class:`EncoderConfig` for a public model id of :data:`PUBLIC_MODELS` (None if unknown)."""
    from .config import EncoderConfig, SideConfig

    info = PUBLIC_MODELS.get(model_id)
    if info is None:
        return None
    doc_model = info.get("doc_model", model_id)
    query_model = info.get("query_model", model_id)
    kind = info["kind"]
    common: dict[str, Any] = {}
    if kind == "splade":
        common["pooling"] = info.get("pooling", "max")
    doc = SideConfig(kind=kind, model=doc_model, revision=revision if doc_model == model_id else None,
                     max_length=info["doc_max_length"], **common)
    qkind = info.get("query_kind", kind)
    qkw: dict[str, Any] = {}
    if qkind == kind:
        qkw.update(common)
        if "query_pooling" in info:
            qkw["pooling"] = info["query_pooling"]
    if qkind == "tokens":
        qkw["weights"] = info.get("query_weights", "binary")
    query = SideConfig(kind=qkind, model=query_model,
                       revision=revision if query_model == model_id else None,
                       max_length=info["query_max_length"], **qkw)
    return EncoderConfig(name=name or model_id, type=info["family"], doc=doc, query=query,
                         description=f"public checkpoint {model_id}")


__all__ = [
    "PUBLIC_MODELS",
    "PUBLIC_NAMES",
    "Checkpoint",
    "load_tokenizer",
    "looks_like_hub_id",
    "public_config",
    "read_tensors",
    "tokenizer_hash",
    "vocab_list",
]
