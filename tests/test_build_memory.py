"""The build's memory bound: merging the spilled runs maps one run at a time.

Held all at once, the runs' doc ids and weights add 8 bytes a posting to the build's resident
memory on top of the merged arrays (about 6.5 bytes a posting: scratch doc ids, impacts, pair codes,
low bits, maxima); on the 8.8M-document synthetic collection that took the peak to 14.6 GB. The child
process below builds 36 million postings from 36 small runs and reports its peak resident memory
growth; the bound, 10.5 bytes a posting, holds only if the runs leave memory as they are merged.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, os, resource, sys, tempfile
sys.path.insert(0, sys.argv[1])
from benchmarks.synthetic import SpladeLike
from lsr.config import IndexConfig
from lsr.index import IndexBuilder

spec = SpladeLike(n_docs=300_000, seed=3, block_docs=10_000)
cfg = IndexConfig(run_postings=1_000_000)
with tempfile.TemporaryDirectory() as tmp:
    with IndexBuilder(os.path.join(tmp, "warm"), cfg, vocabulary=spec.vocabulary()) as b:   # compile first
        for batch in SpladeLike(n_docs=2_000, seed=1, block_docs=1_000).batches():
            b.add_batch(batch.doc_ids, batch.indptr, batch.term_ids, batch.weights)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    b = IndexBuilder(os.path.join(tmp, "ix"), cfg, vocabulary=spec.vocabulary())
    for batch in spec.batches():
        b.add_batch(batch.doc_ids, batch.indptr, batch.term_ids, batch.weights)
    ix = b.finish()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"postings": ix.num_postings, "runs": len(b.runs), "growth": peak - before}))
"""


@pytest.mark.slow
def test_merging_the_runs_keeps_one_run_in_memory():
    r = subprocess.run([sys.executable, "-c", _CHILD, str(ROOT)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["postings"] > 30_000_000 and got["runs"] >= 30
    per_posting = got["growth"] / got["postings"]
    assert per_posting < 10.5, f"the build grew by {per_posting:.2f} bytes a posting"
