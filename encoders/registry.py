"""The encoder registry and the loaders: :func:`load_encoder`, :func:`load_query_encoder`.

An encoder *spec* is, in the order tried:

1. an :class:`~lsr.encoders.config.EncoderConfig` (or its dict form);
2. a registered name (:func:`available_encoders`): the public models of
   :data:`~lsr.encoders.checkpoints.PUBLIC_MODELS` under short names such as
   ``splade-v3``, then the presets shipped with the package (package data
   ``lsr.configs``, folder ``encoders/``, read through importlib.resources;
   they name hub ids), then names given to :func:`register_encoder` /
   :func:`register_presets`;
3. a YAML preset file (``*.yaml`` / ``*.yml``);
4. a local checkpoint directory: an ONNX export (``lsr-onnx.json``, :mod:`lsr.encoders.onnx`),
   else ``lsr-encoder.yaml`` inside it, else a
   sentence-transformers ``modules.json`` (:mod:`lsr.encoders.st_layout`), else a
   ``*ForMaskedLM`` checkpoint is a SPLADE encoder (max pooling, 256 tokens);
5. a public hub id of the mapping table (e.g. ``naver/splade-v3``);
6. any other hub id: its ``modules.json`` (sentence-transformers), else its
   ``config.json``: an MLM checkpoint is taken as SPLADE.

A path that does not exist is an
:class:`~lsr.encoders.errors.UnknownEncoderError` "no such directory: PATH",
anything else one naming the registered names; a
checkpoint that fits no encoder is an
:class:`~lsr.encoders.errors.IncompatibleModelError`.

A ``model_path`` (:func:`resolve_config`, :func:`load_encoder`; the CLI's
``--model-path DIR``) replaces the checkpoint of whatever the spec resolved
to with a local directory, so that a preset runs on a machine without network.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from .checkpoints import (
    PUBLIC_MODELS,
    PUBLIC_NAMES,
    Checkpoint,
    looks_like_hub_id,
    public_config,
)
from .config import EncoderConfig, RuntimeConfig, SideConfig
from .encoder import DESCRIBE_FORMAT, Encoder, QueryEncoder
from .errors import EncoderConfigError, IncompatibleModelError, ModelLoadError, UnknownEncoderError

Spec = str | os.PathLike | EncoderConfig | Mapping[str, Any]

_REGISTRY: dict[str, Callable[[], EncoderConfig]] = {}
_LOCK = threading.Lock()
PRESET_IN_CHECKPOINT = "lsr-encoder.yaml"


def register_encoder(name: str, config: EncoderConfig | Callable[[], EncoderConfig], *,
                     overwrite: bool = False) -> None:
    """Register an encoder config (or a function building one) under ``name``."""
    if not isinstance(name, str) or not name or any(ch.isspace() for ch in name):
        raise EncoderConfigError(f"encoder name must be a non-empty word, got {name!r}")
    if isinstance(config, EncoderConfig):
        cfg = config

        def factory() -> EncoderConfig:
            return cfg
    elif callable(config):
        factory = config
    else:
        raise EncoderConfigError("register_encoder takes an EncoderConfig or a function returning one")
    with _LOCK:
        if name in _REGISTRY and not overwrite:
            raise EncoderConfigError(f"encoder {name!r} is already registered (pass overwrite=True)")
        _REGISTRY[name] = factory


def register_presets(directory: str | os.PathLike, *, overwrite: bool = False) -> list[str]:
    """Register every ``*.yaml`` preset of a directory under its file name (without ``.yaml``).

    Names already registered are kept unless ``overwrite``. Presets are read
    when used, so a broken file only fails when its name is loaded. Returns
    the names registered.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise EncoderConfigError(f"preset directory {directory} does not exist")
    names = []
    for entry in sorted(os.listdir(directory)):
        if not entry.endswith((".yaml", ".yml")):
            continue
        name = os.path.splitext(entry)[0]
        with _LOCK:
            taken = name in _REGISTRY
        if taken and not overwrite:
            continue
        path = os.path.join(directory, entry)
        register_encoder(name, (lambda p=path: EncoderConfig.from_yaml(p)), overwrite=True)
        names.append(name)
    return names


SHIPPED_PRESETS = "encoders"   # the folder of lsr.configs (package data) that holds the shipped presets
_shipped_done = False


