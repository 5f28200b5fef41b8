"""``lsr info``: describe an index (and verify it)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe an index and verify its checksums",
                       description="Open an index, verify every file's SHA-256, and print its manifest summary. "
                                   "For an index that a one-step `lsr index --encoder` build has not finished "
                                   "yet (DIR missing, DIR.partial present), say how far the build got.")
    p.add_argument("index", help="index directory, or a Hugging Face hub dataset id owner/name (lsr[hub])")
    p.add_argument("--json", action="store_true", help="print the whole manifest as JSON")
    p.set_defaults(func=run)


def _partial(args: argparse.Namespace, state: dict) -> None:
    """Describe an interrupted one-step build (``DIR.partial``)."""
    if args.json:
        print(json.dumps(state, indent=1, ensure_ascii=False))
        return
    enc = state.get("encoder") or {}
    src = state.get("source") or {}
    status = ("encoding finished, index not assembled yet" if state.get("complete")
              and state["parts_on_disk"] == len(state.get("parts", [])) else "encoding interrupted")
    limit = f" (limit {state['limit']})" if state.get("limit") else ""
    print(f"partial     {state['path']}: a one-step `lsr index --encoder` build ({status})")
    print(f"progress    {state['docs_done']} documents encoded in {state['parts_on_disk']} part(s){limit}")
    print(f"corpus      {src.get('source')}")
    print(f"encoder     {enc.get('name')} (doc max length {(enc.get('max_length') or {}).get('doc')}, "
          f"dtype {enc.get('dtype')}, device {state.get('device')})")
    print("next        rerun the same `lsr index` command to continue, or add --restart to discard it")


def run(args: argparse.Namespace) -> int:
    import os

    from lsr.index import Index
    from lsr.index.text_index import read_partial

    state = read_partial(args.index)
    if state is not None and not os.path.exists(args.index):
        _partial(args, state)
        return 0
    ix = Index.from_pretrained(args.index, verify=True)
    m = ix.manifest
    if args.json:
        print(json.dumps(m, indent=1, ensure_ascii=False))
        return 0
    if getattr(ix, "is_sharded", False):
        _sharded(ix)
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
    rt = enc.get("runtime") or {}
    settings = (f" (doc/query max length {enc['max_length'].get('doc')}/{enc['max_length'].get('query')}, "
                f"dtype {enc.get('dtype')}" + (f", encoded on {rt.get('device')} with {rt.get('threads')} "
                                                f"thread(s)" if rt else "") + ")") if enc.get("max_length") else ""
    print(f"encoder     {enc.get('name', enc) if enc else 'none recorded'}{settings}")
    if ix.has_text:
        d = m["docstore"]
        print(f"text        stored: {d['text_bytes'] / 2**20:.2f} MiB of text in "
              f"{sum(e['bytes'] for e in d['files'].values()) / 2**20:.2f} MiB ({d['compression']}, "
              f"blocks of {d['block_docs']} documents)")
    print(f"size        {ix.size_bytes() / 2**20:.2f} MiB, checksums OK")
    if state is not None:
        print(f"partial     {state['path']} also exists: {state['docs_done']} documents of an unfinished "
              "one-step build (rerun it, or --restart to discard it)")
    return 0


def _sharded(ix) -> None:
    """Summary of a sharded index (lsr.index.sharded): the shared settings and one line a shard."""
    m = ix.manifest
    c, q = m["counts"], m["quantization"]
    enc = m.get("encoder") or {}
    print(f"index       {ix.path}")
    print(f"format      {m['format']} v{m['format_version']} ({m['created_by']}, {m['created_at']})")
    print(f"documents   {c['documents']} ({c.get('empty_documents', 0)} empty) in {ix.num_shards} shard(s)")
    print(f"terms       {c['terms']}")
    print(f"postings    {c['postings']}")
    print(f"impacts     {m['impact_dtype']}, quantization {q['method']}, scale {q['scale']:.6g} (one for all shards)")
    print(f"encoder     {enc.get('name', enc) if enc else 'none recorded'}")
    for e, shard in zip(m["shards"], ix.shards):
        print(f"shard       {e['path']}: documents [{e['doc_start']}, {e['doc_end']}), {e['postings']} postings, "
              f"{shard.size_bytes() / 2**20:.2f} MiB")
    print(f"size        {ix.size_bytes() / 2**20:.2f} MiB, checksums OK")
