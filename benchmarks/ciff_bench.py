"""CIFF export and import throughput, and the Anserini export's: ``python -m benchmarks.ciff_bench --index DIR
--out-dir TMP``.

Exports the index to ``TMP/bench.ciff`` with :func:`lsr.ciff.export_index` (as ``lsr ciff export``
does: the index opened with its checksums verified), then imports that file into ``TMP/bench-index``
with :func:`lsr.ciff.import_index` (as ``lsr ciff import``), each in a child process of its own so
that its peak resident memory (``ru_maxrss``) is its own; then checks that the import holds the
same postings as the index (every term's doc ids and impacts, the doc ids), and prints a table:
postings, seconds and postings per second of each step, the CIFF file's bytes against the index's,
and each step's peak RSS (which counts the pages of memory-mapped files it touched, the index's
or the build's, as well as its own allocations). Last, it times :func:`lsr.anserini.export_index` (``lsr
anserini export``) into ``TMP/bench-anserini`` the same way. ``--keep`` leaves the outputs in TMP.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from typing import Sequence

_CHILD = r"""
import json, resource, sys, time
step, src, dst = sys.argv[1:4]
import lsr.anserini, lsr.ciff
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t0 = time.perf_counter()
if step == "export":
    st = lsr.ciff.export_index(src, dst)
    n = st.postings
elif step == "anserini":
    n = lsr.anserini.export_index(src, dst).postings
else:
    n = lsr.ciff.import_index(src, dst).num_postings
sec = time.perf_counter() - t0
print(json.dumps({"seconds": sec, "postings": n,
                  "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "rss_before": base}))
"""


def _child(step: str, src: str, dst: str) -> dict:
    r = subprocess.run([sys.executable, "-c", _CHILD, step, src, dst], capture_output=True, text=True)
    if r.returncode:
        sys.stderr.write(r.stderr)
        raise SystemExit(f"the {step} child failed (exit {r.returncode})")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _same_postings(a, b) -> bool:
    import numpy as np

    if a.doc_ids(range(a.num_documents)) != b.doc_ids(range(b.num_documents)):
        return False
    for t in a.terms:
        d0, i0 = a.postings(t)
        d1, i1 = b.postings(t)
        if not (np.array_equal(d0, d1) and np.array_equal(np.asarray(i0, np.int64), np.asarray(i1, np.int64))):
            return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ciff_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--index", required=True, help="lsr index directory to export")
    p.add_argument("--out-dir", required=True, help="scratch directory for the CIFF file and the imported index")
    p.add_argument("--keep", action="store_true", help="keep the CIFF file and the imported index")
    p.add_argument("--no-check", action="store_true", help="skip the postings comparison after the import")
    args = p.parse_args(argv)

    from lsr.index import Index

    os.makedirs(args.out_dir, exist_ok=True)
    ciff = os.path.join(args.out_dir, "bench.ciff")
    imported = os.path.join(args.out_dir, "bench-index")
    anserini = os.path.join(args.out_dir, "bench-anserini")
    for path in (ciff, imported, anserini):
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.unlink(path)
    ix = Index.open(args.index, verify=False)
    ex = _child("export", args.index, ciff)
    im = _child("import", ciff, imported)
    same = None if args.no_check else _same_postings(ix, Index.open(imported, verify=False))
    an = _child("anserini", args.index, anserini)
    an_bytes = sum(os.path.getsize(os.path.join(anserini, f)) for f in os.listdir(anserini))
    ciff_bytes = os.path.getsize(ciff)
    rows = [("step", "postings", "seconds", "postings/s", "peak RSS MiB"),
            ("export", f"{ex['postings']:,}", f"{ex['seconds']:.1f}", f"{ex['postings'] / ex['seconds']:,.0f}",
             f"{ex['peak_rss'] / 2**20:,.0f}"),
            ("import", f"{im['postings']:,}", f"{im['seconds']:.1f}", f"{im['postings'] / im['seconds']:,.0f}",
             f"{im['peak_rss'] / 2**20:,.0f}"),
            ("anserini export", f"{an['postings']:,}", f"{an['seconds']:.1f}",
             f"{an['postings'] / an['seconds']:,.0f}", f"{an['peak_rss'] / 2**20:,.0f}")]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"index {os.path.abspath(args.index)}: {ix.num_documents:,} documents, {ix.num_terms:,} terms, "
          f"{ix.num_postings:,} postings, {ix.manifest['impact_dtype']}")
    for r in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    print(f"ciff bytes {ciff_bytes:,}; index bytes {ix.size_bytes():,} (ciff/index {ciff_bytes / ix.size_bytes():.2f}); "
          f"imported index bytes {Index.open(imported, verify=False).size_bytes():,}")
    print(f"anserini export bytes {an_bytes:,} (/index {an_bytes / ix.size_bytes():.2f})")
    print(f"import holds the index's postings: {'not checked' if same is None else same}")
    print(f"machine: {platform.node()}, {os.cpu_count()} cpus, python {platform.python_version()}")
    if not args.keep:
        os.unlink(ciff)
        shutil.rmtree(imported)
        shutil.rmtree(anserini)
    return 0 if same is not False else 1


if __name__ == "__main__":
    sys.exit(main())
