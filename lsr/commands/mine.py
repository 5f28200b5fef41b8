"""``lsr mine``: hard negatives for training, mined with an lsr index; written as JSONL groups."""

from __future__ import annotations

import argparse

_EPILOG = """\
The index must be built from text (lsr index --encoder ...): its recorded query encoder encodes the
training queries. For each query with a judged positive (relevance > 0), --negatives doc ids are drawn
uniformly, with a per-query RNG seeded by --seed, from its hits ranked LO <= rank < HI (ranks 1-based;
10:100 is ranks 10 to 99), leaving out its judged positives. Output: one JSON line per (query, judged
positive): {"qid", "query", "positive_id", "negative_ids", "negative_ranks", "negative_scores"}, which
`lsr train --data GROUPS.jsonl` reads with the corpus' texts. Written atomically.

Queries and qrels: --dataset (an ir_datasets id such as beir/scifact/train, or a BEIR directory DIR:SPLIT),
or --queries (TSV qid<TAB>text, JSONL {"id", "text"}, irds:<id>) with --qrels (TREC or BEIR TSV).

examples:
  lsr mine -i scifact-index --dataset beir/scifact/train --window 10:100 --negatives 8 -o groups.jsonl
  lsr mine -i my-index --queries train-queries.tsv --qrels train-qrels.txt -o groups.jsonl --overwrite
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mine", help="mine hard negatives for training with an lsr index; write JSONL groups",
        description="Search the training queries with an lsr index, skip judged positives, and draw "
                    "negatives from a rank window.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-i", "--index", required=True, help="index directory (built with lsr index --encoder)")
    p.add_argument("--dataset", metavar="ID|DIR[:SPLIT]", help="training queries and qrels: an ir_datasets id "
                   "(irds: prefix optional) or a local BEIR directory")
    p.add_argument("--queries", metavar="FILE", help="query texts (with --qrels): TSV, JSONL or irds:<id>")
    p.add_argument("--qrels", metavar="FILE", help="judgments (with --queries): TREC or BEIR TSV qrels")
    p.add_argument("--window", default="10:100", metavar="LO:HI",
                   help="ranks sampled from, LO <= rank < HI, 1-based (default 10:100)")
    p.add_argument("--negatives", type=int, default=8, metavar="N", help="negatives per query (default 8)")
    p.add_argument("--seed", type=int, default=0, help="RNG seed (default 0)")
    p.add_argument("--batch-size", type=int, default=1024, help="queries searched per batch (default 1024)")
    p.add_argument("--threads", type=int, default=0, help="search threads (default 0 = all cores)")
    p.add_argument("-o", "--output", required=True, help="groups file to write (JSONL); written atomically")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--no-progress", action="store_true", help="no progress line or bar on stderr")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    """The :class:`~lsr.train.mine.MineConfig` the arguments describe."""
    from lsr.train.mine import MineConfig, parse_window

    return MineConfig(window=parse_window(args.window), negatives=args.negatives, seed=args.seed,
                      batch_size=args.batch_size, threads=args.threads)


def run(args: argparse.Namespace) -> int:
    import os
    import sys

    from lsr.errors import InputError
    from lsr.index import Index
    from lsr.io import check_output_file
    from lsr.progress import quiet_libraries
    from lsr.train.mine import mine_to_file

    config = config_from_args(args)
    if args.dataset is not None and (args.queries is not None or args.qrels is not None):
        raise InputError("give --dataset, or --queries with --qrels, not both")
    if args.dataset is None and (args.queries is None or args.qrels is None):
        raise InputError("give the training queries and judgments: --dataset ID, or --queries FILE --qrels FILE")
    check_output_file(args.output, "groups file")
    if os.path.exists(args.output) and not args.overwrite:
        raise InputError(f"{args.output} exists; pass --overwrite to replace it")
    index = Index.open(args.index)
    if args.dataset is not None:
        from lsr.train.data import load_queries_qrels

        queries, qrels = load_queries_qrels(args.dataset)
    else:
        from lsr.eval.datasets import read_qrels
        from lsr.rerank.sources import query_texts

        queries, qrels = query_texts(args.queries), read_qrels(args.qrels)
    with quiet_libraries():
        n = mine_to_file(index, queries, qrels, args.output, config, overwrite=args.overwrite,
                         progress=not args.no_progress)
    print(f"lsr mine: {n} groups written to {args.output}", file=sys.stderr)
    return 0
