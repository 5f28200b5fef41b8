"""lsr.encoders: learned sparse encoders (SPLADE, SparTerm, uniCOIL, DeepImpact, DeeperImpact).

Quick use::

    from lsr.encoders import load_encoder
    enc = load_encoder("path/to/splade-checkpoint")          # or "splade-v3", a YAML preset, a config
    docs = enc.encode_documents(["first document", "second"])  # [{term: weight}, ...]
    q = enc.encode_queries(["a query"])[0]
    info = enc.describe()                                      # JSON-serialisable
    # later, e.g. in the searcher:
    from lsr.encoders import load_query_encoder
    vec = load_query_encoder(info).encode_queries(["a query"])[0]

See ``docs/encoders.md`` for the formulas, the public-model mapping table and
the ``lsr encode`` command. Importing this package does not import torch;
models load on first use.
"""

from .checkpoints import PUBLIC_MODELS, PUBLIC_NAMES, public_config
from .config import (
    DTYPES,
    KINDS,
    EncoderConfig,
    ExpansionConfig,
    RuntimeConfig,
    SideConfig,
)
from .encoder import DESCRIBE_FORMAT, Encoder, QueryEncoder
from .errors import (
    DeviceError,
    EncoderConfigError,
    IncompatibleModelError,
    ModelLoadError,
    UnknownEncoderError,
)
from .heads import clear_model_cache
from .registry import (
    available_encoders,
    get_config,
    load_encoder,
    load_query_encoder,
    register_encoder,
    register_presets,
    resolve_config,
    shipped_presets,
    with_model_path,
)
from .sides import EncodeStats

__all__ = [
    "DESCRIBE_FORMAT",
    "DTYPES",
    "KINDS",
    "PUBLIC_MODELS",
    "PUBLIC_NAMES",
    "DeviceError",
    "EncodeReport",
    "EncodeStats",
    "Encoder",
    "EncoderConfig",
    "EncoderConfigError",
    "ExpansionConfig",
    "IncompatibleModelError",
    "ModelLoadError",
    "QueryEncoder",
    "RuntimeConfig",
    "SideConfig",
    "UnknownEncoderError",
    "available_encoders",
    "clear_model_cache",
    "encode_corpus",
    "encode_query_file",
    "get_config",
    "load_encoder",
    "load_query_encoder",
    "public_config",
    "register_encoder",
    "register_presets",
    "resolve_config",
    "shipped_presets",
    "with_model_path",
]


def __getattr__(name: str):
    # The corpus tools import lsr.io and optional readers; load them on demand.
    if name in ("encode_corpus", "encode_query_file", "EncodeReport"):
        from . import collection

        return getattr(collection, name)
    raise AttributeError(f"module 'lsr.encoders' has no attribute {name!r}")
