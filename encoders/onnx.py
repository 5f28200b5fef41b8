"""ONNX export of the encoders' neural sides, and the onnxruntime side that runs an export.

Export (:func:`export_onnx`, ``lsr onnx export MODEL -o DIR``): each neural
side of an encoder becomes one ONNX graph from token ids to the side's vocabulary
weights, traced with ``torch.onnx.export`` (dynamic batch and sequence axes)::

    input_ids       int64 [batch, sequence]
    attention_mask  int64 [batch, sequence]   (1 = token, 0 = padding)
    weights         float32 [batch, vocabulary]

For ``splade`` that is backbone -> MLM logits -> ``log(1 + ReLU)`` (twice for
``activation: log1p_relu``) -> max (or sum) over the attended tokens; what is
not a tensor computation (tokenisation, truncation, dropping zeros,
``min_weight``, ``top_k``) stays in lsr's shared side code, so an export
truncates and prunes exactly as the torch side does. Only ``splade`` sides are
exported; ``tokens`` / ``words`` sides (inference-free queries) need no graph.

The export directory is self-describing: the graph(s) (``model.onnx``, or
``doc.onnx`` and ``query.onnx`` when the two sides run different graphs), the
tokenizer files, and ``lsr-onnx.json`` (:data:`MARKER`): the encoder's name, each
side's config as lsr records it (with the model it was exported from), that
model's identity (path or hub commit, weights SHA-256, tokenizer hash), the
opset, and each graph's SHA-256, size, inputs and outputs. It is written in a
sibling directory and renamed into place; ``overwrite`` replaces only an
earlier export.

Loading (one code path): an export directory *is* a checkpoint. Any encoder
spec that resolves to it (``load_encoder(DIR)``, ``lsr encode DIR``, ``lsr index
--encoder DIR``, ``--query-encoder DIR``) gives sides whose ``model`` is the
directory, and :func:`lsr.encoders.sides.make_side` builds an :class:`OnnxSide`
for every neural side whose model directory holds :data:`MARKER`. An index built
with such an encoder records it, so :func:`lsr.encoders.load_query_encoder` and
``lsr search --query-format text`` / ``Searcher(index).search("text")`` encode
queries with onnxruntime again. :class:`OnnxSide` runs on the CPU in float32
with ``runtime.threads`` onnxruntime intra-op threads (else the free CPUs, as
the torch sides choose them), one session per thread count.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from lsr.errors import InputError
from lsr.outputs import marked_dir_check

from .config import EncoderConfig, RuntimeConfig, SideConfig
from .errors import DeviceError, EncoderConfigError, IncompatibleModelError, ModelLoadError, one_line
from .heads import SPLADE_HEAD_ACTIVATION, cached
from .sides import SideEncoder

MARKER = "lsr-onnx.json"
FORMAT = "lsr-onnx/1"
DEFAULT_OPSET = 17
INPUTS = ("input_ids", "attention_mask")
OUTPUT = "weights"
EXPORTABLE_KINDS = ("splade",)
# largest batch x sequence x vocabulary logits tensor one onnxruntime call may build (bytes, float32)
LOGITS_BUDGET = 256 << 20
# an export whose graph differs from torch by more than this on the check batch is refused
CHECK_TOLERANCE = 1e-4


def is_export(path: str) -> bool:
    """Whether ``path`` is a directory holding an lsr ONNX export (its :data:`MARKER`)."""
    return isinstance(path, str) and os.path.isfile(os.path.join(path, MARKER))


def _need(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ModelLoadError(f"the ONNX backend needs the {module} package: pip install 'lsr[onnx]'") from None


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _graph_key(cfg: SideConfig) -> tuple:
    """What decides a side's graph (``max_length``, ``top_k``, ``min_weight`` are outside it)."""
    return (cfg.kind, cfg.model, cfg.revision, cfg.pooling, cfg.activation, cfg.trust_remote_code)


def read_marker(directory: str) -> dict:
    """The checked :data:`MARKER` of an export directory."""
    from lsr.io import read_json_object

    path = os.path.join(directory, MARKER)
    data = read_json_object(path, ModelLoadError, f"ONNX export description ({MARKER})")
    sides = data.get("sides")
    files = data.get("files")
    if data.get("format") != FORMAT or not isinstance(sides, dict) or not isinstance(files, dict) \
            or set(sides) != {"doc", "query"}:
        raise ModelLoadError(f"{path}: not an lsr ONNX export description (format {data.get('format')!r}, "
                             f"expected {FORMAT!r} with doc and query sides)")
    for role, side in sides.items():
        if not isinstance(side, dict) or not isinstance(side.get("config"), dict):
            raise ModelLoadError(f"{path}: side {role!r} has no config")
        f = side.get("file")
        if f is not None and (f not in files or not isinstance(files[f], dict)):
            raise ModelLoadError(f"{path}: side {role!r} names the graph {f!r}, which the export does not list")
    return data


