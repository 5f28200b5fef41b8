"""``lsr encode``: encode a corpus (and/or queries) into term-weight vectors.

The command only turns its arguments into the encoder configuration
dataclasses and calls :mod:`lsr.encoders` (``load_encoder``,
``encode_corpus``, ``encode_query_file``).
"""

from __future__ import annotations

import argparse
import sys

from ..errors import InputError
from .argtypes import nonneg_float, positive_int

_EPILOG = """\
ENCODER is a registered name (see --list), a YAML preset (configs/encoders/*.yaml), a local checkpoint
directory (a *ForMaskedLM checkpoint is encoded as SPLADE) or a Hugging Face hub id (see docs/encoders.md
for the table of public models).

Corpus and query sources: a JSONL file (BEIR layout _id/title/text, or id/contents), a TSV file
(id<TAB>text), either optionally gzipped, or irds:<ir_datasets id> (e.g. irds:beir/scifact).

The output directory holds part-NNNNN.jsonl.gz files ({"id", "contents", "vector"} per line, what
`lsr index DIR` reads), encode.state (resume information) and, once complete, encoder.json (the
encoder's identity and settings, and the runtime it ran with). A part reaches disk at least every
minute of encoding; an interrupted encode continues where it stopped when the same command is run
again. `lsr index --encoder ENCODER --corpus SRC -o DIR` encodes and indexes in one step.

On Ray: --ray [ADDRESS] encodes the documents on a Ray actor pool (--ray-actors N, one model per
actor, --threads per actor, default 1; one GPU each with --device cuda) and writes the same parts in
the same order; see docs/encoders.md, "Encoding on Ray".

Threads: by default torch runs as many threads as there are free CPUs, chosen when encoding starts
and again every few seconds (a busy machine gets fewer threads than it has CPUs: threads that wait
for a CPU slow the others down).
On a shared machine, setting OMP_WAIT_POLICY=PASSIVE in the environment before starting lsr also
keeps idle torch threads from spinning. Progress: a bar on a terminal, otherwise a line on stderr
every 30 s (docs/s, done/total, ETA).

examples:
  lsr encode splade-v3 --corpus corpus.jsonl --output vectors/
  lsr encode splade-tiny --model-path models/splade-tiny --corpus corpus.jsonl --output vectors/
  lsr encode configs/encoders/splade-tiny.yaml --corpus irds:beir/scifact --output sf/ \\
      --queries irds:beir/scifact/test --queries-output sf-queries.jsonl
  lsr encode splade-v3 --corpus corpus.jsonl --output vectors/ --ray --ray-actors 2
"""


def _unit_float(s: str) -> float:
    v = nonneg_float(s)
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {s!r}")
    return v


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "encode", help="encode a corpus and/or queries into sparse term-weight vectors",
        description="Encode documents (into a vector collection directory) and/or queries (into a JSONL "
                    "file) with a learned sparse encoder: SPLADE, SparTerm, uniCOIL, DeepImpact, DeeperImpact.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("encoder", nargs="?", metavar="ENCODER",
                   help="encoder: registered name, YAML preset, checkpoint directory or hub id")
    p.add_argument("--list", action="store_true", help="list the registered encoder names and exit")

    io = p.add_argument_group("input and output")
    io.add_argument("--corpus", metavar="SRC", help="documents to encode: JSONL, TSV or irds:<id>")
    io.add_argument("--output", "-o", metavar="DIR", help="output vector collection directory (with --corpus)")
    io.add_argument("--queries", metavar="SRC", help="queries to encode: JSONL, TSV or irds:<id>")
    io.add_argument("--queries-output", metavar="FILE",
                    help="output JSONL file of query vectors (.gz to compress; with --queries)")
    io.add_argument("--expansion-field", metavar="NAME",
                    help="JSONL field (TSV: a third column) holding doc2query text for each document; "
                         "uniCOIL appends it, DeepImpact appends its unique new words")
    io.add_argument("--limit", type=positive_int, metavar="N", help="encode only the first N documents")
    io.add_argument("--part-size", type=positive_int, default=10_000, metavar="N",
                    help="at most N documents per output part (default 10000); a part is also written after "
                         "a minute of encoding, so a killed encode loses at most about a minute of work")
    io.add_argument("--overwrite", action="store_true",
                    help="delete an earlier encode's files in --output and start again instead of resuming "
                         "(refused unless --output is an lsr encode output or an empty directory)")
    io.add_argument("--no-progress", action="store_true",
                    help="no progress bar or lines, and no progress bars or INFO lines from transformers and "
                         "ir_datasets")
    add_encoder_args(p)
    p.set_defaults(func=run)


