"""Bad input: a clear one-line error, a non-zero exit, and no index left behind."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import lsr
from lsr.cli import main
from lsr.errors import IndexFormatError, InputError


def run_cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


GOOD = '{"id": "d1", "vector": {"a": 1.5, "b": 0.25}}\n{"id": "d2", "vector": {"a": 0.5}}\n'


@pytest.mark.parametrize("content,message", [
    ('{"id": "d1", "vector": {"a": 1.5}\n', "malformed JSON"),
    ('{"vector": {"a": 1.5}}\n', 'has no "id"'),
    ('{"id": "d1"}\n', 'has no "vector"'),
    ('{"id": "d1", "vector": [1, 2]}\n', '"vector" must be a JSON object'),
    ('{"id": "d1", "vector": {"a": "x"}}\n', "is not a number"),
    ('{"id": "d1", "vector": {"a": true}}\n', "is not a number"),
    ('{"id": "d1", "vector": {"a": -0.5}}\n', "negative"),
    ('{"id": "d1", "vector": {"a": 1e999}}\n', "infinity"),
    ('{"id": "d1", "vector": {"a": NaN}}\n', "malformed JSON"),
    (GOOD + '{"id": "d1", "vector": {"c": 1}}\n', "duplicate doc id 'd1'"),
    ("", "empty collection"),
    ('{"id": "d1", "vector": {}}\n', "no postings"),
    ('{"id": "d 1", "vector": {"a": 1}}\n', "whitespace"),
    ('{"id": "d1", "vector": {"": 1}}\n', "empty term"),
])
def test_malformed_collections_are_refused(tmp_path, capsys, content, message):
    src = write(tmp_path / "c.jsonl", content)
    rc, out, err = run_cli(capsys, "index", src, "-o", tmp_path / "ix")
    assert rc != 0
    assert err.count("\n") == 1 and err.startswith("lsr: error: ") and message in err, err
    assert "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["c.jsonl"]  # nothing half-built left behind


def test_error_names_the_line(tmp_path, capsys):
    src = write(tmp_path / "c.jsonl", GOOD + '{"id": "d3", "vector": {"a": -1}}\n')
    rc, _, err = run_cli(capsys, "index", src, "-o", tmp_path / "ix")
    assert rc == 2 and f"{src}:3:" in err


def test_nan_from_python_records_is_refused(tmp_path):
    with pytest.raises(InputError, match="not finite"):
        lsr.build_index([{"id": "a", "vector": {"x": float("nan")}}], tmp_path / "ix")
    with pytest.raises(InputError, match="not finite"):
        lsr.build_index([("a", {"x": 1.0}), ("b", {"x": float("-inf")})], tmp_path / "ix")
    assert not os.listdir(tmp_path)


def test_gzipped_input_and_truncated_gzip(tmp_path, capsys):
    gz = tmp_path / "c.jsonl.gz"
    with gzip.open(gz, "wt") as f:
        f.write(GOOD * 1)
    rc, out, _ = run_cli(capsys, "index", gz, "-o", tmp_path / "ix")
    assert rc == 0 and "indexed 2 documents" in out
    data = gz.read_bytes()
    (tmp_path / "t.jsonl.gz").write_bytes(data[: len(data) // 2])
    rc, _, err = run_cli(capsys, "index", tmp_path / "t.jsonl.gz", "-o", tmp_path / "ix2")
    assert rc == 2 and "cannot read" in err and not (tmp_path / "ix2").exists()


def test_existing_output_needs_overwrite(tmp_path, capsys):
    src = write(tmp_path / "c.jsonl", GOOD)
    assert run_cli(capsys, "index", src, "-o", tmp_path / "ix")[0] == 0
    rc, _, err = run_cli(capsys, "index", src, "-o", tmp_path / "ix")
    assert rc == 2 and "already exists" in err
    assert run_cli(capsys, "index", src, "-o", tmp_path / "ix", "--overwrite")[0] == 0
    assert sorted(os.listdir(tmp_path)) == ["c.jsonl", "ix"]


@pytest.fixture
def small_index(tmp_path):
    lsr.build_index([{"id": "d1", "vector": {"a": 1.5, "b": 0.25}}, {"id": "d2", "vector": {"a": 0.5}}],
                    tmp_path / "ix")
    return tmp_path / "ix"


@pytest.mark.parametrize("queries,message", [
    ("q1\ta:1\nq1\tb:1\n", "duplicate query id"),
    ("q1 a:1\n", "expected 'qid<TAB>query'"),
    ("q1\ta:-1\n", "negative"),
    ("q1\ta:nan\n", "must be finite"),
    ("q1\thello world\n", "records none"),
])
def test_bad_queries(tmp_path, capsys, small_index, queries, message):
    q = write(tmp_path / "q.tsv", queries)
    rc, out, err = run_cli(capsys, "search", "-i", small_index, "-q", q)
    assert rc == 2 and message in err and err.count("\n") == 1, err


def test_unknown_terms_are_counted_in_a_warning(tmp_path, capsys, small_index):
    q = write(tmp_path / "q.tsv", "q1\ta:1 zz:2 yy:1\nq2\tzz:1\n")
    rc, out, err = run_cli(capsys, "search", "-i", small_index, "-q", q)
    assert rc == 0
    assert "3 query term(s) unknown to the index were ignored" in err
    assert out.splitlines() == ["q1 Q0 d1 1 255 lsr", "q1 Q0 d2 2 85 lsr"]


def _manifest(ix):
    return json.loads((ix / "manifest.json").read_text())


def test_info_describes_the_index(capsys, small_index):
    rc, out, _ = run_cli(capsys, "info", small_index)
    assert rc == 0
    lines = dict(line.split(None, 1) for line in out.splitlines())
    assert lines["format"].startswith("lsr-inverted-index v3 ")
    assert lines["documents"] == "2 (0 empty)" and lines["terms"] == "2"
    # a: docs 0 and 1 share range block 0 (one pair); b: doc 0 (one pair)
    assert lines["doc"].startswith("ids     pair-coded, 2 (term, block) pairs of 16 documents;")
    assert lines["size"].endswith("checksums OK")


def test_missing_index(tmp_path):
    with pytest.raises(IndexFormatError, match="does not exist"):
        lsr.Index.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexFormatError, match="not an lsr index"):
        lsr.Index.open(tmp_path / "empty")


def test_unknown_format_version(small_index):
    m = _manifest(small_index)
    m["format_version"] = 99
    (small_index / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(IndexFormatError, match="format version 99 is not supported"):
        lsr.Index.open(small_index)


def test_truncated_file(small_index):
    p = small_index / "range_codes.npy"
    p.write_bytes(p.read_bytes()[:-4])
    with pytest.raises(IndexFormatError, match="truncated"):
        lsr.Index.open(small_index, verify=False)


def test_corrupted_bytes_fail_the_checksum(small_index, capsys):
    p = small_index / "postings_impacts.npy"
    b = bytearray(p.read_bytes())
    b[-1] ^= 0xFF
    p.write_bytes(bytes(b))
    with pytest.raises(IndexFormatError, match="checksum mismatch"):
        lsr.Index.open(small_index)
    rc, _, err = run_cli(capsys, "info", small_index)
    assert rc == 2 and "checksum mismatch" in err


def test_inconsistent_doc_id_codes_are_refused_even_with_matching_checksums(small_index):
    # a hand-edited (or wrongly written) index whose checksums were updated: the
    # structural check of open(verify=True) decodes every term's codes
    from lsr.index.format import sha256_file

    p = small_index / "range_codes.npy"
    arr = np.load(p)
    arr[len(arr) // 2] |= 0x80   # a continuation bit that runs into the next pair
    np.save(p, arr)
    m = _manifest(small_index)
    m["arrays"]["range_codes"]["sha256"] = sha256_file(str(p))
    (small_index / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(IndexFormatError, match="doc id codes of term"):
        lsr.Index.open(small_index)


def test_corrupt_manifest(small_index):
    (small_index / "manifest.json").write_text("{not json")
    with pytest.raises(IndexFormatError, match="unreadable or corrupt"):
        lsr.Index.open(small_index)


def test_interrupted_build_leaves_nothing_that_opens(tmp_path):
    def docs():
        yield {"id": "a", "vector": {"x": 1.0}}
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        lsr.build_index(docs(), tmp_path / "ix")
    assert os.listdir(tmp_path) == []


def test_killed_build_leaves_nothing_that_opens(tmp_path):
    """SIGKILL in the middle of a build: the target never appears; the leftover does not open."""
    script = f"""
