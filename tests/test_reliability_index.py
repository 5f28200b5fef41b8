"""Reliability of the index: weights checked as stored, the max-quantisation warning, and damaged
indexes opened with ``verify=False`` (flipped bytes in every array, hypothesis fuzzing of every file)
that must give a clear IndexFormatError or results, never a crash.

The damaged indexes are opened and searched in a subprocess (this file run as a script), so that a
segfault fails the test instead of killing pytest.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import lsr
from lsr import IndexConfig, QuantizationConfig
from lsr.errors import IndexFormatError, InputError

ALGORITHMS = ("auto", "exhaustive", "blockmax", "filtered", "maxscore", "bmm", "wand", "bmw")
# arrays whose damage the structural checks of open() cannot always see (only the checksums do): a changed
# impact or doc id text, or low doc id bits that still ascend, give other results
DATA_FILES = {"postings_impacts.npy", "postings_low.npy", "docid_bytes.npy", "vocab.json"}


def _cli(*argv):
    return subprocess.run([sys.executable, "-m", "lsr.cli", *map(str, argv)], capture_output=True, text=True,
                          timeout=300)


def _docs(n_docs=300, n_terms=60, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_terms + 1) ** 0.8
    p /= p.sum()
    out = []
    for i in range(n_docs):
        terms = np.unique(rng.choice(n_terms, size=int(rng.integers(1, 14)), p=p))
        out.append((f"D{i}", {f"t{t}": float(rng.uniform(0.1, 3.0) * scale) for t in terms}))
    return out


# --------------------------------------------------------------------------- weights
@pytest.mark.parametrize("weight", [1e39, 1e300])
@pytest.mark.parametrize("method", ["float", "max"])
def test_document_weight_beyond_float32_is_an_error(tmp_path, weight, method):
    docs = [("a", {"x": 1.0, "y": 2.0}), ("b", {"x": 0.5, "z": weight})]
    cfg = IndexConfig(quantization=QuantizationConfig(method=method))
    with pytest.raises(InputError, match=r"record 1: weight .* of term 'z' is beyond float32's range"):
        lsr.build_index(docs, tmp_path / "ix", cfg)
    assert not (tmp_path / "ix").exists()
    # the same from a file on the command line: file:line, one line, exit 2
    f = tmp_path / "docs.jsonl"
    f.write_text("".join(json.dumps({"id": d, "vector": v}) + "\n" for d, v in docs))
    r = _cli("index", f, "-o", tmp_path / "ix2", "--quantization", method)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("lsr: error: ")
    assert f"{f}:2" in r.stderr and "'z'" in r.stderr and "float32" in r.stderr


def test_document_weight_beyond_float32_in_add_batch(tmp_path):
    with lsr.IndexBuilder(tmp_path / "ix", vocabulary=["x", "y"]) as b:
        with pytest.raises(InputError, match=r"document 'q': weight 1e\+39 of term 'y' is beyond float32"):
            b.add_batch(["p", "q"], np.array([0, 1, 2]), np.array([0, 1]), np.array([1.0, 1e39]))
        b.abort()


def test_float32_weights_at_the_limit_are_kept(tmp_path):
    big = float(np.finfo(np.float32).max)
    ix = lsr.build_index([("a", {"x": big}), ("b", {"x": 1.0})], tmp_path / "ix",
                         IndexConfig(quantization=QuantizationConfig(method="float")))
    assert float(ix.term_max[0]) == big


@pytest.fixture(scope="module")
def float_index(tmp_path_factory):
    d = tmp_path_factory.mktemp("fl") / "ix"
    lsr.build_index(_docs(), d, IndexConfig(quantization=QuantizationConfig(method="float")))
    return d


@pytest.fixture(scope="module")
def int_index(tmp_path_factory):
    d = tmp_path_factory.mktemp("q8") / "ix"
    lsr.build_index(_docs(), d, IndexConfig(block_size=8))
    return d


@pytest.mark.parametrize("weight", [1e39, 1e300])
def test_query_weight_beyond_float32_is_an_error(float_index, weight):
    s = lsr.Searcher(float_index)
    with pytest.raises(InputError, match=r"query 'q7': weight of term 't1' .* beyond float32's range"):
        s.search_batch({"q1": {"t0": 1.0}, "q7": {"t0": 1.0, "t1": weight}})
    # finite weights whose scores would overflow float32
    with pytest.raises(InputError, match="its scores could reach .* beyond float32"):
        s.search({"t0": 3e38, "t1": 3e38})
    assert len(s.search({"t0": 1.0, "t1": 2.0}, k=5).doc_ids) == 5


@pytest.mark.parametrize("query", [{"t0": 0.5, "t1": 1e300}, {"t0": 0.5, "t1": 1.7e308}, {"t1": 1e300}])
def test_query_weight_too_large_for_integer_scoring(int_index, query):
    with pytest.raises(InputError, match=r"weight of term 't1' .*too large for integer scoring"):
        lsr.Searcher(int_index).search(query)


def test_query_weight_beyond_float32_on_the_command_line(tmp_path, float_index):
    q = tmp_path / "q.tsv"
    q.write_text("q1\tt0:1.0\nq2\tt0:1.0 t1:1e39\n")
    r = _cli("search", "-i", float_index, "-q", q, "-o", tmp_path / "run.trec")
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "query 'q2'" in r.stderr and "'t1'" in r.stderr


# --------------------------------------------------------------------------- quantisation warning
def _rounded_away(tmp_path, outlier, bits=8):
    docs = _docs(200) + [("outlier", {"t0": outlier})]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        lsr.build_index(docs, tmp_path / f"ix{outlier}-{bits}",
                        IndexConfig(quantization=QuantizationConfig(method="max", bits=bits)))
    return [str(x.message) for x in w if "rounded" in str(x.message)]


def test_max_quantisation_warns_when_postings_round_to_0(tmp_path):
    got = _rounded_away(tmp_path, 2000.0)
    assert len(got) == 1
    assert "max quantisation at 8 bits rounded" in got[0] and "--bits 16" in got[0]
    got = _rounded_away(tmp_path, 1e7)
    assert len(got) == 1 and "--bits 16" not in got[0] and "--quantization float" in got[0]
    got = _rounded_away(tmp_path, 1e7, bits=16)
    assert len(got) == 1 and "at 16 bits" in got[0] and "--quantization float" in got[0]
    assert _rounded_away(tmp_path, 3.0) == []


def test_max_quantisation_warning_on_the_command_line(tmp_path):
    f = tmp_path / "d.jsonl"
    docs = _docs(200) + [("outlier", {"t0": 2000.0})]
    f.write_text("".join(json.dumps({"id": d, "vector": v}) + "\n" for d, v in docs))
    r = _cli("index", f, "-o", tmp_path / "ix")
    assert r.returncode == 0, r.stderr
    line = [x for x in r.stderr.splitlines() if "rounded" in x]
    assert len(line) == 1 and line[0].startswith("lsr: warning: max quantisation at 8 bits rounded ")
    assert "--bits 16" in line[0]


# --------------------------------------------------------------------------- damaged indexes (subprocess)
def _worker(mode: str, spec: dict) -> dict:
    """Run in the subprocess: apply corruptions to copies of the indexes and open and search them with
    verify=False; returns the outcome counts (a crash ends the process instead)."""

    warnings.simplefilter("ignore")
    work = Path(spec["work"])
    indexes = [Path(p) for p in spec["indexes"]]
    queries = {f"q{i}": {f"t{t}": float(1 + (i + t) % 3) for t in ts} for i, ts in
               enumerate([[0], [0, 1, 5], [2, 9, 30], [3, 11, 17, 59], [7], [1, 2, 3, 4, 5, 6]])}

    def search_all(d):
        ix = lsr.Index.open(d, verify=False)
        out = []
        for algo in ALGORITHMS:
            s = lsr.Searcher(ix, algorithm=algo, threads=1)
            r = s.search_batch(queries, k=10)
            out.append((list(r.query_ids), list(r.doc_ids), r.scores.astype(np.float64).tolist()))
            r1 = s.search(queries["q3"], k=7)
            out.append((list(r1.doc_ids), r1.scores.astype(np.float64).tolist()))
        return out

    refs = {str(d): search_all(d) for d in indexes}
    counts = {"error": 0, "same": 0, "different": 0, "other": 0}
    problems = []
    files = {str(d): sorted(os.listdir(d)) for d in indexes}

    def run_case(i, d, name, data, what):
        case = work / f"c{i}"
        case.mkdir()
        for f in files[str(d)]:
            if f != name:
                os.link(d / f, case / f)
        (case / name).write_bytes(data)
        print(f"case {i}: {d.parent.name} {name} {what}", flush=True)
        try:
            got = search_all(case)
            kind = "same" if got == refs[str(d)] else "different"
        except IndexFormatError:
            kind = "error"
        except Exception as e:  # noqa: BLE001 - anything else is reported as a failure
            kind = "other"
            problems.append(f"{name} {what}: {type(e).__name__}: {e}")
        if kind == "different" and name not in DATA_FILES:
            problems.append(f"{name} {what}: different results")
        counts[kind] += 1
        shutil.rmtree(case)

    i = 0
    if mode == "flips":
        for d in indexes:
            for name in files[str(d)]:
                if not name.endswith(".npy"):
                    continue
                raw = (d / name).read_bytes()
                hdr = 128 if len(raw) >= 128 else 0
                body = len(raw) - hdr
                positions = sorted({0, 8, 60, hdr - 1} | ({hdr, hdr + body // 3, hdr + body // 2, len(raw) - 1}
                                                           if body else set()))
                positions = [p for p in positions if 0 <= p < len(raw)]
                if body:
                    positions += list(range(hdr, len(raw), max(1, body // 8)))
                for pos in positions:
                    for x in (0xFF, 0x01):
                        b = bytearray(raw)
                        b[pos] ^= x
                        run_case(i, d, name, bytes(b), f"byte {pos} ^ {x:#x}")
                        i += 1
    else:
        from hypothesis import HealthCheck, given, settings
        from hypothesis import strategies as st

        all_files = [(d, f) for d in indexes for f in files[str(d)]]

        @settings(max_examples=spec["n"], derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))
        @given(which=st.integers(0, len(all_files) - 1), kind=st.sampled_from(["flip", "truncate", "overwrite"]),
               at=st.floats(0, 1), length=st.integers(1, 64), value=st.integers(1, 255), seed=st.integers(0, 2**32))
        def fuzz(which, kind, at, length, value, seed):
            nonlocal i
            d, name = all_files[which]
            raw = bytearray((d / name).read_bytes())
            pos = min(int(at * len(raw)), len(raw) - 1)
            if kind == "flip":
                raw[pos] ^= value
                what = f"byte {pos} ^ {value:#x}"
            elif kind == "truncate":
                raw = raw[:pos]
                what = f"truncated to {pos}"
            else:
                n = min(length, len(raw) - pos)
                raw[pos:pos + n] = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
                what = f"bytes {pos}..{pos + n} random (seed {seed})"
            run_case(i, d, name, bytes(raw), what)
            i += 1

        fuzz()
    return {"cases": i, "counts": counts, "problems": problems}


def _run_worker(tmp_path, mode, indexes, **extra):
    spec = {"work": str(tmp_path / "work"), "indexes": [str(d) for d in indexes], **extra}
    (tmp_path / "work").mkdir()
    r = subprocess.run([sys.executable, __file__, mode, json.dumps(spec)], capture_output=True, text=True,
                       timeout=600)
    last = r.stdout.strip().splitlines()[-3:]
    assert r.returncode == 0, f"the worker died (rc {r.returncode}) after: {last}\n{r.stderr[-3000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def damaged_sources(tmp_path_factory):
    """A small 8-bit index (range blocks of 16 documents, 4-bit low doc id bits, 300 documents: a partial
    last block) and a float one (range blocks of 32: a byte a posting)."""
    root = tmp_path_factory.mktemp("src")
    a = root / "q8"
    lsr.build_index(_docs(), a, IndexConfig(block_size=8))
    b = root / "f32"
    lsr.build_index(_docs(seed=1), b, IndexConfig(block_size=8, range_block_docs=32,
                                                  quantization=QuantizationConfig(method="float")))
    return [a, b]


def test_flipped_bytes_in_every_array_with_verify_false(tmp_path, damaged_sources):
    out = _run_worker(tmp_path, "flips", damaged_sources)
    print(out["cases"], out["counts"])
    assert out["problems"] == []
    assert out["cases"] > 500 and out["counts"]["error"] > 0 and out["counts"]["same"] > 0


@pytest.mark.slow
def test_fuzz_index_files_with_verify_false(tmp_path, damaged_sources):
    out = _run_worker(tmp_path, "fuzz", damaged_sources, n=2200)
    print(out["cases"], out["counts"])
    assert out["cases"] >= 2000
    assert out["problems"] == []


def test_structural_damage_is_refused_with_verify_false(small_index_dir):
    """Damage the checksums do not see with verify=False, refused by the structural checks of open()."""
    cases = {
        "term_offsets": lambda a: a.__setitem__(1, a[2] + 1),            # not monotone
        "range_code_offsets": lambda a: a.__setitem__(1, a[1] + 1),     # a code split between two terms
        "range_offsets": lambda a: a.__setitem__(2, a[2] + 1),          # pair counts differ from the codes
        "block_offsets": lambda a: a.__setitem__(1, a[1] + 1),          # block counts
        "docid_offsets": lambda a: a.__setitem__(1, a[-1] + 5),         # beyond the id bytes
        "term_max": lambda a: a.__setitem__(0, 0),                      # below the term's impacts
        "range_max": lambda a: a.__setitem__(0, a[0] + 1),
        "block_max": lambda a: a.__setitem__(0, a[0] + 1),
        "block_last_doc": lambda a: a.__setitem__(0, a[0] + 1),
    }
    for name, damage in cases.items():
        d = small_index_dir.parent / f"dmg-{name}"
        shutil.copytree(small_index_dir, d)
        p = d / f"{name}.npy"
        a = np.load(p)
        damage(a)
        with open(p, "r+b") as f:   # same size: only the checksum differs
            f.seek(os.path.getsize(p) - a.nbytes)
            f.write(a.tobytes())
        with pytest.raises(IndexFormatError):
            lsr.Index.open(d, verify=False)
        with pytest.raises(IndexFormatError):
            lsr.Index.open(d)


@pytest.fixture
def small_index_dir(tmp_path):
    d = tmp_path / "ix"
    lsr.build_index(_docs(), d, IndexConfig(block_size=8))
    return d


if __name__ == "__main__":
    result = _worker(sys.argv[1], json.loads(sys.argv[2]))
    print(json.dumps(result), flush=True)