def add_encoder_args(p: argparse.ArgumentParser, *, queries: bool = True) -> None:
    """The model, runtime and doc2query options of ``lsr encode`` (``lsr index --encoder`` takes them too)."""
    model = p.add_argument_group("model")
    model.add_argument("--revision", metavar="REV", help="hub revision (branch, tag or commit) for hub checkpoints")
    model.add_argument("--model-path", metavar="DIR",
                       help="local checkpoint directory that replaces the encoder's model (e.g. a downloaded copy "
                            "of a preset's hub model, to run without network)")
    model.add_argument("--query-encoder", metavar="SPEC",
                       help="take the query side from another encoder spec (same term space)")
    model.add_argument("--doc-max-length", type=positive_int, metavar="N",
                       help="maximum document length in tokens, special tokens included (longer ones are "
                            "truncated and counted)")
    model.add_argument("--query-max-length", type=positive_int, metavar="N", help="maximum query length in tokens")
    model.add_argument("--doc-top-k", type=positive_int, metavar="K", help="keep the K largest weights per document")
    model.add_argument("--query-top-k", type=positive_int, metavar="K", help="keep the K largest weights per query")
    model.add_argument("--doc-min-weight", type=nonneg_float, metavar="W",
                       help="drop document weights below W (weights of 0 are always dropped)")
    model.add_argument("--query-min-weight", type=nonneg_float, metavar="W", help="drop query weights below W")

    run_g = p.add_argument_group("runtime")
    run_g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")
    run_g.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                       help="compute dtype: float32 (exact, default), bfloat16 (CPU or GPU), float16 (GPU)")
    run_g.add_argument("--threads", type=positive_int, metavar="N",
                       help="torch CPU threads (default: the free CPUs, chosen again every few seconds, at "
                            "most torch's default; see below)")
    run_g.add_argument("--batch-size", type=positive_int, default=32, metavar="N",
                       help="documents per batch; batches are formed from length-sorted texts (default 32)")
    if queries:
        run_g.add_argument("--query-batch-size", type=positive_int, default=64, metavar="N",
                           help="queries per batch (default 64)")
    run_g.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="encode the documents on Ray: an actor pool, one model per actor, in corpus order "
                            "(the same output as without --ray). No ADDRESS: the Ray instance running in "
                            "this process or a new local one; ADDRESS: auto, host:port or ray://host:port "
                            "(give --ray after ENCODER, or as --ray=ADDRESS). Needs the distributed extra; "
                            "each actor runs --threads torch threads (default 1) on as many Ray CPUs, or one "
                            "GPU with --device cuda")
    run_g.add_argument("--ray-actors", type=positive_int, metavar="N",
                       help="Ray actors encoding at once (default: the cluster's CPUs / --threads, or its "
                            "GPUs with --device cuda); each holds a copy of the model")

    d2q = p.add_argument_group("doc2query generation (DeeperImpact; overrides the preset's expansion settings)")
    d2q.add_argument("--d2q-model", metavar="SPEC", help="causal LM (directory or hub id) that generates queries")
    d2q.add_argument("--d2q-gguf-file", metavar="FILE", help="GGUF weight file inside --d2q-model")
    d2q.add_argument("--d2q-num-queries", type=positive_int, metavar="N", help="queries generated per document")
    d2q.add_argument("--d2q-max-new-tokens", type=positive_int, metavar="N", help="tokens per generated query")
    d2q.add_argument("--d2q-top-k", type=positive_int, metavar="K", help="top-k sampling")
    d2q.add_argument("--d2q-top-p", type=_unit_float, metavar="P", help="nucleus sampling probability")
    d2q.add_argument("--d2q-temperature", type=nonneg_float, metavar="T", help="sampling temperature")
    d2q.add_argument("--d2q-seed", type=int, metavar="S", help="sampling seed (mixed with each document's CRC)")
    d2q.add_argument("--no-d2q", action="store_true", help="do not generate expansions (use only --expansion-field)")


def _side_changes(args, prefix: str) -> dict:
    out = {}
    for opt, key in (("max_length", "max_length"), ("top_k", "top_k"), ("min_weight", "min_weight")):
        v = getattr(args, f"{prefix}_{opt}")
        if v is not None:
            out[key] = v
    return out