def export_config(directory: str) -> EncoderConfig:
    """The :class:`EncoderConfig` of an export directory: its recorded sides with ``model`` = the
    directory (absolute), so that the neural sides run its graphs (see the module docstring)."""
    directory = os.path.abspath(directory)
    data = read_marker(directory)
    enc = data.get("encoder") if isinstance(data.get("encoder"), dict) else {}

    def side(role: str) -> SideConfig:
        rec = data["sides"][role]
        cfg = SideConfig.from_dict(rec["config"], where=f"{MARKER} {role} side")
        changes: dict[str, Any] = {"model": directory, "revision": None, "tokenizer": None}
        weights_file = rec.get("weights_file")
        if weights_file:
            changes["weights"] = os.path.join(directory, weights_file)
        return cfg.replace(**changes)

    try:
        return EncoderConfig(name=str(enc.get("name") or os.path.basename(directory)),
                             type=str(enc.get("type") or "custom"),
                             description=str(enc.get("description") or f"ONNX export {directory}"),
                             doc=side("doc"), query=side("query"))
    except EncoderConfigError as e:
        raise ModelLoadError(f"{os.path.join(directory, MARKER)}: {e}") from None


# --------------------------------------------------------------------------- export
def _graph_module(parts, cfg: SideConfig):
    """The traced computation: token ids -> pooled vocabulary weights (see the module docstring).

    Max pooling on a BERT / DistilBERT MLM head is computed as the torch side's fused pooling does
    it (:func:`lsr.encoders.heads.fused_max_pool`): the vocabulary scores of each token without the
    bias, their max over the tokens, then the bias and the activation on the ``[batch, vocabulary]``
    result only (the activation is monotone and ``max_i (x_i + b) = max_i x_i + b``). Padding rows
    are replaced by the text's first attended row before the projection, which cannot change a
    maximum, so no ``[batch, sequence, vocabulary]`` mask or bias pass is needed. Sum pooling (and
    MLM heads of other families) use the masked reference pooling
    (:func:`lsr.encoders.heads.pool_logits`) on the full logits.
    """
    import torch

    from .heads import LOG1P_ACTIVATIONS, pool_logits

    act = SPLADE_HEAD_ACTIVATION[cfg.activation]
    pooling = cfg.pooling

    class SpladeGraph(torch.nn.Module):
        def __init__(self, model) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
            return pool_logits(logits, attention_mask.unsqueeze(-1) > 0, pooling, act).float()

    class SpladeMaxGraph(torch.nn.Module):
        def __init__(self, parts) -> None:
            super().__init__()
            self.model = parts.model
            self.backbone = parts.backbone
            self.transform_fn = parts.transform
            self.weight_t = torch.nn.Parameter(parts.weight.detach().t().contiguous(), requires_grad=False)
            self.bias = torch.nn.Parameter(parts.bias.detach().clone(), requires_grad=False)

        def forward(self, input_ids, attention_mask):
            h = self.backbone(input_ids=input_ids, attention_mask=attention_mask)[0]
            t = self.transform_fn(h)
            keep = attention_mask.unsqueeze(-1) > 0
            first = attention_mask.argmax(1).view(-1, 1, 1).expand(-1, 1, t.shape[-1])
            t = torch.where(keep, t, torch.gather(t, 1, first))
            x = torch.matmul(t, self.weight_t).amax(1) + self.bias
            for _ in range(LOG1P_ACTIVATIONS[act]):
                x = torch.log1p(torch.relu(x))
            return x.float()

    if pooling == "max" and not parts.generic:
        return SpladeMaxGraph(parts).eval()
    return SpladeGraph(parts.model).eval()


def _example_inputs(side: SideEncoder):
    """A padded batch of two real token sequences (different lengths) to trace and check with."""
    enc = side.text.encode(["sparse retrieval with an exported encoder",
                            "a second, longer text: the batch pads it and masks the padding out again"])
    lengths = [len(x) for x in enc.ids]
    L = max(lengths)
    ids = np.full((2, L), side.text.pad_id, dtype=np.int64)
    mask = np.zeros((2, L), dtype=np.int64)
    for r, x in enumerate(enc.ids):
        ids[r, :len(x)] = x
        mask[r, :len(x)] = 1
    return ids, mask