def shipped_presets() -> list[str]:
    """The names of the presets shipped with the package (``lsr.configs``, folder ``encoders/``), sorted.

    They are read through :mod:`importlib.resources`, so a wheel and a
    source checkout give the same list.
    """
    from lsr import configs

    return sorted(entry.name.rsplit(".", 1)[0] for entry in configs.path(SHIPPED_PRESETS).iterdir()
                  if entry.name.endswith((".yaml", ".yml")) and entry.is_file())


def _shipped_factory(file_name: str) -> Callable[[], EncoderConfig]:
    def factory() -> EncoderConfig:
        from lsr import configs

        text = configs.path(SHIPPED_PRESETS, file_name).read_text(encoding="utf-8")
        return EncoderConfig.from_yaml_text(text, source=f"lsr.configs/{SHIPPED_PRESETS}/{file_name}")

    return factory


def _ensure_bundled() -> None:
    """Register the shipped presets once (names registered in code, the public models, win)."""
    global _shipped_done
    if _shipped_done:
        return
    from lsr import configs

    with _LOCK:
        if _shipped_done:
            return
        for entry in sorted(configs.path(SHIPPED_PRESETS).iterdir(), key=lambda e: e.name):
            name = entry.name
            if not name.endswith((".yaml", ".yml")) or not entry.is_file():
                continue
            stem = name.rsplit(".", 1)[0]
            if stem not in _REGISTRY:
                _REGISTRY[stem] = _shipped_factory(name)
        _shipped_done = True


def available_encoders() -> list[str]:
    """Registered encoder names, sorted: the public models, the shipped presets, and what was registered."""
    _ensure_bundled()
    with _LOCK:
        return sorted(_REGISTRY)


def get_config(name: str) -> EncoderConfig:
    """The config registered under ``name``."""
    _ensure_bundled()
    with _LOCK:
        factory = _REGISTRY.get(name)
    if factory is None:
        raise UnknownEncoderError(f"no encoder registered as {name!r}")
    cfg = factory()
    if not isinstance(cfg, EncoderConfig):
        raise EncoderConfigError(f"encoder {name!r}: its factory returned {type(cfg).__name__}")
    return cfg


def _register_public() -> None:
    for short, model_id in PUBLIC_NAMES.items():
        register_encoder(short, (lambda m=model_id, s=short: public_config(m, name=s)), overwrite=True)


_register_public()


# --------------------------------------------------------------------------- resolving specs
def _with_revision(cfg: EncoderConfig, revision: str | None) -> EncoderConfig:
    """Apply a revision to every side whose checkpoint is a hub id."""
    if revision is None:
        return cfg

    def side(s: SideConfig) -> SideConfig:
        if os.path.isdir(s.model) or not looks_like_hub_id(s.model):
            return s
        return s.replace(revision=revision)

    return cfg.replace(doc=side(cfg.doc), query=side(cfg.query))


def _from_checkpoint(spec: str, revision: str | None) -> EncoderConfig:
    ckpt = Checkpoint(spec, revision, what="model")
    from .onnx import export_config, is_export

    if ckpt.local and is_export(ckpt.spec):
        return export_config(ckpt.spec)
    if ckpt.local and os.path.isfile(os.path.join(ckpt.spec, PRESET_IN_CHECKPOINT)):
        return EncoderConfig.from_yaml(os.path.join(ckpt.spec, PRESET_IN_CHECKPOINT))
    from .st_layout import st_config

    st = st_config(ckpt)
    if st is not None:
        return st
    arch = ckpt.architectures
    if any(a.endswith("ForMaskedLM") for a in arch):
        name = os.path.basename(ckpt.spec.rstrip("/")) if ckpt.local else ckpt.spec
        side = SideConfig(kind="splade", model=ckpt.spec, revision=revision, max_length=256)
        return EncoderConfig(name=name, type="splade", doc=side, query=side,
                             description=f"SPLADE on the MLM checkpoint {ckpt.label}")
    what = ", ".join(arch) if arch else "a checkpoint with no architectures in config.json"
    raise IncompatibleModelError(
        f"{ckpt.label} is {what}: without an MLM head it cannot be a SPLADE encoder, and it is not in the "
        "table of public models; for a uniCOIL/DeepImpact head write a preset (kind, model, head_file)")


