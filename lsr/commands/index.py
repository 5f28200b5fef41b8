"""``lsr index``: build an index from term-weight vectors."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "index", help="build an inverted index from term-weight vectors",
        description="Build a quantised, memory-mapped inverted index from documents with term weights: "
                    "JSONL lines {\"id\": ..., \"contents\": ..., \"vector\": {term: weight}} (Anserini's "
                    "JsonVectorCollection; .gz accepted), or a directory of such files as `lsr encode` writes "
                    "(its encoder.json is recorded so text queries can be encoded at search time).",
    )
    p.add_argument("input", nargs="+", help="JSONL file(s) (.jsonl, .jsonl.gz) or vector collection directories, "
                                            "read in the order given")
    p.add_argument("-o", "--output", required=True, help="index directory to create")
    p.add_argument("--config", help="YAML file with index settings (keys of IndexConfig; "
                                    "command-line options override it)")
    p.add_argument("--quantization", choices=["auto", "max", "fixed", "float"],
                   help="auto (default): keep integer weights that fit, else max; max: scale = (2^bits-1) / "
                        "max weight; fixed: impact = round(weight * --scale); float: no quantisation")
    p.add_argument("--bits", type=int, choices=[8, 16], help="impact width in bits (default 8)")
    p.add_argument("--scale", type=float, help="scale for --quantization fixed (e.g. 100, as Anserini)")
    p.add_argument("--block-size", type=int, help="postings per block for block maxima (default 64)")
    p.add_argument("--range-block-docs", type=int,
                   help="documents per doc-range block: doc ids are stored as (block, offset) and the "
                        "block-max traversal bounds blocks (power of two up to 256; default 16)")
    p.add_argument("--reorder", choices=["none", "bp"],
                   help="doc id order: none (default: collection order) or bp (recursive graph bisection, "
                        "for collections whose order has no locality)")
    p.add_argument("--run-postings", type=int,
                   help="postings buffered before a sorted run is spilled to disk; bounds memory at about "
                        "24 bytes a posting (default 32,000,000)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing index at --output (atomically)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def quantization_from_args(args: argparse.Namespace, q: dict) -> dict:
    """``q`` (QuantizationConfig settings) with --quantization / --bits / --scale applied (a new dict)."""
    q = dict(q)
    if args.quantization is not None:
        q["method"] = args.quantization
        if args.quantization != "fixed":
            q["scale"] = None
    if args.bits is not None:
        q["bits"] = args.bits
    if args.scale is not None:
        q["scale"] = args.scale
    return q


def config_from_args(args: argparse.Namespace):
    from lsr.config import IndexConfig, QuantizationConfig

    base = IndexConfig.from_yaml(args.config) if args.config else IndexConfig()
    q = quantization_from_args(args, base.quantization.to_dict())
    d = base.to_dict()
    d["quantization"] = QuantizationConfig.from_dict(q)
    if args.block_size is not None:
        d["block_size"] = args.block_size
    if args.run_postings is not None:
        d["run_postings"] = args.run_postings
    if args.range_block_docs is not None:
        d["range_block_docs"] = args.range_block_docs
    if args.reorder is not None:
        d["reorder"] = args.reorder
    return IndexConfig.from_dict(d)


def run(args: argparse.Namespace) -> int:
    from lsr.index import build_index

    ix = build_index(args.input, args.output, config_from_args(args), overwrite=args.overwrite,
                     progress=not args.no_progress and sys.stderr.isatty())
    m = ix.manifest
    q = m["quantization"]
    print(f"indexed {ix.num_documents} documents, {ix.num_terms} terms, {ix.num_postings} postings "
          f"in {m['build_seconds']:.1f} s -> {ix.path} ({ix.size_bytes() / 2**20:.1f} MiB; "
          f"impacts {m['impact_dtype']}, quantization {q['method']}, scale {q['scale']:.6g})")
    return 0
