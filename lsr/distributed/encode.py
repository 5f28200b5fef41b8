"""Encoding a corpus on Ray: ``lsr encode --ray`` and ``lsr index --encoder ... --ray``.

The corpus becomes a Ray Dataset whose rows are *chunks*: ``chunk_docs``
consecutive documents each, read by lsr's own corpus reader
(:func:`lsr.encoders.collection.iter_chunks`, so JSONL, TSV and ``irds:``
sources, ``limit``, resuming after ``skip`` documents and the duplicate-id
check behave as without Ray) in one read task on the driver's node, where the
corpus path is. ``map_batches`` runs a pool of actors (:class:`EncodeActor`):
each loads the encoder's document model once, then encodes one chunk per call
with :meth:`~lsr.encoders.Encoder.encode_documents_sparse`, exactly the call the
single-process loop makes for the same chunk, and returns it in CSR form (int32
token ids, float32 weights, int64 row pointers as bytes; never JSON). Ray
Data's ``preserve_order`` brings the chunks back to the driver in corpus order,
so the caller (:func:`lsr.encoders.encode_corpus`,
:func:`lsr.index.text_index.build_index_from_text`) writes the same part files
and feeds the same index builder, in the same order, as the single-process run:
the vectors are the same (on the CPU with the same thread count, bit for bit;
other thread counts or a GPU can change the last float bits) and so is the index.

Resources: each actor reserves ``threads`` Ray CPUs (the encoder's
``threads``, default 1) and runs torch with that many threads; with a
``cuda`` device each actor reserves one GPU (Ray assigns it; ``cuda:N`` is
refused, as Ray chooses the GPU). The read task reserves no CPU, so actors
may take them all. The number of actors defaults to the cluster's GPUs
(``cuda``) or its CPUs divided by the threads per actor; each actor holds a
copy of the model. Every node that runs an actor needs lsr with the encoder's
extra installed, and a local model directory at the same path.

Connecting (:func:`connect`): a running Ray instance in this process is used
as it is; otherwise ``address=None`` starts a local one (``ray.init()``) and an
address connects to that cluster (``ray.init(address=...)``) after a short TCP
check, so an unreachable address fails in seconds rather than after Ray's
minute of retries. A Ray instance started here stays up for the rest of the
process (``ray.shutdown()`` ends it). ``ray.init`` replaces the process's SIGTERM
handler; the one in place before is put back (so ``lsr`` still exits cleanly on
SIGTERM, keeping the finished parts).

Errors: an :class:`~lsr.errors.LsrError` raised while reading the corpus or
encoding a chunk (a malformed record, a duplicate id, a model that does not
load) reaches the caller as that error with its own one-line message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from lsr.errors import InputError, LsrError

from . import import_ray

# Ray addresses that ray.init resolves itself (no host:port to check)
_SPECIAL_ADDRESSES = ("auto", "local")
_CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class RayEncodeConfig:
    """Where and with how many actors to encode on Ray.

    ``address``: None for the Ray instance running in this process, or a new
    local one; ``auto``, ``host:port`` (a cluster's GCS) or ``ray://host:port``
    (Ray Client) to connect to a cluster. ``actors``: the size of the actor pool
    (default: the cluster's GPUs with a ``cuda`` device, else its CPUs divided by
    the encoder's threads per actor).
    """

    address: str | None = None
    actors: int | None = None

    def __post_init__(self) -> None:
        a = self.address
        if a is not None and (not isinstance(a, str) or not a.strip() or any(c.isspace() for c in a)):
            raise InputError(f"Ray address must be 'auto', host:port or ray://host:port, got {a!r}")
        n = self.actors
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
            raise InputError(f"the number of Ray actors must be a positive integer, got {n!r}")


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a ``host:port`` or ``ray://host:port`` address; None for ``auto``/``local``."""
    if address in _SPECIAL_ADDRESSES:
        return None
    rest = address.removeprefix("ray://")
    if "://" in rest:
        raise InputError(f"Ray address {address!r}: expected 'auto', host:port or ray://host:port")
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"Ray address {address!r}: expected 'auto', host:port or ray://host:port")
    return host, int(port)


def connect(address: str | None = None):
    """The ``ray`` module, connected: the running instance, a new local one, or the cluster at ``address``."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    hp = None if address is None else _host_port(address)
    if hp is not None:
        try:
            with socket.create_connection(hp, timeout=_CONNECT_TIMEOUT):
                pass
        except OSError as e:
            raise InputError(f"cannot reach a Ray cluster at {address} ({e.strerror or e})") from None
    kwargs: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address is None:
        kwargs["include_dashboard"] = False
    main = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if main else None
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        raise InputError(f"cannot connect to Ray at {address or 'a new local instance'}: {msg}") from None
    finally:
        if sigterm is not None:   # ray.init installs its own SIGTERM handler: the caller's comes back
            signal.signal(signal.SIGTERM, sigterm)
    return ray


def driver_encoder(spec, *, device: str = "cpu", dtype: str = "float32", threads: int | None = None,
                   revision: str | None = None, model_path: str | os.PathLike | None = None):
    """An :class:`~lsr.encoders.Encoder` for :class:`RayEncoding`: ``spec`` resolved as
    :func:`~lsr.encoders.load_encoder` resolves it, with ``device`` and ``dtype`` left to the actors
    (the driver needs no GPU for a ``cuda`` encode; they are checked where the actors run)."""
    from lsr.encoders import Encoder, RuntimeConfig, load_encoder

    base = load_encoder(spec, device="cpu", dtype="float32", threads=threads, revision=revision,
                        model_path=model_path)
    return Encoder(base.config, RuntimeConfig(device=device, dtype=dtype, threads=threads))


class EncodeActor:
    """One actor of the pool: loads the document model once (in ``__init__``), then encodes chunks.

    A call gets a pyarrow table of chunks (``ids``, ``texts``, ``expansions``: lists per row) and
    returns one row per chunk: ``ids``, ``texts`` (empty unless ``keep_text``), ``indptr`` (int64
    bytes), ``tok`` (int32 bytes), ``weights`` (float32 bytes), ``terms`` (the batch's own term list
    for whole-word encoders, else empty), ``token_ids``, ``vocab_size``, the chunk's ``truncated``,
    ``empty`` and ``expanded`` counts, and ``error`` (an LsrError's message, with ``error_input``
    true for an InputError; empty when the chunk was encoded).
    """

    def __init__(self, config, runtime, batch_size: int, keep_text: bool):
        from lsr.encoders import Encoder

        self.batch_size = batch_size
        self.keep_text = keep_text
        self.error: LsrError | None = None
        try:
            self.encoder = Encoder(config, runtime)
            self.encoder.encode_documents_sparse(["lsr"], batch_size=1)   # loads the model here, once
        except LsrError as e:
            self.error = e

    def __call__(self, table):
        import pyarrow as pa

        rows: dict[str, list] = {k: [] for k in (
            "ids", "texts", "indptr", "tok", "weights", "terms", "token_ids", "vocab_size", "truncated",
            "empty", "expanded", "error", "error_input")}
        for chunk in table.to_pylist():
            err = self.error
            batch = None
            if err is None:
                exps = chunk["expansions"]
                try:
                    batch = self.encoder.encode_documents_sparse(
                        chunk["texts"], batch_size=self.batch_size,
                        expansions=exps if any(e is not None for e in exps) else None)
                except LsrError as e:
                    err = e
            rows["ids"].append(chunk["ids"])
            rows["texts"].append(chunk["texts"] if self.keep_text else [])
            if batch is None:
                for k, v in (("indptr", b""), ("tok", b""), ("weights", b""), ("terms", []), ("token_ids", True),
                             ("vocab_size", 0), ("truncated", 0), ("empty", 0), ("expanded", 0)):
                    rows[k].append(v)
                rows["error"].append(str(err) or type(err).__name__)
                rows["error_input"].append(isinstance(err, InputError))
                continue
            st = self.encoder.last_doc_stats
            rows["indptr"].append(batch.indptr.astype("int64", copy=False).tobytes())
            rows["tok"].append(batch.ids.astype("int32", copy=False).tobytes())
            rows["weights"].append(batch.weights.astype("float32", copy=False).tobytes())
            rows["terms"].append([] if batch.token_ids else [str(t) for t in batch.terms.tolist()])
            rows["token_ids"].append(bool(batch.token_ids))
            rows["vocab_size"].append(len(batch.terms) if batch.token_ids else 0)
            rows["truncated"].append(st.truncated)
            rows["empty"].append(st.empty)
            rows["expanded"].append(st.expanded)
            rows["error"].append("")
            rows["error_input"].append(False)
        schema = pa.schema([("ids", pa.list_(pa.string())), ("texts", pa.list_(pa.string())),
                            ("indptr", pa.binary()), ("tok", pa.binary()), ("weights", pa.binary()),
                            ("terms", pa.list_(pa.string())), ("token_ids", pa.bool_()),
                            ("vocab_size", pa.int64()), ("truncated", pa.int64()), ("empty", pa.int64()),
                            ("expanded", pa.int64()), ("error", pa.string()), ("error_input", pa.bool_())])
        return pa.table(rows, schema=schema)


def _chunk_datasource(source: str, *, chunk_docs: int, skip: int, limit: int | None,
                      expansion_field: str | None):
    """A Ray Datasource of one read task (on the driver's node) yielding a one-row table per chunk."""
    import pyarrow as pa
    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata

    schema = pa.schema([("ids", pa.list_(pa.string())), ("texts", pa.list_(pa.string())),
                        ("expansions", pa.list_(pa.string()))])

    def read():
        from lsr.encoders.collection import iter_chunks

        for chunk in iter_chunks(source, chunk_docs=chunk_docs, skip=skip, limit=limit,
                                 expansion_field=expansion_field):
            yield pa.table({"ids": [[r.id for r in chunk]], "texts": [[r.text for r in chunk]],
                            "expansions": [[r.expansion for r in chunk]]}, schema=schema)

    class LsrCorpusDatasource(Datasource):
        supports_distributed_reads = False   # the corpus path is on the driver's node

        def estimate_inmemory_data_size(self):
            return None

        def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
            return [ReadTask(read, BlockMetadata(num_rows=None, size_bytes=None, input_files=None,
                                                 exec_stats=None))]

    return LsrCorpusDatasource()


def _ray_cause(e: BaseException) -> LsrError | None:
    """The LsrError behind an exception Ray raised (a RayTaskError of one carries it as ``cause``)."""
    seen = 0
    while e is not None and seen < 10:
        cause = getattr(e, "cause", None)
        if isinstance(cause, LsrError):
            return type(cause)(str(cause).split("\n", 1)[0])
        e = e.__cause__
        seen += 1
    return None


@contextlib.contextmanager
def _data_context(ray):
    """Ray Data's settings for one encode: order preserved, no Ray progress bars, INFO lines or warning
    that a small corpus leaves actors idle (lsr draws its own progress); the previous settings come back
    afterwards."""
    import warnings

    ctx = ray.data.DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars, ctx.print_on_execution_start)
    log = logging.getLogger("ray.data")
    level = log.level
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The minimum number of concurrent actors", category=UserWarning)
            yield ctx
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars, ctx.print_on_execution_start = saved
        log.setLevel(level)


class RayEncoding:
    """Encodes chunks of a corpus with ``encoder``'s settings on a Ray actor pool (module docstring).

    Construction connects to Ray (:func:`connect`) and checks that the cluster has what the actors
    need; :meth:`chunks` streams the encoded chunks in corpus order. :meth:`describe` and
    :meth:`runtime_info` give what the single-process encode records (``Encoder.describe()``, the
    runtime with the actors' device, dtype and threads, plus ``ray``: actors and address).
    """

    def __init__(self, encoder, config: RayEncodeConfig | None = None, *, batch_size: int = 32):
        from lsr.encoders import Encoder, RuntimeConfig

        config = config or RayEncodeConfig()
        if not isinstance(config, RayEncodeConfig):
            raise InputError(f"ray must be a RayEncodeConfig, got {type(config).__name__}")
        if not isinstance(encoder, Encoder):
            raise InputError("encoding on Ray needs a loaded Encoder (lsr.encoders.load_encoder or "
                             "lsr.distributed.encode.driver_encoder)")
        rt = encoder.runtime
        if rt.device.startswith("cuda:"):
            raise InputError(f"device {rt.device!r} with Ray: give 'cuda' (Ray assigns each actor its GPU)")
        self.encoder = encoder
        self.config = config
        self.batch_size = batch_size
        self.gpu = rt.device == "cuda"
        self.threads = rt.threads or 1
        self.actor_runtime = RuntimeConfig(device=rt.device, dtype=rt.dtype, threads=self.threads)
        # the driver describes the encoder and knows its vocabulary without running the model:
        # on the CPU when the actors use a device the driver may lack
        self._twin = encoder if rt.device == "cpu" else Encoder(
            encoder.config, RuntimeConfig(device="cpu", dtype="float32", threads=rt.threads))
        self.ray = connect(config.address)
        res = self.ray.cluster_resources()
        cpus, gpus = int(res.get("CPU", 0)), int(res.get("GPU", 0))
        if self.gpu:
            if gpus < 1:
                raise InputError("device 'cuda' with Ray: the Ray cluster has no GPUs")
            self.actors = config.actors or gpus
            if self.actors > gpus:
                raise InputError(f"{self.actors} Ray actors with one GPU each, but the cluster has {gpus} GPUs")
            self.cpus_per_actor = 1
        else:
            self.cpus_per_actor = self.threads
            fit = cpus // self.threads
            if fit < 1:
                raise InputError(f"{self.threads} threads per Ray actor, but the cluster has {cpus} CPUs")
            self.actors = config.actors or fit
            if self.actors > fit:
                raise InputError(f"{self.actors} Ray actors of {self.threads} thread(s) each need "
                                 f"{self.actors * self.threads} CPUs; the cluster has {cpus}")

    @property
    def vocab(self):
        """The document side's term strings by token id (the driver's copy of the tokenizer)."""
        return self._twin.doc_side.vocab

    def describe(self) -> dict:
        """``Encoder.describe()`` of the encoder, with the actors' dtype."""
        return {**self._twin.describe(), "dtype": self.actor_runtime.dtype}

    def runtime_info(self) -> dict:
        """The runtime recorded beside the description (as :func:`~lsr.encoders.collection.runtime_info`)."""
        rt = self.actor_runtime
        return {"device": rt.device, "dtype": rt.dtype, "threads": self.threads,
                "threads_given": self.encoder.runtime.threads is not None, "batch_size": self.batch_size,
                "ray": {"actors": self.actors, "address": self.config.address}}

    def chunks(self, source: str, *, chunk_docs: int, skip: int = 0, limit: int | None = None,
               expansion_field: str | None = None, keep_text: bool = False,
               progress: Callable[[int], None] | None = None) -> Iterator[tuple]:
        """``(doc ids, texts or None, SparseBatch, EncodeStats)`` per chunk of ``source``, in corpus order:
        the chunks :func:`~lsr.encoders.collection.iter_chunks` forms with these arguments, encoded as
        :func:`~lsr.encoders.collection.encode_chunks` encodes them. ``progress(n)`` after each chunk."""
        import numpy as np

        from lsr.encoders.sides import EncodeStats, SparseBatch

        ray = self.ray
        source = os.fspath(source)
        if not source.startswith("irds:"):
            source = os.path.abspath(source)   # the read task's working directory is not ours
        vocab = self.vocab
        with _data_context(ray):
            ds = ray.data.read_datasource(
                _chunk_datasource(source, chunk_docs=chunk_docs, skip=skip, limit=limit,
                                  expansion_field=expansion_field), num_cpus=0)
            ds = ds.map_batches(
                EncodeActor, batch_size=1, batch_format="pyarrow",
                fn_constructor_kwargs={"config": self.encoder.config, "runtime": self.actor_runtime,
                                       "batch_size": self.batch_size, "keep_text": keep_text},
                compute=ray.data.ActorPoolStrategy(size=self.actors), num_cpus=self.cpus_per_actor,
                num_gpus=1 if self.gpu else 0)
            try:
                for row in ds.iter_rows():
                    if row["error"]:
                        raise (InputError if row["error_input"] else LsrError)(row["error"])
                    if row["token_ids"]:
                        if row["vocab_size"] != len(vocab):
                            raise LsrError(f"a Ray actor's tokenizer has {row['vocab_size']} tokens, the "
                                           f"driver's {len(vocab)}: the nodes see different models")
                        terms = vocab
                    else:
                        terms = np.array(row["terms"], dtype=object) if row["terms"] else np.zeros(0, dtype=object)
                    batch = SparseBatch(np.frombuffer(row["indptr"], dtype=np.int64),
                                        np.frombuffer(row["tok"], dtype=np.int32),
                                        np.frombuffer(row["weights"], dtype=np.float32), terms, row["token_ids"])
                    ids = list(row["ids"])
                    stats = EncodeStats(texts=len(ids), empty=row["empty"], truncated=row["truncated"],
                                        expanded=row["expanded"])
                    if progress is not None:
                        progress(len(ids))
                    yield ids, (list(row["texts"]) if keep_text else None), batch, stats
            except Exception as e:   # an LsrError raised in a read task or actor comes wrapped by Ray
                cause = _ray_cause(e)
                if cause is not None:
                    raise cause from None
                raise


__all__ = ["EncodeActor", "RayEncodeConfig", "RayEncoding", "connect", "driver_encoder"]