def with_model_path(cfg: EncoderConfig, model_path: str | os.PathLike) -> EncoderConfig:
    """``cfg`` with its checkpoint replaced by the local directory ``model_path`` (absolute).

    Every side that names the encoder's checkpoint (``model``, and
    ``tokenizer`` / ``gate_model`` where they name the same one) gets the
    directory, with no hub revision. An encoder whose document and query
    sides use different checkpoints cannot take one directory: write a
    preset file naming both. A doc2query model (``expansion``) is left as it is.
    """
    path = os.fspath(model_path)
    if not path:
        raise EncoderConfigError("the model path is empty")
    if not os.path.exists(path):
        raise ModelLoadError(f"no such directory: {path}")
    if not os.path.isdir(path):
        raise ModelLoadError(f"not a directory: {path} (a model path is a checkpoint directory)")
    path = os.path.abspath(path)
    models = {cfg.doc.model, cfg.query.model}
    if len(models) > 1:
        raise EncoderConfigError(
            f"encoder {cfg.name!r} uses one checkpoint for documents ({cfg.doc.model}) and another for "
            f"queries ({cfg.query.model}); a single model path cannot replace both: write a preset file "
            "that names the two directories")
    (old,) = models

    def side(s: SideConfig) -> SideConfig:
        changes: dict[str, Any] = {"model": path, "revision": None}
        for key in ("tokenizer", "gate_model"):
            if getattr(s, key) == old:
                changes[key] = path
        return s.replace(**changes)

    return cfg.replace(doc=side(cfg.doc), query=side(cfg.query))


def _looks_like_path(s: str) -> bool:
    """Whether a spec that is nothing else was meant as a local path (not a name or a hub id)."""
    if s.startswith((".", "/", "~")) or (os.sep != "/" and os.sep in s):
        return True
    return "/" in s and not looks_like_hub_id(s)


def resolve_config(spec: Spec, revision: str | None = None,
                   model_path: str | os.PathLike | None = None) -> EncoderConfig:
    """The :class:`EncoderConfig` for an encoder spec (see the module docstring).

    ``model_path``: a local checkpoint directory that replaces the spec's
    checkpoint (:func:`with_model_path`), e.g. a downloaded copy of a
    preset's hub model, for machines without network.
    """
    cfg = _resolve(spec, None if model_path is not None else revision)
    if model_path is not None:
        cfg = with_model_path(cfg, model_path)
    return cfg


def _resolve(spec: Spec, revision: str | None) -> EncoderConfig:
    if isinstance(spec, EncoderConfig):
        return _with_revision(spec, revision)
    if isinstance(spec, Mapping):
        return _with_revision(EncoderConfig.from_dict(spec), revision)
    if not isinstance(spec, (str, os.PathLike)):
        raise UnknownEncoderError(f"an encoder spec is a name, a path or a config, not {type(spec).__name__}")
    s = os.fspath(spec)
    if not s:
        raise UnknownEncoderError("empty encoder name")
    _ensure_bundled()
    with _LOCK:
        registered = s in _REGISTRY
    if registered:
        return _with_revision(get_config(s), revision)
    if s.endswith((".yaml", ".yml")):
        if not os.path.isfile(s):
            raise UnknownEncoderError(f"preset file {s} does not exist")
        return _with_revision(EncoderConfig.from_yaml(s), revision)
    if os.path.isdir(s):
        return _from_checkpoint(s, None)
    if os.path.exists(s):
        raise UnknownEncoderError(f"encoder {s}: a file that is not a YAML preset (give a preset file, "
                                  "a checkpoint directory, a registered name or a hub id)")
    if s in PUBLIC_MODELS:
        return public_config(s, revision=revision)
    if looks_like_hub_id(s) and "/" in s and not s.startswith("."):
        return _from_checkpoint(s, revision)
    if _looks_like_path(s):
        raise UnknownEncoderError(f"no such directory: {s}")
    names = ", ".join(available_encoders())
    raise UnknownEncoderError(f"unknown encoder {s!r}: not a registered name ({names}), a preset file, "
                              "a checkpoint directory or a hub id (owner/name)")


def _absolute_paths(cfg: EncoderConfig) -> EncoderConfig:
    def fix(side: SideConfig) -> SideConfig:
        changes: dict[str, Any] = {}
        for key in ("model", "tokenizer", "gate_model", "head_file"):
            v = getattr(side, key)
            if isinstance(v, str) and os.path.exists(v) and not os.path.isabs(v):
                changes[key] = os.path.abspath(v)
        if side.weights not in ("binary", "counts") and os.path.exists(side.weights):
            changes["weights"] = os.path.abspath(side.weights)
        if side.expansion is not None and os.path.exists(side.expansion.model):
            from dataclasses import replace

            changes["expansion"] = replace(side.expansion, model=os.path.abspath(side.expansion.model))
        return side.replace(**changes) if changes else side

    return cfg.replace(doc=fix(cfg.doc), query=fix(cfg.query))