import os, signal, lsr
def docs():
    for i in range(5000):
        yield {{"id": str(i), "vector": {{"t%d" % (i % 50): 1.0 + i % 7}}}}
        if i == 4000:
            os.kill(os.getpid(), signal.SIGKILL)
lsr.build_index(docs(), {str(tmp_path / "ix")!r}, lsr.IndexConfig(run_postings=1000, batch_docs=100))
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert p.returncode == -9
    assert not (tmp_path / "ix").exists()
    leftovers = os.listdir(tmp_path)
    assert leftovers and all(".building-" in x for x in leftovers)
    with pytest.raises(IndexFormatError):
        lsr.Index.open(tmp_path / leftovers[0])


def test_cli_error_has_no_traceback_in_a_real_process(tmp_path):
    p = subprocess.run([sys.executable, "-m", "lsr", "search", "-i", str(tmp_path / "missing"), "-q", "x.tsv"],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [f"lsr: error: index {tmp_path / 'missing'} does not exist"]


def test_bad_k_and_config(tmp_path, capsys, small_index):
    q = write(tmp_path / "q.tsv", "q1\ta:1\n")
    rc, _, err = run_cli(capsys, "search", "-i", small_index, "-q", q, "-k", "0")
    assert rc == 2 and "k must be a positive integer" in err
    cfg = write(tmp_path / "c.yaml", "quantization: {method: fixed}\n")
    rc, _, err = run_cli(capsys, "index", q, "-o", tmp_path / "x", "--config", cfg)
    assert rc == 2 and "needs a positive, finite scale" in err
    cfg = write(tmp_path / "c2.yaml", "blocksize: 3\n")
    rc, _, err = run_cli(capsys, "index", q, "-o", tmp_path / "x", "--config", cfg)
    assert rc == 2 and "unknown setting(s) blocksize" in err


def test_search_settings_are_validated(small_index):
    from lsr.config import SearchConfig

    for bad, message in (({"full_ratio": 1.5}, "full_ratio must be a number in"),
                         ({"large_k": "wand"}, "large_k must be one of exhaustive, filtered"),
                         ({"algorithm": "nope"}, "unknown algorithm 'nope'"),
                         ({"dense_df": -0.1}, "dense_df must be a number in"),
                         ({"dense_df": 2}, "dense_df must be a number in"),
                         ({"dense_mb": -1}, "dense_mb must be an integer >= 0"),
                         ({"dense_mb": 1.5}, "dense_mb must be an integer >= 0"),
                         ({"common_df": 0}, r"common_df must be a number in \(0, 1\]"),
                         ({"common_df": 1.5}, r"common_df must be a number in \(0, 1\]"),
                         ({"max_common": -1}, "max_common must be an integer >= 0"),
                         ({"max_common": True}, "max_common must be an integer >= 0")):
        with pytest.raises(InputError, match=message):
            SearchConfig.from_dict(bad)
    assert SearchConfig.from_dict({"large_k": "filtered"}).planner.large_k == "filtered"
    assert SearchConfig().planner.large_k == "exhaustive"
