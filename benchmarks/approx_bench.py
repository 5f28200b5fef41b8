"""Approximate search side by side: lsr's ``approx`` settings, Seismic and BMP swept, PISA and lsr exact.

``python -m benchmarks.approx_bench --collection real --queries 500 --json approx-real.json --plot
docs/img/approx-real-300k.png`` (``--help`` for the options). In one process, on one thread:

1. The collection and its lsr index as the peer benchmark finds them (:mod:`benchmarks.peer_bench`:
   the real 300k splade-tiny collection with its MS MARCO dev queries, or the synthetic one with
   :mod:`benchmarks.synthetic`'s queries; an index left by an earlier run is reused), and the
   integer queries every engine gets (:class:`benchmarks.peers.QuerySet`: ``Searcher.prepare``'s term
   ids and weights), the first ``--queries`` of them.
2. The engines, each built once per build setting: Seismic (``pyseismic-lsr``) for every
   ``--seismic-builds`` setting (postings kept per term, centroid fraction, summary energy; the rest
   the library's defaults), each searched with every ``--seismic-search`` (query_cut, heap_factor)
   pair; BMP (``bmp``, block size ``--bmp-bsize``) with every ``--bmp-search`` (alpha, beta) pair;
   PISA's four exact algorithms; lsr's default (``auto``, exact) and its ``approx`` processor with
   every setting of ``--lsr-alpha`` x ``--lsr-cut`` and ``--lsr-alpha-mass`` x ``--lsr-mass``.
3. The exact top k of every query: lsr's exhaustive scorer (``search_batch`` at the largest k).
4. One untimed warm-up pass of every (engine, setting) over the first ``--warmup`` queries, then,
   for each k, one timed pass: for each query every (engine, setting) in an order shuffled per
   query (seeded), on the calling thread, the time being that of the engine's search call only
   (Python's garbage collector paused).
5. For every setting and k: tie-aware recall@10 and recall@k against the exact top k (a returned
   document counts when its exact score reaches the exact 10th / k-th score; scores recomputed
   from the postings, so engines in other units are judged alike), p50, p99 and mean latency per
   query; the Pareto front of recall@k against p50 over all engines (``*``); and, for each recall
   target (``--targets``, default 0.95 and 0.99), the fastest setting (by p50) of each engine that
   reaches it.

The table is printed; ``--json`` writes everything with the machine's facts and the commit;
``--plot`` draws recall against p50 for every engine, one panel per k, the front marked.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from typing import Any, Sequence

import numpy as np

from . import peers as P
from .cache import default_cache_dir

SEISMIC_BUILDS = "n_postings=1000,centroid_fraction=0.1,summary_energy=0.4;" \
                 "n_postings=2000,centroid_fraction=0.1,summary_energy=0.4;" \
                 "n_postings=2000,centroid_fraction=0.2,summary_energy=0.4;" \
                 "n_postings=2000,centroid_fraction=0.1,summary_energy=0.6;" \
                 "n_postings=4000,centroid_fraction=0.1,summary_energy=0.4"
SEISMIC_SEARCH = "5:0.7,5:0.9,10:0.7,10:0.8,10:0.9,10:1.0,20:0.8,20:0.9,20:1.0"
BMP_SEARCH = "1:1,0.9:1,0.8:1,0.7:1,0.6:1,0.5:1,0.8:0.8,0.6:0.8"
LSR_ALPHA = "1,0.98,0.96,0.94,0.92,0.9,0.85,0.8"
LSR_CUT = "0,16,12,8"
LSR_ALPHA_MASS = "1,0.95"
LSR_MASS = "0.98,0.95,0.9"


def _kv(s: str) -> dict:
    out: dict[str, Any] = {}
    for part in s.split(","):
        if part.strip():
            k, _, v = part.partition("=")
            v = v.strip()
            out[k.strip()] = int(v) if v.lstrip("-").isdigit() else float(v)
    return out


def _pairs(s: str) -> list[tuple[float, float]]:
    return [(float(a), float(b)) for a, b in (p.split(":") for p in s.split(",") if p.strip())]


def _floats(s: str) -> list[float]:
    return [float(x) for x in s.split(",") if x.strip()]


def lsr_variants(args) -> dict[str, dict]:
    """lsr's settings: ``auto`` (the exact default) and the ``approx`` grid, by name."""
    out: dict[str, dict] = {"auto": {"algorithm": "auto"}}
    for a in _floats(args.lsr_alpha):
        for c in (int(x) for x in _floats(args.lsr_cut)):
            out[f"approx alpha={a:g}" + (f",cut={c}" if c else "")] = {"algorithm": "approx", "alpha": a,
                                                                        "query_cut": c or None}
    for a in _floats(args.lsr_alpha_mass):
        for m in _floats(args.lsr_mass):
            out[f"approx alpha={a:g},mass={m:g}"] = {"algorithm": "approx", "alpha": a, "query_mass": m}
    return out


