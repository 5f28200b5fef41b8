"""``lsr info``: describe an index (and verify it)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe an index and verify its checksums",
                       description="Open an index, verify every file's SHA-256, and print its manifest summary.")
    p.add_argument("index", help="index directory")
    p.add_argument("--json", action="store_true", help="print the whole manifest as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lsr.index import Index

    ix = Index.open(args.index, verify=True)
    m = ix.manifest
    if args.json:
        print(json.dumps(m, indent=1, ensure_ascii=False))
        return 0
    c, q = m["counts"], m["quantization"]
    enc = m.get("encoder") or {}
    print(f"index       {ix.path}")
    print(f"format      {m['format']} v{m['format_version']} ({m['created_by']}, {m['created_at']})")
    print(f"documents   {c['documents']} ({c['empty_documents']} empty)")
    print(f"terms       {c['terms']}")
    print(f"postings    {c['postings']} in {c['blocks']} blocks of {m['block_size']}")
    rb = m.get("range_blocks", {})
    re_ = m.get("reorder", {})
    print(f"doc ids     pair-coded, {c['range_pairs']} (term, block) pairs of {m['range_block_docs']} documents; "
          f"locality {rb.get('locality')}; order {re_.get('method', 'none')}")
    print(f"impacts     {m['impact_dtype']}, quantization {q['method']}, scale {q['scale']:.6g}, "
          f"max weight {q['max_weight']:.6g}")
    print(f"encoder     {enc.get('name', enc) if enc else 'none recorded'}")
    print(f"size        {ix.size_bytes() / 2**20:.2f} MiB, checksums OK")
    return 0
