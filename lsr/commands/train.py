"""``lsr train``: train an encoder (SPLADE, inference-free SPLADE, SparTerm, uniCOIL, DeepImpact, or a
MaxSim projection) on sentence-transformers' trainers, from a recipe plus overrides."""

from __future__ import annotations

import argparse

_EPILOG = """\
Settings come from, in increasing priority: the recipe (a shipped name, see --list, or a YAML file),
then --set KEY=VALUE (dotted keys for the groups: optim.learning_rate=2e-5, eval.every=100), then the
options given. The output directory receives model/ (a sentence-transformers SparseEncoder directory that
lsr encode / lsr index --encoder load as it is; for --recipe maxsim-colbert a checkpoint lsr rerank
--reranker maxsim loads), checkpoints/, metrics.jsonl, metrics.png and groups.jsonl.

examples:
  lsr train --recipe splade-pp-ensembledistil --output runs/spladepp
  lsr train --recipe unicoil --model sentence-transformers/all-MiniLM-L6-v2 --init-head random \\
      --data beir/scifact/train --negatives-from scifact-index --set eval.dataset=beir/scifact/test \\
      --output runs/unicoil-minilm
  lsr train --recipe unicoil ... --output runs/unicoil-minilm --resume
  lsr index --encoder runs/unicoil-minilm/model --corpus corpus.jsonl -o unicoil-index
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train an encoder on sentence-transformers' sparse trainer",
        description="Train a SPLADE, inference-free SPLADE, SparTerm, uniCOIL or DeepImpact encoder (or the "
                    "projection of a MaxSim reranker) from a recipe, with hard negatives mined by an lsr index, "
                    "periodic evaluation through an lsr index, and checkpoints to resume from.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", metavar="NAME|YAML", help="a shipped recipe (--list) or a YAML file")
    p.add_argument("-o", "--output", metavar="DIR", help="output directory (new, empty, or an earlier lsr run "
                   "with --resume / --overwrite)")
    p.add_argument("--model", metavar="PATH|HUB_ID", help="the checkpoint to start from")
    p.add_argument("--data", metavar="ID|FILE", help="training data: an ir_datasets id (beir/scifact/train), "
                   "TSV triples or JSONL groups")
    p.add_argument("--negatives-from", metavar="INDEX_DIR", help="mine hard negatives by searching the training "
                   "queries in this lsr index (its encoder encodes them)")
    p.add_argument("--teacher-scores", metavar="FILE", help="teacher scores for distillation: TSV `qid docid "
                   "score` or JSONL")
    p.add_argument("--init-head", choices=["random"], help="create a new, untrained uniCOIL/DeepImpact head "
                   "on the backbone (never done otherwise)")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="any recipe setting (VALUE read as YAML), repeatable")
    p.add_argument("--resume", action="store_true", help="continue the run in --output from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace the lsr training run in --output")
    p.add_argument("--device", help="torch device (default: the trainer's choice: a GPU when there is one)")
    p.add_argument("--list", action="store_true", help="list the shipped recipes and exit")
    p.add_argument("--dry-run", action="store_true", help="print the resolved settings as YAML and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or lines on stderr")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    from lsr.train.config import train_config

    from .rerank import parse_settings

    overrides = parse_settings(args.settings)
    for opt, key in (("model", "model"), ("data", "data"), ("negatives_from", "negatives_from"),
                     ("teacher_scores", "teacher_scores"), ("init_head", "init_head")):
        v = getattr(args, opt)
        if v is not None:
            overrides[key] = v
    return train_config(args.recipe, overrides)


def run(args: argparse.Namespace) -> int:
    from lsr.errors import InputError

    if args.list:
        from lsr.train.config import available_recipes

        print("\n".join(available_recipes()))
        return 0
    config = config_from_args(args)
    if args.dry_run:
        import yaml

        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return 0
    if not args.output:
        raise InputError("give --output DIR")
    from lsr.train.trainer import train

    train(config, args.output, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress,
          device=args.device)
    return 0
