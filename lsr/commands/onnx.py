"""``lsr onnx export``: an encoder's neural side(s) as ONNX graphs that onnxruntime runs."""

from __future__ import annotations

import argparse

from .argtypes import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("onnx", help="export encoders to ONNX (run with onnxruntime)",
                       description="Export encoders to ONNX; an export directory then loads as an encoder "
                                   "(lsr encode DIR, lsr index --encoder DIR or --query-encoder DIR) and runs "
                                   "its graphs with onnxruntime (pip install 'lsr[onnx]').")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    e = actions.add_parser(
        "export", help="write an encoder's neural side(s) as ONNX graphs with its tokenizer",
        description="Trace each neural side of MODEL (a registered name, YAML preset, checkpoint directory or hub "
                    "id) from token ids to vocabulary weights (backbone, MLM logits, log(1+ReLU), masked max or "
                    "sum pooling) with dynamic batch and sequence axes, check it against torch on a padded "
                    "batch, and write it with the tokenizer files and lsr-onnx.json (the sides' configs, the "
                    "source model's identity, the opset, each graph's SHA-256). SPLADE sides only; sides "
                    "without a transformer (inference-free queries) need no graph.")
    e.add_argument("model", metavar="MODEL", help="the encoder to export (as lsr encode takes it)")
    e.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="output directory (written aside, then renamed)")
    e.add_argument("--model-path", metavar="DIR",
                   help="local checkpoint directory that replaces MODEL's checkpoint (offline use of a preset)")
    e.add_argument("--revision", metavar="REV", help="hub revision (branch, tag or commit) for hub checkpoints")
    e.add_argument("--opset", type=positive_int, default=17, metavar="N", help="ONNX opset, 14..20 (default 17)")
    e.add_argument("--overwrite", action="store_true",
                   help="replace an earlier lsr ONNX export at the output (nothing else)")
    e.add_argument("--no-progress", action="store_true",
                   help="no progress bars or INFO lines from transformers while the model loads")
    e.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lsr.encoders.onnx import export_onnx
    from lsr.progress import quiet_libraries

    with quiet_libraries(args.no_progress):
        rep = export_onnx(args.model, args.output, model_path=args.model_path, revision=args.revision,
                          opset=args.opset, overwrite=args.overwrite)
    graphs = ", ".join(f"{side}: {f or 'no graph'}" for side, f in rep.graphs.items())
    print(f"exported to {rep.path} ({graphs}; opset {rep.opset}) in {rep.seconds:.1f} s; onnxruntime vs torch "
          f"on the check batch: max |difference| {rep.max_abs_diff:.2g}")
    return 0