def load_encoder(spec: Spec, device: str = "cpu", dtype: str = "float32", threads: int | None = None,
                 revision: str | None = None, model_path: str | os.PathLike | None = None) -> Encoder:
    """Load an encoder (models load lazily, on first use of each side).

    ``device``: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; ``dtype``:
    ``float32`` (exact), ``bfloat16`` (CPU or GPU) or ``float16`` (GPU only);
    ``threads``: torch's intra-op CPU threads of each encode call (set for the call and restored
    after it; default: the idle CPUs, :func:`~lsr.encoders.sides.default_threads`); ``revision``: a
    hub revision for hub checkpoints; ``model_path``: a local checkpoint
    directory that replaces the spec's checkpoint (e.g.
    ``load_encoder("splade-tiny", model_path="models/splade-tiny")``).
    """
    runtime = RuntimeConfig(device=device, dtype=dtype, threads=threads)
    from .sides import resolve_device

    resolve_device(runtime)
    cfg = _absolute_paths(resolve_config(spec, revision, model_path=model_path))
    return Encoder(cfg, runtime)


_QUERY_CACHE: dict[str, QueryEncoder] = {}


def load_query_encoder(info: Mapping[str, Any], device: str = "cpu", dtype: str | None = None,
                       threads: int | None = None) -> QueryEncoder:
    """Rebuild the query encoder from an ``Encoder.describe()`` dict (e.g. an index's encoder.json).

    ``dtype`` defaults to the recorded one (``float16``, a GPU dtype, becomes
    ``float32`` on the CPU).

    The checkpoint is pinned to the recorded hub commit, and the rebuilt
    tokenizer (and, for local checkpoints, the weights' SHA-256) must match
    what was recorded, else :class:`IncompatibleModelError`. Instances are
    cached: later calls with the same description return the same loaded
    encoder, so ``load_query_encoder(d).encode_queries([text])`` is cheap
    after the first call.
    """
    if not isinstance(info, Mapping):
        raise EncoderConfigError(f"encoder description must be a mapping, got {type(info).__name__}")
    if info.get("format") != DESCRIBE_FORMAT or not isinstance(info.get("config"), Mapping):
        raise EncoderConfigError(f"not an lsr encoder description (format {info.get('format')!r}, "
                                 f"expected {DESCRIBE_FORMAT!r} with a 'config')")
    if dtype is None:
        dtype = info.get("dtype") if info.get("dtype") in ("float32", "bfloat16", "float16") else "float32"
        if dtype == "float16" and device == "cpu":
            dtype = "float32"
    key = json.dumps({"config": info["config"], "query": info.get("query"), "device": device, "dtype": dtype},
                     sort_keys=True, default=str)
    with _LOCK:
        hit = _QUERY_CACHE.get(key)
    if hit is not None:
        return hit
    cfg = EncoderConfig.from_dict(info["config"], where="encoder description")
    recorded = info.get("query") if isinstance(info.get("query"), Mapping) else {}
    qside = cfg.query
    commit = recorded.get("revision")
    if commit and not os.path.isdir(qside.model) and qside.revision is None:
        qside = qside.replace(revision=commit)
        cfg = cfg.replace(query=qside)
    runtime = RuntimeConfig(device=device, dtype=dtype, threads=threads)
    enc = QueryEncoder(cfg, runtime)
    side = enc.query_side
    want = recorded.get("tokenizer_hash")
    if want and want != side.tokenizer_hash:
        raise IncompatibleModelError(f"query tokenizer of {qside.model} differs from the one recorded "
                                     "in the encoder description")
    want_sha = recorded.get("sha256")
    if want_sha and side.identity().get("sha256") not in (None, want_sha):
        raise IncompatibleModelError(f"query model {qside.model} has changed since the encoder description "
                                     "was written (weights SHA-256 differs)")
    with _LOCK:
        return _QUERY_CACHE.setdefault(key, enc)


__all__ = [
    "SHIPPED_PRESETS",
    "PRESET_IN_CHECKPOINT",
    "available_encoders",
    "get_config",
    "load_encoder",
    "load_query_encoder",
    "register_encoder",
    "register_presets",
    "resolve_config",
    "shipped_presets",
    "with_model_path",
]