def _export_graph(side, path: str, opset: int) -> float:
    """Trace ``side``'s graph into ``path``; returns the largest difference between onnxruntime and the
    torch side on a padded batch (an export above :data:`CHECK_TOLERANCE` is refused)."""
    import torch

    parts = side.parts
    module = _graph_module(parts, side.cfg)
    ids, mask = _example_inputs(side)
    args = (torch.from_numpy(ids), torch.from_numpy(mask))
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            OUTPUT: {0: "batch"}}
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, path, dynamo=False, input_names=list(INPUTS), output_names=[OUTPUT],
                              dynamic_axes=axes, opset_version=opset, do_constant_folding=True)
    except Exception as e:  # a model the tracer cannot export
        raise IncompatibleModelError(f"cannot export the {side.role} side of {side.ckpt.label} to ONNX "
                                     f"(opset {opset}): {one_line(e)}") from e
    with torch.inference_mode():   # what the torch side computes for the same batch
        ref = side._splade_batch(parts, args[0], args[1], [int(n) for n in mask.sum(1)])
    got = _session(path, 1).run([OUTPUT], {"input_ids": ids, "attention_mask": mask})[0]
    diff = float(np.abs(got - ref).max())
    if not diff <= CHECK_TOLERANCE:
        raise IncompatibleModelError(f"the ONNX graph of the {side.role} side of {side.ckpt.label} does not "
                                     f"reproduce torch (largest difference {diff:.3g} on the check batch)")
    return diff


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote."""

    path: str
    graphs: dict[str, str | None]   # side -> graph file (None: no graph, e.g. an inference-free query side)
    files: list[str]
    opset: int
    max_abs_diff: float             # largest |onnxruntime - torch| on the check batch, over the graphs
    seconds: float


_replaceable = marked_dir_check(MARKER, FORMAT, "all_files", "ONNX export")


def export_onnx(spec, out_dir: str | os.PathLike, *, model_path: str | os.PathLike | None = None,
                revision: str | None = None, opset: int = DEFAULT_OPSET, overwrite: bool = False) -> ExportReport:
    """Export the neural side(s) of the encoder ``spec`` (anything :func:`lsr.encoders.load_encoder`
    takes) to the directory ``out_dir`` (see the module docstring); returns an :class:`ExportReport`.

    After tracing, each graph is run by onnxruntime on a padded batch of two texts and compared
    with torch; the largest difference is recorded (``check.max_abs_diff``) and reported.
    """
    from lsr import __version__
    from lsr.outputs import move_into_place, refuse_input_overlap, start_output_dir

    from .registry import load_encoder

    t0 = time.perf_counter()
    if not isinstance(opset, int) or isinstance(opset, bool) or not 14 <= opset <= 20:
        raise InputError(f"opset must be an integer in 14..20, got {opset!r}")
    _need("onnx")
    _need("onnxruntime")
    encoder = load_encoder(spec, revision=revision, model_path=model_path, threads=1)
    cfg = encoder.config
    neural = [role for role in ("doc", "query") if getattr(cfg, role).neural]
    if not neural:
        raise InputError(f"encoder {cfg.name!r} has no neural side (both are {cfg.doc.kind}/{cfg.query.kind}): "
                         "there is nothing to export to ONNX")
    for role in neural:
        kind = getattr(cfg, role).kind
        if kind not in EXPORTABLE_KINDS:
            raise InputError(f"encoder {cfg.name!r}: its {role} side is {kind}; ONNX export supports "
                             f"{', '.join(EXPORTABLE_KINDS)} sides (and sides without a transformer)")
    sides = {role: (encoder.doc_side if role == "doc" else encoder.query_side) for role in ("doc", "query")}
    if any(isinstance(sides[r], OnnxSide) for r in neural):
        raise InputError(f"encoder {cfg.name!r} already runs an ONNX export ({sides[neural[0]].cfg.model}); "
                         "export the torch model it came from (its lsr-onnx.json names it)")
    hashes = {sides[r].tokenizer_hash for r in ("doc", "query")}
    if len(hashes) > 1:
        raise InputError(f"encoder {cfg.name!r}: its document and query tokenizers differ; an export holds one "
                         "tokenizer (export each side's encoder separately)")
    inputs = [s.ckpt.spec for s in sides.values() if s.ckpt.local]
    refuse_input_overlap(out_dir, inputs)
    out, build = start_output_dir(out_dir, overwrite, _replaceable, "an ONNX export")
    try:
        keys = {role: _graph_key(getattr(cfg, role)) for role in neural}
        names: dict[tuple, str] = {}
        if len(set(keys.values())) == 1:
            names[next(iter(keys.values()))] = "model.onnx"
        else:
            for role in neural:
                names[keys[role]] = f"{role}.onnx"
        files: dict[str, dict] = {}
        worst = 0.0
        for role in neural:
            name = names[keys[role]]
            if name in files:
                continue
            path = os.path.join(build, name)
            diff = _export_graph(sides[role], path, opset)
            worst = max(worst, diff)
            parts = sides[role].parts
            files[name] = {"sha256": _sha256(path), "bytes": os.path.getsize(path), "opset": opset,
                           "inputs": list(INPUTS), "outputs": [OUTPUT], "vocab_size": parts.vocab_size,
                           "max_positions": getattr(parts.model.config, "max_position_embeddings", None),
                           "check": {"max_abs_diff": diff, "texts": 2}}
        tok_files = list(sides[neural[0]].hf_tokenizer.save_pretrained(build))
        tok_names = sorted({os.path.basename(f) for f in tok_files if os.path.isfile(f)})
        recorded: dict[str, dict] = {}
        extra: list[str] = []
        for role in ("doc", "query"):
            s = sides[role]
            rec: dict[str, Any] = {"config": s.cfg.to_dict(), "source": s.describe(),
                                   "file": names[keys[role]] if role in keys else None}
            wpath = getattr(s, "weights_path", None)
            if wpath:   # a tokens side's weight file travels with the export
                dest = f"{role}-token-weights{os.path.splitext(wpath)[1]}"
                shutil.copyfile(wpath, os.path.join(build, dest))
                rec["weights_file"] = dest
                extra.append(dest)
            recorded[role] = rec
        marker = {
            "format": FORMAT, "lsr_version": __version__,
            "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "encoder": {"name": cfg.name, "type": cfg.type, "description": cfg.description},
            "opset": opset, "sides": recorded, "files": files,
            "tokenizer_files": tok_names, "tokenizer_hash": sides[neural[0]].tokenizer_hash,
            "exporter": {"torch": _version("torch"), "onnx": _version("onnx"),
                         "onnxruntime": _version("onnxruntime"), "transformers": _version("transformers")},
            "all_files": sorted({*files, *tok_names, *extra}),
        }
        tmp = os.path.join(build, MARKER + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(marker, f, indent=2, sort_keys=False)
            f.write("\n")
        os.replace(tmp, os.path.join(build, MARKER))
        move_into_place(build, out, _replaceable)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    graphs = {role: recorded[role]["file"] for role in ("doc", "query")}
    return ExportReport(out, graphs, [MARKER, *marker["all_files"]], opset, worst, time.perf_counter() - t0)


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


# --------------------------------------------------------------------------- running an export
def _session(path: str, threads: int):
    """An onnxruntime CPU session for ``path`` with ``threads`` intra-op threads (cached per path, thread
    count and file state)."""
    ort = _need("onnxruntime")
    st = os.stat(path)

    def build():
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        try:
            return ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
        except Exception as e:  # a damaged or foreign file
            raise ModelLoadError(f"cannot load the ONNX graph {path}: {one_line(e)}") from e

    return cached(("onnx-session", path, st.st_size, st.st_mtime_ns, int(threads)), build)


class OnnxSide(SideEncoder):
    """A ``splade`` side that runs the graph of an ONNX export with onnxruntime (CPU, float32).

    Tokenisation, truncation, batching and pruning are the shared :class:`SideEncoder` code, so its
    vectors are the torch side's up to float rounding. Batches are split so that no call builds a
    logits tensor over :data:`LOGITS_BUDGET` bytes.
    """

    native_sparse = True

    def __init__(self, cfg: SideConfig, runtime: RuntimeConfig, role: str) -> None:
        super().__init__(cfg, runtime, role)
        if self.device.type != "cpu":
            raise DeviceError(f"the ONNX export {cfg.model} runs on the CPU (onnxruntime); got device "
                              f"{runtime.device!r}")
        if runtime.dtype != "float32":
            raise DeviceError(f"the ONNX export {cfg.model} runs in float32; got dtype {runtime.dtype!r}")
        self.export_dir = os.path.abspath(cfg.model)
        self.marker = read_marker(self.export_dir)
        key = _graph_key(cfg.replace(model=self.export_dir, revision=None))
        found = None
        for r in (role, "query" if role == "doc" else "doc"):
            rec = self.marker["sides"][r]
            if rec.get("file") is None:
                continue
            try:
                rcfg = SideConfig.from_dict(rec["config"], where=f"{MARKER} {r} side")
            except EncoderConfigError as e:
                raise ModelLoadError(f"{os.path.join(self.export_dir, MARKER)}: {e}") from None
            if _graph_key(rcfg.replace(model=self.export_dir, revision=None)) == key:
                found = rec
                break
        if found is None:
            raise IncompatibleModelError(
                f"{self.export_dir}: no exported graph computes a {cfg.kind} side with {cfg.pooling} pooling and "
                f"activation {cfg.activation} (export the encoder with those settings)")
        self.record = found
        self.graph_file = found["file"]
        self.graph_path = os.path.join(self.export_dir, self.graph_file)
        self.graph_info = self.marker["files"][self.graph_file]
        if not os.path.isfile(self.graph_path):
            raise ModelLoadError(f"{self.export_dir}: the graph {self.graph_file} is missing")
        vocab = self.graph_info.get("vocab_size")
        if isinstance(vocab, int) and vocab != len(self.vocab):
            raise IncompatibleModelError(f"{self.graph_path}: its vocabulary ({vocab}) and the tokenizer's "
                                         f"({len(self.vocab)}) differ in size")
        limit = self.graph_info.get("max_positions")
        if isinstance(limit, int) and cfg.max_length > limit:
            raise EncoderConfigError(f"{role} side: max_length {cfg.max_length} exceeds the model's {limit} positions")
        self._sessions: dict[int, Any] = {}

    def identity(self) -> dict:
        """The export directory and its graph's SHA-256 (checked against the export's record)."""
        if self._identity is None:
            sha = _sha256(self.graph_path)
            if sha != self.graph_info.get("sha256"):
                raise IncompatibleModelError(f"{self.graph_path} has changed since it was exported (SHA-256 "
                                             "differs from lsr-onnx.json)")
            self._identity = {"model": self.export_dir, "revision": None, "sha256": sha}
        return self._identity

    def _describe_head(self) -> dict:
        src = self.record.get("source") if isinstance(self.record.get("source"), dict) else {}
        return {"head": "mlm", "pooling": self.cfg.pooling, "activation": SPLADE_HEAD_ACTIVATION[self.cfg.activation],
                "backend": "onnxruntime",
                "onnx": {"file": self.graph_file, "opset": self.graph_info.get("opset"),
                         "source": {k: src.get(k) for k in ("model", "revision", "sha256", "tokenizer_hash")}}}

    def session(self, threads: int):
        """The onnxruntime session with ``threads`` intra-op threads (kept by the side once made)."""
        sess = self._sessions.get(threads)
        if sess is None:
            sess = self._sessions[threads] = _session(self.graph_path, threads)
        return sess

    def _encode(self, texts, batch_size, stats, progress):
        enc = self.text.encode(texts)
        stats.truncated += sum(enc.truncated)
        stats.tokens += sum(len(x) for x in enc.ids)
        sess = self.session(self.threads)
        results: list = [None] * len(texts)
        if len(texts) == 1:   # one text: no padding, no batching
            ids = np.array(enc.ids, dtype=np.int64)
            row = sess.run([OUTPUT], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0]
            results[0] = self._row_to_sparse(row)
            if progress is not None:
                progress(1)
            return results
        rows_max = max(1, LOGITS_BUDGET // (4 * max(len(self.vocab), 1)))   # batch x sequence tokens per call
        for idxs in self._batches([len(x) for x in enc.ids], batch_size):
            L = max(len(enc.ids[j]) for j in idxs)
            step = max(1, rows_max // L)
            for s in range(0, len(idxs), step):
                sub = idxs[s: s + step]
                ids, mask = self._pad_arrays(enc.ids, sub)
                out = sess.run([OUTPUT], {"input_ids": ids, "attention_mask": mask})[0]
                for r, j in enumerate(sub):
                    results[j] = self._row_to_sparse(out[r])
            if progress is not None:
                progress(len(idxs))
        return results

    def _pad_arrays(self, ids: list[list[int]], idxs: list[int]) -> tuple[np.ndarray, np.ndarray]:
        L = max(len(ids[j]) for j in idxs)
        arr = np.full((len(idxs), L), self.text.pad_id, dtype=np.int64)
        mask = np.zeros((len(idxs), L), dtype=np.int64)
        for r, j in enumerate(idxs):
            n = len(ids[j])
            arr[r, :n] = ids[j]
            mask[r, :n] = 1
        return arr, mask


__all__ = ["DEFAULT_OPSET", "FORMAT", "MARKER", "ExportReport", "OnnxSide", "export_config", "export_onnx",
           "is_export", "read_marker"]