def pareto(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For (recall, p50) points: True where no other point has recall >= and p50 <= with one strictly better."""
    out = []
    for i, (r, t) in enumerate(points):
        out.append(not any((r2 >= r and t2 <= t and (r2 > r or t2 < t)) for j, (r2, t2) in enumerate(points)
                           if j != i))
    return out


def _best(rows: list[dict], engine_pred, target: float, key: str) -> dict | None:
    cands = [r for r in rows if engine_pred(r) and r[key] is not None and r[key] >= target]
    return min(cands, key=lambda r: r["p50_ms"]) if cands else None


def run(args, argv: Sequence[str], log) -> dict:
    from lsr.index import Index

    from .peer_bench import CpuWatch, _machine_facts, _prepare_collection
    from .peer_bench import parser as peer_parser

    work = os.path.abspath(os.path.expanduser(args.work_dir or default_cache_dir()))
    pargs = peer_parser().parse_args(["--collection", args.collection, "--queries", str(args.queries),
                                      "--docs", str(args.docs), "--reuse-index", "--peers", "none"])
    pargs.work_dir = work
    pargs.passages = args.passages
    index_path, queries, _, coll_facts = _prepare_collection(pargs, work, log)
    index = Index.open(index_path, verify=False)
    data = P.PeerData(index)
    qs = P.QuerySet.from_queries(index, queries[:args.queries])
    nq = len(qs)
    ks = sorted(set(args.ks))
    kmax = max(ks)
    tag = os.path.basename(index_path)
    peer_dir = os.path.join(work, f"approx-{tag}")
    os.makedirs(peer_dir, exist_ok=True)
    peer_log = os.path.join(work, f"approx-{tag}.log")
    engines: list[tuple[str, Any]] = []   # (label, engine)
    builds: dict[str, dict] = {}
    skipped: dict[str, str] = {}

    lsr = P.LsrEngine(variants=lsr_variants(args))
    t = time.perf_counter()
    lsr.build(data)
    log(f"lsr: {len(lsr.settings())} settings ready in {time.perf_counter() - t:.1f} s")
    engines.append(("lsr", lsr))
    builds["lsr"] = {"seconds": float(index.manifest.get("build_seconds", 0.0)), "bytes": index.size_bytes()}

    def add(label: str, e, work_sub: str) -> None:
        if not e.available():
            skipped[label] = f"not installed ({e.reason})"
            log(f"{label}: skipped: {skipped[label]}")
            return
        ok, why = e.supports(data)
        if not ok:
            skipped[label] = why
            log(f"{label}: skipped: {why}")
            return
        log(f"{label}: building ...")
        try:
            st = e.build(data, os.path.join(peer_dir, work_sub))
        except Exception as ex:  # noqa: BLE001 - a failing optional engine must not end the run
            skipped[label] = f"build failed: {type(ex).__name__}: {ex}"
            log(f"{label}: {skipped[label]}")
            return
        log(f"{label}: built in {st.seconds:.1f} s, {st.bytes / 2**20:.1f} MiB")
        builds[label] = {"seconds": st.seconds, "bytes": st.bytes, **({"build": e.build_params}
                                                                      if hasattr(e, "build_params") else {})}
        engines.append((label, e))

    if "pisa" in args.engines:
        add("pisa", P.PisaEngine(log_path=peer_log), "pisa")
        pisa = next((e for label, e in engines if label == "pisa"), None)
        if pisa is not None:
            pisa.drop_inputs()
    if "bmp" in args.engines:
        add(f"bmp bsize={args.bmp_bsize}", P.BmpEngine(bsize=args.bmp_bsize, search=_pairs(args.bmp_search),
                                                       log_path=peer_log), "bmp")
    if "seismic" in args.engines:
        spent = 0.0
        for i, spec in enumerate(s for s in args.seismic_builds.split(";") if s.strip()):
            b = _kv(spec)
            label = "seismic " + ",".join(f"{k}={v:g}" for k, v in b.items())
            if spent > args.seismic_budget:
                skipped[label] = f"not built: the Seismic builds before it took {spent:.0f} s (--seismic-budget)"
                log(f"{label}: skipped: {skipped[label]}")
                continue
            add(label, P.SeismicEngine(search=[(int(q), h) for q, h in _pairs(args.seismic_search)], build=b,
                                       threads=args.build_threads, log_path=peer_log), f"seismic-{i}")
            spent += builds.get(label, {}).get("seconds", 0.0)

    native = {label: e.prepare(qs) for label, e in engines}
    t = time.perf_counter()
    ref = P.LsrEngine(["exhaustive"])
    ref.build(data)
    truth_hits, _ = ref.search_batch(native["lsr"], kmax, "exhaustive", 1)
    truth = [h.scores for h in truth_hits]
    log(f"exact top {kmax} (lsr exhaustive) in {time.perf_counter() - t:.1f} s")
    combos = [(label, e, s) for label, e in engines for s in e.settings()]
    log(f"{len(combos)} (engine, setting) pairs, {nq} queries, k = {', '.join(map(str, ks))}")

    t = time.perf_counter()
    for qi in range(min(nq, args.warmup)):
        for label, e, s in combos:
            e.search_one(native[label][qi], kmax, s)
    log(f"warm-up in {time.perf_counter() - t:.1f} s")

    lat: dict[tuple, list[float]] = {}
    hits: dict[tuple, list] = {}
    other: dict[str, float | None] = {}
    for k in ks:
        watch = CpuWatch().__enter__()
        t = time.perf_counter()
        gc.collect()
        gc.disable()
        try:
            for qi in range(nq):
                order = np.random.default_rng([k, qi]).permutation(len(combos))
                for j in order.tolist():
                    label, e, s = combos[j]
                    t0 = time.perf_counter()
                    raw = e.search_one(native[label][qi], k, s)
                    dt = time.perf_counter() - t0
                    lat.setdefault((label, s, k), []).append(dt)
                    hits.setdefault((label, s, k), []).append(raw)
        finally:
            gc.enable()
        watch.__exit__()
        other[f"k={k}"] = watch.other
        log(f"k={k}: timed pass in {time.perf_counter() - t:.1f} s; other processes used "
            f"{watch.other if watch.other is not None else float('nan'):.1f} CPU s meanwhile")

    rows = []
    for k in ks:
        for label, e, s in combos:
            r10, rk, exact_n = [], [], 0
            for qi, raw in enumerate(hits[(label, s, k)]):
                h = e.to_hits(raw)
                ex = data.exact_scores(h.docs, qs.terms[qi], qs.weights[qi])
                a = P.recall_at(h.docs, ex, truth[qi], 10)
                b = P.recall_at(h.docs, ex, truth[qi], k)
                if a is not None:
                    r10.append(a)
                if b is not None:
                    rk.append(b)
                exact_n += P.same_topk(ex, truth[qi][:k], k)
            ms = np.asarray(lat[(label, s, k)]) * 1e3
            rows.append({"engine": label.split(" ")[0], "build": label, "setting": s, "k": k,
                         "recall_at_10": float(np.mean(r10)) if r10 else None,
                         "recall_at_k": float(np.mean(rk)) if rk else None, "exact_queries": int(exact_n),
                         "p50_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99)),
                         "mean_ms": float(ms.mean()), "queries": len(ms)})
    for k in ks:
        mine = [r for r in rows if r["k"] == k]
        for r, front in zip(mine, pareto([(r["recall_at_k"] or 0.0, r["p50_ms"]) for r in mine])):
            r["pareto"] = front

    best: dict[str, Any] = {}
    for k in ks:
        mine = [r for r in rows if r["k"] == k]
        key = "recall_at_k"
        per_k: dict[str, Any] = {"lsr_exact_auto": next((r for r in mine if r["engine"] == "lsr"
                                                          and r["setting"] == "auto"), None)}
        for target in args.targets:
            per_k[f"{target:g}"] = {name: _best(mine, pred, target, key) for name, pred in (
                ("seismic", lambda r: r["engine"] == "seismic"), ("bmp", lambda r: r["engine"] == "bmp"),
                ("pisa", lambda r: r["engine"] == "pisa"),
                ("lsr_approx", lambda r: r["engine"] == "lsr" and r["setting"].startswith("approx")),
                ("lsr", lambda r: r["engine"] == "lsr"))}
        best[str(k)] = per_k
    env = _machine_facts(["pisa", "bmp", "seismic"])
    result = {"command": "python -m benchmarks.approx_bench " + " ".join(argv), "benchmark": "approx",
              "collection": {**coll_facts, "documents": data.n_docs, "postings": data.n_postings,
                             "terms": data.n_terms, "index_path": index_path},
              "queries": nq, "ks": ks, "threads": 1, "builds": builds, "skipped": skipped,
              "rows": rows, "best": best, "other_processes_cpu_seconds": other, "environment": env}
    for _, e in engines:
        e.close()
    import shutil

    shutil.rmtree(peer_dir, ignore_errors=True)   # the peers' index files (several GB with every Seismic build)
    return result


def format_table(result: dict) -> str:
    c = result["collection"]
    lines = [f"collection: {c.get('kind')}, {c['documents']:,} documents, {c['postings']:,} postings; "
             f"{result['queries']} queries; one thread; recall against the exact top k; * Pareto front "
             "(recall@k against p50, all engines)", ""]
    head = f"{'engine (build)':<62} {'setting':<28} {'k':>4} {'R@10':>6} {'R@k':>6} {'p50 ms':>7} {'p99 ms':>7}"
    lines += [head, "-" * len(head)]
    for r in result["rows"]:
        b = r["build"]
        lines.append(f"{b:<62} {r['setting'][:28]:<28} {r['k']:>4} {r['recall_at_10']:>6.3f} "
                     f"{r['recall_at_k']:>6.3f} {r['p50_ms']:>7.3f} {r['p99_ms']:>7.3f}"
                     + (" *" if r.get("pareto") else ""))
    lines.append("")
    for k, per_k in result["best"].items():
        ex = per_k.get("lsr_exact_auto")
        if ex:
            lines.append(f"k={k}: lsr exact (auto): p50 {ex['p50_ms']:.3f} ms, p99 {ex['p99_ms']:.3f} ms")
        for target, by in per_k.items():
            if target == "lsr_exact_auto":
                continue
            for name, r in by.items():
                if r is None:
                    lines.append(f"k={k}, recall@{k} >= {target}: {name}: no setting reaches it")
                else:
                    lines.append(f"k={k}, recall@{k} >= {target}: {name}: {r['build']} {r['setting']}: "
                                 f"p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms (recall {r['recall_at_k']:.3f})")
    oth = {k: v for k, v in result.get("other_processes_cpu_seconds", {}).items() if v is not None}
    if oth:
        lines.append("CPU seconds used by other processes during the timed passes: "
                     + ", ".join(f"{k} {v:.1f}" for k, v in oth.items()))
    if result["skipped"]:
        lines += [f"skipped: {k}: {v}" for k, v in result["skipped"].items()]
    return "\n".join(lines)


COLORS = {"lsr": "tab:blue", "pisa": "tab:green", "bmp": "tab:purple", "seismic": "tab:red"}
MARKERS = {"lsr": "o", "pisa": "s", "bmp": "D", "seismic": "v"}


def draw(result: dict, path: str) -> str:
    """Recall@k against p50 (log) of every setting, one panel per k; the front joined by a line."""
    from lsr.eval.plots import _pyplot, _save

    plt = _pyplot()
    ks = result["ks"]
    fig, axes = plt.subplots(1, len(ks), figsize=(6.5 * len(ks), 5), squeeze=False)
    c = result["collection"]
    for ax, k in zip(axes[0], ks):
        rows = [r for r in result["rows"] if r["k"] == k]
        for eng in ("seismic", "bmp", "pisa", "lsr"):
            mine = [r for r in rows if r["engine"] == eng]
            if not mine:
                continue
            if eng == "lsr":
                ex = [r for r in mine if r["setting"] == "auto"]
                ap = [r for r in mine if r["setting"] != "auto"]
                ax.scatter([r["p50_ms"] for r in ap], [r["recall_at_k"] for r in ap], s=18, c=COLORS[eng],
                           marker=MARKERS[eng], label="lsr approx", alpha=0.8)
                ax.scatter([r["p50_ms"] for r in ex], [r["recall_at_k"] for r in ex], s=90, c=COLORS[eng],
                           marker="*", label="lsr exact (auto)")
            else:
                ax.scatter([r["p50_ms"] for r in mine], [r["recall_at_k"] for r in mine], s=18, c=COLORS[eng],
                           marker=MARKERS[eng], label=eng, alpha=0.8)
        front = sorted((r for r in rows if r.get("pareto")), key=lambda r: r["p50_ms"])
        ax.plot([r["p50_ms"] for r in front], [r["recall_at_k"] for r in front], "k--", lw=0.8, label="Pareto front")
        for y in (0.95, 0.99):
            ax.axhline(y, color="gray", lw=0.5, ls=":")
        ax.set_xscale("log")
        from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, ScalarFormatter

        ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)
                 if 0.5 * min(r["p50_ms"] for r in rows) <= t <= 2 * max(r["p50_ms"] for r in rows)]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("p50 latency per query (ms, one thread)")
        ax.set_ylabel(f"recall@{k} (against the exact top {k})")
        lo = min((r["recall_at_k"] for r in rows if r["recall_at_k"] is not None), default=0.0)
        ax.set_ylim(max(0.0, min(lo, 0.9) - 0.02), 1.005)
        ax.set_title(f"{c.get('kind')} collection, {c['documents']:,} docs, {result['queries']} queries, k={k}")
        ax.legend(fontsize=8, loc="lower right")
    return _save(plt, fig, path)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.approx_bench",
                                 description="lsr's approximate settings, Seismic and BMP swept, PISA and lsr exact: "
                                             "recall against the exact top k and single-thread latency, in one run.")
    ap.add_argument("--collection", choices=("real", "synthetic"), required=True)
    ap.add_argument("--queries", type=int, default=None, help="queries (default 500 real, 200 synthetic)")
    ap.add_argument("--passages", type=int, default=300_000, help="documents of the real collection (default 300000)")
    ap.add_argument("--docs", type=int, default=1_000_000, help="documents of the synthetic collection (default 1M)")
    ap.add_argument("--ks", type=lambda s: [int(x) for x in s.split(",")], default=[10, 100],
                    help="comma-separated k (default 10,100)")
    ap.add_argument("--engines", type=lambda s: [x.strip() for x in s.split(",")], default=["pisa", "bmp", "seismic"],
                    help="peers beside lsr (default pisa,bmp,seismic)")
    ap.add_argument("--seismic-builds", default=SEISMIC_BUILDS,
                    help="Seismic build settings, ';'-separated K=V,... lists, built in this order (default: "
                         "n_postings 1000 and 2000 at centroid_fraction 0.1, summary_energy 0.4; 2000 at "
                         "centroid_fraction 0.2; 2000 at summary_energy 0.6; 4000)")
    ap.add_argument("--seismic-budget", type=float, default=300.0,
                    help="build no further Seismic setting once the builds took this many seconds (default 300)")
    ap.add_argument("--seismic-search", default=SEISMIC_SEARCH, help=f"query_cut:heap_factor pairs (default {SEISMIC_SEARCH})")
    ap.add_argument("--bmp-bsize", type=int, default=32, help="BMP block size (default 32)")
    ap.add_argument("--bmp-search", default=BMP_SEARCH, help=f"BMP alpha:beta pairs (default {BMP_SEARCH})")
    ap.add_argument("--lsr-alpha", default=LSR_ALPHA, help=f"lsr approx alpha values (default {LSR_ALPHA})")
    ap.add_argument("--lsr-cut", default=LSR_CUT, help=f"lsr approx query_cut values, 0 = none (default {LSR_CUT})")
    ap.add_argument("--lsr-alpha-mass", default=LSR_ALPHA_MASS,
                    help=f"alpha values combined with --lsr-mass (default {LSR_ALPHA_MASS})")
    ap.add_argument("--lsr-mass", default=LSR_MASS, help=f"lsr approx query_mass values (default {LSR_MASS})")
    ap.add_argument("--targets", type=lambda s: [float(x) for x in s.split(",")], default=[0.95, 0.99],
                    help="recall targets for the summary (default 0.95,0.99)")
    ap.add_argument("--warmup", type=int, default=100, help="queries of the untimed warm-up pass (default 100)")
    ap.add_argument("--build-threads", type=int, default=0, help="Seismic build threads (default 0: all)")
    ap.add_argument("--work-dir", default=None, help=f"collections and indexes (default {default_cache_dir()})")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    ap.add_argument("--plot", metavar="PNG", help="draw recall against p50 (matplotlib)")
    ap.add_argument("--quiet", action="store_true", help="print only the table")
    return ap


def main(argv: Sequence[str] | None = None) -> dict:
    import numba

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--redraw"]:   # python -m benchmarks.approx_bench --redraw RESULT.json OUT.png
        with open(argv[1]) as f:
            result = json.load(f)
        print(draw(result, argv[2]))
        return result
    args = parser().parse_args(argv)
    if args.queries is None:
        args.queries = 500 if args.collection == "real" else 200
    log = (lambda *a, **kw: None) if args.quiet else (lambda *a, **kw: print(*a, file=sys.stderr, flush=True))
    numba.set_num_threads(1)
    result = run(args, argv, log)
    print(format_table(result), flush=True)
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
        os.replace(tmp, args.json)
    if args.plot:
        log(f"plot: {draw(result, args.plot)}")
    return result


if __name__ == "__main__":
    main()