def build_config(args):
    """The EncoderConfig the arguments describe (the CLI's whole model logic)."""
    from dataclasses import replace

    from lsr.encoders import ExpansionConfig, resolve_config

    cfg = resolve_config(args.encoder, revision=args.revision, model_path=getattr(args, "model_path", None))
    if args.query_encoder:
        other = resolve_config(args.query_encoder, revision=args.revision)
        cfg = cfg.replace(query=other.query, name=f"{cfg.name}+{other.name}")
    doc = cfg.doc.replace(**_side_changes(args, "doc"))
    query = cfg.query.replace(**_side_changes(args, "query"))
    exp = doc.expansion
    if args.no_d2q:
        exp = None
    else:
        overrides = {k: v for k, v in (
            ("model", args.d2q_model), ("gguf_file", args.d2q_gguf_file), ("num_queries", args.d2q_num_queries),
            ("max_new_tokens", args.d2q_max_new_tokens), ("top_k", args.d2q_top_k), ("top_p", args.d2q_top_p),
            ("temperature", args.d2q_temperature), ("seed", args.d2q_seed)) if v is not None}
        if overrides:
            if doc.kind != "deepimpact":
                raise InputError("--d2q-* options apply to DeepImpact encoders only")
            if exp is None:
                if "model" not in overrides:
                    raise InputError("--d2q-model is needed: this encoder has no doc2query model configured")
                exp = ExpansionConfig(**overrides)
            else:
                exp = replace(exp, **overrides)
    if exp is not doc.expansion:
        doc = doc.replace(expansion=exp)
    return cfg.replace(doc=doc, query=query)


def load_from_args(args):
    """The Encoder that ``args`` (the options of :func:`add_encoder_args` and ``args.encoder``) describe
    (with --ray, its device and dtype are checked where the Ray actors run, not here)."""
    if args.ray is not None:
        from lsr.distributed.encode import driver_encoder

        return driver_encoder(build_config(args), device=args.device, dtype=args.dtype, threads=args.threads)
    from lsr.encoders import load_encoder

    return load_encoder(build_config(args), device=args.device, dtype=args.dtype, threads=args.threads)


def ray_from_args(args):
    """The RayEncodeConfig of --ray / --ray-actors, or None without --ray."""
    if args.ray is None:
        if args.ray_actors is not None:
            raise InputError("--ray-actors applies with --ray")
        return None
    from lsr.distributed.encode import RayEncodeConfig

    return RayEncodeConfig(address=args.ray or None, actors=args.ray_actors)


def run(args) -> int:
    from lsr.progress import quiet_libraries

    from .index import terminate_cleanly

    irds = any((src or "").startswith("irds:") for src in (args.corpus, args.queries))
    with terminate_cleanly("the finished parts are kept: rerun the same command to continue"), \
            quiet_libraries(args.no_progress, irds=irds):
        return _run(args)


def _run(args) -> int:
    from lsr.encoders import (
        available_encoders,
        encode_corpus,
        encode_query_file,
    )

    if args.list:
        for name in available_encoders():
            print(name)
        return 0
    if not args.encoder:
        raise InputError("name an ENCODER (see lsr encode --list)")
    if not args.corpus and not args.queries:
        raise InputError("nothing to encode: give --corpus and/or --queries")
    if bool(args.corpus) != bool(args.output):
        raise InputError("--corpus and --output go together")
    if bool(args.queries) != bool(args.queries_output):
        raise InputError("--queries and --queries-output go together")

    ray = ray_from_args(args)
    if ray is not None and not args.corpus:
        raise InputError("--ray encodes documents (--corpus); queries are encoded in this process")
    encoder = load_from_args(args)
    progress = not args.no_progress
    if args.corpus:
        rep = encode_corpus(encoder, args.corpus, args.output, batch_size=args.batch_size,
                            part_size=args.part_size, expansion_field=args.expansion_field, limit=args.limit,
                            progress=progress, overwrite=args.overwrite, ray=ray)
        rate = f", {rep.docs_per_second:.1f} docs/s" if rep.encoded else ""
        resumed = f" (resumed after {rep.resumed_from})" if rep.resumed_from and rep.encoded else ""
        done = " (already complete)" if not rep.encoded and rep.complete else ""
        if ray is not None:
            threads = (f" on Ray ({rep.runtime['ray']['actors']} actor(s), {rep.runtime['threads']} thread(s) "
                       "each)" if rep.encoded else "")
        else:
            threads = f" on {encoder.doc_side.threads} thread(s)" if rep.encoded and args.device == "cpu" else ""
        print(f"lsr encode: {rep.docs} documents in {rep.parts} parts -> {rep.output}{done}{resumed}; "
              f"encoded {rep.encoded} in {rep.seconds:.1f}s{rate}{threads}; truncated {rep.truncated} at "
              f"{encoder.config.doc.max_length} tokens; empty {rep.empty}", file=sys.stderr)
    if args.queries:
        rep = encode_query_file(encoder, args.queries, args.queries_output, batch_size=args.query_batch_size,
                                progress=progress)
        rate = f", {rep.encoded / rep.seconds:.1f} queries/s" if rep.seconds > 0 else ""
        print(f"lsr encode: {rep.docs} queries -> {rep.output} in {rep.seconds:.1f}s{rate}; truncated "
              f"{rep.truncated} at {encoder.config.query.max_length} tokens; empty {rep.empty}", file=sys.stderr)
    return 0
