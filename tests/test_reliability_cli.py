"""Faults at the CLI's edges (issue 24, items 6-8) and property-based fuzzing of every parser.

Each fault gives one ``lsr: error: ...`` line with the file where it is known, exit 2, no traceback,
and no partial output file; empty queries get no hits and a warning while the batch goes on; a
malformed TSV weight is an error naming file:line. The fuzz tests feed random bytes and structured
mutations to the parsers of JSONL vectors, TSV and JSONL queries, TREC runs, qrels and manifest.json:
each either parses correctly or raises an :class:`~lsr.errors.LsrError`, never another exception.
"""

from __future__ import annotations

import copy
import errno
import gzip
import json
import math
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lsr
import lsr.index.search
import lsr.results
from lsr.cli import main
from lsr.errors import LsrError
from lsr.eval import read_qrels
from lsr.io import Query, iter_vectors, read_queries
from lsr.results import Results


def run_cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def one_error_line(err: str) -> bool:
    return err.startswith("lsr: error: ") and err.count("\n") == 1 and "Traceback" not in err


DOCS = [{"id": "d1", "vector": {"a": 1.5, "b": 0.25}}, {"id": "d2", "vector": {"a": 0.5}},
        {"id": "d3", "vector": {"c": 2.0, "b": 1.0}}]


@pytest.fixture(scope="module")
def small_index(tmp_path_factory):
    path = tmp_path_factory.mktemp("reliability") / "ix"
    lsr.build_index(DOCS, path)
    return path


def gz_bytes(text: str) -> bytes:
    return gzip.compress(text.encode("utf-8"))


# ----------------------------------------------------------------------------- compressed input
QUERIES_JSONL = "".join(json.dumps({"id": f"q{i}", "vector": {"a": 1.0, "b": 0.5}}) + "\n" for i in range(400))


@pytest.mark.parametrize("damage", ["truncated", "flipped", "not gzip"])
def test_damaged_gz_query_file_is_one_error_line(tmp_path, capsys, small_index, damage):
    data = gz_bytes(QUERIES_JSONL)
    if damage == "truncated":
        data = data[: len(data) // 2]                 # EOFError before
    elif damage == "flipped":
        data = data[:40] + bytes([data[40] ^ 0xFF]) + data[41:]   # zlib.error or a CRC mismatch
    else:
        data = b"this is not gzip at all\n"            # gzip.BadGzipFile
    q = tmp_path / "q.jsonl.gz"
    q.write_bytes(data)
    rc, out, err = run_cli(capsys, "search", "-i", small_index, "-q", q, "-o", tmp_path / "run.trec")
    assert rc == 2 and one_error_line(err) and str(q) in err, err
    assert "cannot read" in err or damage == "flipped"   # a flipped byte may decode to a malformed line
    assert not (tmp_path / "run.trec").exists()


def test_truncated_gz_qrels_is_one_error_line(tmp_path, capsys):
    run = tmp_path / "run.trec"
    run.write_text("q1 Q0 d1 1 2.5 x\n")
    data = gz_bytes("".join(f"q{i} 0 d{i} 1\n" for i in range(2000)))
    qrels = tmp_path / "qrels.txt.gz"
    qrels.write_bytes(data[: len(data) // 2])
    rc, out, err = run_cli(capsys, "eval", run, "--qrels", qrels, "-m", "RR@10")
    assert rc == 2 and one_error_line(err) and str(qrels) in err, err


# ----------------------------------------------------------------------------- outputs
def _no_search(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("the search ran although its output cannot be written")
    monkeypatch.setattr(lsr.index.search.Searcher, "search_batch", fail)
    monkeypatch.setattr(lsr.index.Index, "open", classmethod(fail))


def test_search_output_in_a_missing_directory_fails_before_the_search(tmp_path, capsys, small_index,
                                                                     monkeypatch):
    q = tmp_path / "q.tsv"
    q.write_text("q1\ta:1\n")
    _no_search(monkeypatch)
    out_path = tmp_path / "missing-dir" / "run.trec"
    rc, out, err = run_cli(capsys, "search", "-i", small_index, "-q", q, "-o", out_path)
    assert rc == 2 and one_error_line(err), err
    assert str(tmp_path / "missing-dir") in err and "does not exist" in err
    assert sorted(os.listdir(tmp_path)) == ["q.tsv"]


def test_search_output_that_is_a_directory_fails_before_the_search(tmp_path, capsys, small_index, monkeypatch):
    q = tmp_path / "q.tsv"
    q.write_text("q1\ta:1\n")
    (tmp_path / "out").mkdir()
    _no_search(monkeypatch)
    rc, out, err = run_cli(capsys, "search", "-i", small_index, "-q", q, "-o", tmp_path / "out")
    assert rc == 2 and one_error_line(err) and "is a directory" in err, err


def _listing(d):
    return sorted(os.listdir(d))


def test_full_disk_while_writing_the_run_leaves_no_partial_file(tmp_path, capsys, small_index, monkeypatch):
    """A writer that fails half-way with ENOSPC (as a full disk does): one line that says nothing was
    written, no file at -o, no temporary file beside it, and an earlier run file left as it was."""
    q = tmp_path / "q.tsv"
    q.write_text("".join(f"q{i}\ta:1 b:1\n" for i in range(50)))
    real = lsr.results.Results._write_lines

    def half_then_enospc(self, f, tag):
        real(Results(self.query_ids[:10], self.doc_ids[:10], self.scores[:10], self.ranks[:10]), f, tag)
        f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(lsr.results.Results, "_write_lines", half_then_enospc)
    out_path = tmp_path / "run.trec"
    rc, out, err = run_cli(capsys, "search", "-i", small_index, "-q", q, "-o", out_path)
    assert rc == 2 and one_error_line(err), err
    assert "No space left on device" in err and "nothing was written" in err and str(out_path) in err
    assert _listing(tmp_path) == ["q.tsv"]
    out_path.write_text("an earlier run\n")
    rc, out, err = run_cli(capsys, "search", "-i", small_index, "-q", q, "-o", out_path)
    assert rc == 2 and out_path.read_text() == "an earlier run\n" and _listing(tmp_path) == ["q.tsv", "run.trec"]
    monkeypatch.setattr(lsr.results.Results, "_write_lines", real)
    assert run_cli(capsys, "search", "-i", small_index, "-q", q, "-o", out_path)[0] == 0
    assert len(out_path.read_text().splitlines()) == 150


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 64 KiB tmpfs, unmounted after the test (the project machines and CI run as root, where mount works)."""
    d = tmp_path / "tiny"
    d.mkdir()
    assert os.geteuid() == 0 and shutil.which("mount"), "mounting a tmpfs needs root and mount(8)"
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)], capture_output=True)
    assert r.returncode == 0, f"cannot mount a tmpfs here: {r.stderr.decode(errors='replace').strip()}"
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], check=True)


def test_full_disk_on_a_tiny_tmpfs(tmp_path, capsys, small_index, tiny_tmpfs):
    q = tmp_path / "q.tsv"
    q.write_text("".join(f"query{i}\ta:1 b:1\n" for i in range(3000)))   # ~9,000 hits, ~250 KB of run
    out_path = tiny_tmpfs / "run.trec"
    out_path.write_text("an earlier run\n")
    rc, out, err = run_cli(capsys, "search", "-i", small_index, "-q", q, "-o", out_path)
    assert rc == 2 and one_error_line(err), err
    assert "No space left on device" in err and "nothing was written" in err
    assert _listing(tiny_tmpfs) == ["run.trec"] and out_path.read_text() == "an earlier run\n"


def test_output_to_devices_and_links_is_written_in_place(tmp_path, capsys, small_index):
    """-o /dev/full: one line (ENOSPC), and the device is still there (not renamed over); -o /dev/null
    works; -o through a symbolic link replaces the file it points to and keeps the link."""
    q = tmp_path / "q.tsv"
    q.write_text("q1\ta:1\n")
    rc, out, err = run_cli(capsys, "search", "-i", small_index, "-q", q, "-o", "/dev/full")
    assert rc == 2 and one_error_line(err) and "/dev/full" in err and "No space left on device" in err, err
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
    assert run_cli(capsys, "search", "-i", small_index, "-q", q, "-o", "/dev/null")[0] == 0
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "real.trec").write_text("old\n")
    os.symlink(tmp_path / "runs" / "real.trec", tmp_path / "link.trec")
    assert run_cli(capsys, "search", "-i", small_index, "-q", q, "-o", tmp_path / "link.trec")[0] == 0
    assert os.path.islink(tmp_path / "link.trec")
    assert (tmp_path / "runs" / "real.trec").read_text().startswith("q1 Q0 d1 1 ")
    assert _listing(tmp_path / "runs") == ["real.trec"]


def test_full_disk_on_stdout(tmp_path, small_index):
    q = tmp_path / "q.tsv"
    q.write_text("q1\ta:1\n")
    with open("/dev/full", "w") as full:
        p = subprocess.run([sys.executable, "-m", "lsr", "search", "-i", str(small_index), "-q", str(q)],
                           stdout=full, stderr=subprocess.PIPE, timeout=120)
    err = p.stderr.decode()
    assert p.returncode == 2 and one_error_line(err) and "standard output (No space left on device)" in err, err


def test_closed_stdout_ends_quietly(tmp_path, small_index):
    """`lsr search ... | head -1`: the reader goes away; no traceback, no "Exception ignored"."""
    q = tmp_path / "q.tsv"
    q.write_text("".join(f"query{i}\ta:1 b:1\n" for i in range(5000)))   # a run larger than a pipe's buffer
    p = subprocess.Popen([sys.executable, "-m", "lsr", "search", "-i", str(small_index), "-q", str(q)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141 and first.startswith(b"query0 Q0 d1 1 ") and err == "", err


# ----------------------------------------------------------------------------- unreadable input
def test_directory_given_as_a_file(tmp_path, capsys, small_index):
    d = tmp_path / "adir"
    d.mkdir()
    run = tmp_path / "run.trec"
    run.write_text("q1 Q0 d1 1 2.5 x\n")
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("q1 0 d1 1\n")
    for argv in (["search", "-i", small_index, "-q", d], ["eval", d, "--qrels", qrels, "-m", "RR@10"],
                 ["eval", run, "--qrels", d, "-m", "RR@10"]):
        rc, out, err = run_cli(capsys, *argv)
        assert rc == 2 and one_error_line(err) and f"{d} is a directory" in err, (argv, err)


@pytest.mark.parametrize("exc,line", [
    (PermissionError(errno.EACCES, "Permission denied", "some/file"), "lsr: error: some/file: Permission denied\n"),
    (OSError(errno.ENOSPC, "No space left on device"), "lsr: error: No space left on device\n"),
    (EOFError("Compressed file ended before the end-of-stream marker was reached"), "truncated"),
    (zlib.error("Error -3 while decompressing data: invalid block type"), "corrupt"),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "not valid UTF-8"),
])
def test_environment_errors_anywhere_are_one_line(capsys, monkeypatch, exc, line):
    """The CLI's last resort: these exceptions from any command are one line, exit 2."""
    import lsr.commands.info

    def boom(args):
        raise exc
    monkeypatch.setattr(lsr.commands.info, "run", boom)
    rc, out, err = run_cli(capsys, "info", "whatever")
    assert rc == 2 and one_error_line(err) and line in err, err


def test_non_utf8_bytes(tmp_path, capsys, small_index):
    run = tmp_path / "run.trec"
    run.write_bytes(b"q1 Q0 d1 1 2.5 x\nq1 Q0 d\xff\xfe 2 1.5 x\n")
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("q1 0 d1 1\n")
    rc, out, err = run_cli(capsys, "eval", run, "--qrels", qrels, "-m", "RR@10")
    assert rc == 2 and one_error_line(err) and f"{run}:2: not valid UTF-8" in err, err
    q = tmp_path / "q.tsv.gz"
    q.write_bytes(gz_bytes("q1\ta:1\n") + gzip.compress(b"q2\t\xc3\x28:1\n"))
    rc, out, err = run_cli(capsys, "search", "-i", small_index, "-q", q)
    assert rc == 2 and one_error_line(err) and f"{q}:2: not valid UTF-8" in err, err


# ----------------------------------------------------------------------------- empty queries
def test_empty_queries_get_no_hits_and_one_warning(tmp_path, capsys, small_index):
    q = tmp_path / "q.jsonl"
    q.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "q1", "vector": {"a": 1}}, {"id": "q2", "vector": {}}, {"id": "q3", "text": ""},
        {"id": "q4", "text": "   "}, {"id": "q5", "vector": {"c": 1}}]))
    rc, out, err = run_cli(capsys, "search", "-i", small_index, "-q", q)
    assert rc == 0, err
    assert [line.split()[0] for line in out.splitlines()] == ["q1", "q1", "q5"]
    warnings = [line for line in err.splitlines() if line.startswith("lsr: warning:")]
    assert warnings == ["lsr: warning: 3 empty queries (no terms) got no hits: 'q2', 'q3', 'q4'"], err
    tsv = tmp_path / "q.tsv"
    tsv.write_text("q1\ta:1\nq2\t\nq3\t  \nq4\tc:1\n")
    rc, out, err = run_cli(capsys, "search", "-i", small_index, "-q", tsv, "-o", tmp_path / "run.trec")
    assert rc == 0 and "2 empty queries (no terms) got no hits: 'q2', 'q3'" in err, err
    assert "searched 4 queries (2 with hits)" in err
    assert [line.split()[0] for line in (tmp_path / "run.trec").read_text().splitlines()] == ["q1", "q1", "q4"]


def test_empty_queries_in_the_python_api(small_index):
    s = lsr.Searcher(small_index)
    with pytest.warns(UserWarning, match="1 empty query"):
        assert len(s.search({})) == 0
    with pytest.warns(UserWarning, match="2 empty queries"):
        r = s.search_batch([("e1", {}), ("x", {"a": 1.0}), ("e2", Query("e2", text=""))])
    assert r.query_order() == ["x"] and len(r) == 2


# ----------------------------------------------------------------------------- malformed TSV weights
@pytest.mark.parametrize("fmt,body", [("auto", "a:1 w1:abc"), ("auto", "w1:abc b:0.5"), ("vector", "w1:abc"),
                                      ("vector", "a w1:1x")])
def test_malformed_tsv_weight_is_an_error_with_file_and_line(tmp_path, capsys, small_index, fmt, body):
    q = tmp_path / "q.tsv"
    q.write_text(f"q0\ta:1\nq1\t{body}\n")
    rc, out, err = run_cli(capsys, "search", "-i", small_index, "-q", q, "--query-format", fmt)
    assert rc == 2 and one_error_line(err) and f"{q}:2: weight " in err and "is not a number" in err, err


def test_text_lines_keep_any_text(tmp_path):
    q = tmp_path / "q.tsv"
    q.write_text("q1\tw1:abc\nq2\tsee http://example.com now\nq3\ta:1 b:2\n")
    assert read_queries(q, "text") == [Query("q1", text="w1:abc"), Query("q2", text="see http://example.com now"),
                                       Query("q3", text="a:1 b:2")]
    # auto: a line without any term:NUMBER token is text, whatever colons it holds
    assert read_queries(q, "auto") == [Query("q1", text="w1:abc"), Query("q2", text="see http://example.com now"),
                                       Query("q3", vector={"a": 1.0, "b": 2.0})]


# ============================================================================= fuzzing
FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

json_leaf = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
             | st.text(max_size=6))
json_value = st.recursive(json_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c,
                                                                                         max_size=3),
                          max_leaves=8)
# a word: no whitespace (as str.split sees it), no colon
word = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters=":"),
               min_size=1, max_size=8).filter(lambda s: not any(ch.isspace() for ch in s))
weight = st.floats(0, 1e6) | st.integers(0, 10**6)
mutations = st.lists(st.tuples(st.sampled_from(["flip", "delete", "insert", "truncate"]),
                               st.integers(0, 10**6), st.integers(0, 255)), max_size=4)


def mutate(data: bytes, muts) -> bytes:
    for op, pos, byte in muts:
        if not data and op != "insert":
            continue
        i = pos % (len(data) + 1)
        if op == "flip" and i < len(data):
            data = data[:i] + bytes([data[i] ^ (byte or 1)]) + data[i + 1:]
        elif op == "delete":
            data = data[:i] + data[i + 1:]
        elif op == "insert":
            data = data[:i] + bytes([byte]) + data[i:]
        elif op == "truncate":
            data = data[:i]
    return data


def parses_or_lsr_error(fn):
    """fn()'s result, or None when it raised an LsrError; any other exception fails the test."""
    try:
        return fn()
    except LsrError as e:
        assert str(e) and "\n" not in str(e), repr(e)
        return None


def _write(d: str, name: str, data: bytes, gz: bool) -> str:
    path = os.path.join(d, name + (".gz" if gz else ""))
    with open(path, "wb") as f:
        f.write(gzip.compress(data) if gz else data)
    return path


def _write_mutated_gz(d: str, name: str, data: bytes, muts) -> str:
    path = os.path.join(d, name + ".gz")
    with open(path, "wb") as f:
        f.write(mutate(gzip.compress(data), muts))
    return path


vector_record = st.fixed_dictionaries({}, optional={
    "id": word | json_value, "vector": st.dictionaries(st.text(max_size=4), json_leaf, max_size=4) | json_value,
    "contents": json_value})


@FUZZ
@given(records=st.lists(vector_record, max_size=5), muts=mutations, gz=st.booleans())
def test_fuzz_jsonl_vectors(records, muts, gz):
    data = mutate("".join(json.dumps(r) + "\n" for r in records).encode(), muts)
    with tempfile.TemporaryDirectory() as d:
        path = _write(d, "v.jsonl", data, gz)
        parses_or_lsr_error(lambda: list(iter_vectors(path)))
        parses_or_lsr_error(lambda: list(iter_vectors(_write_mutated_gz(d, "w.jsonl", data, muts))))


@FUZZ
@given(docs=st.lists(st.tuples(word, st.dictionaries(word, weight, max_size=4)), max_size=5), gz=st.booleans())
def test_fuzz_jsonl_vectors_roundtrip(docs, gz):
    data = "".join(json.dumps({"id": i, "vector": v}) + "\n" for i, v in docs).encode()
    with tempfile.TemporaryDirectory() as d:
        path = _write(d, "v.jsonl", data, gz)
        got = parses_or_lsr_error(lambda: list(iter_vectors(path)))
    if not docs:
        assert got is None or got == []
    else:
        assert got == [(i, v) for i, v in docs]


@FUZZ
@given(data=st.binary(max_size=300), muts=mutations, fmt=st.sampled_from(["auto", "vector", "text"]),
       suffix=st.sampled_from(["q.tsv", "q.jsonl"]), gz=st.booleans())
def test_fuzz_query_files_random_bytes(data, muts, fmt, suffix, gz):
    with tempfile.TemporaryDirectory() as d:
        path = _write(d, suffix, mutate(data, muts), gz)
        parses_or_lsr_error(lambda: read_queries(path, fmt))


tsv_token = st.one_of(word, st.tuples(word, weight).map(lambda t: f"{t[0]}:{t[1]!r}"),
                      st.tuples(word, word).map(lambda t: f"{t[0]}:{t[1]}"))


@FUZZ
@given(lines=st.lists(st.tuples(word, st.lists(tsv_token, max_size=4)), max_size=5), muts=mutations,
       fmt=st.sampled_from(["auto", "vector", "text"]))
def test_fuzz_tsv_queries_mutated(lines, muts, fmt):
    data = "".join(f"{qid}\t{' '.join(toks)}\n" for qid, toks in lines).encode()
    with tempfile.TemporaryDirectory() as d:
        parses_or_lsr_error(lambda: read_queries(_write(d, "q.tsv", mutate(data, muts), False), fmt))


@FUZZ
@given(queries=st.dictionaries(word, st.dictionaries(word, weight, min_size=1, max_size=4), max_size=5),
       gz=st.booleans())
def test_fuzz_tsv_queries_roundtrip(queries, gz):
    data = "".join(f"{qid}\t{' '.join(f'{t}:{w!r}' for t, w in vec.items())}\n"
                   for qid, vec in queries.items()).encode()
    with tempfile.TemporaryDirectory() as d:
        got = read_queries(_write(d, "q.tsv", data, gz))
    assert got == [Query(qid, vector={t: float(w) for t, w in vec.items()}) for qid, vec in queries.items()]


query_record = st.fixed_dictionaries({}, optional={
    "id": word | json_value, "vector": st.dictionaries(st.text(max_size=4), json_leaf, max_size=3) | json_value,
    "text": st.text(max_size=8) | json_value})


@FUZZ
@given(records=st.lists(query_record, max_size=5), muts=mutations, fmt=st.sampled_from(["auto", "vector", "text"]))
def test_fuzz_jsonl_queries(records, muts, fmt):
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    with tempfile.TemporaryDirectory() as d:
        parses_or_lsr_error(lambda: read_queries(_write(d, "q.jsonl", data, False), fmt))
        parses_or_lsr_error(lambda: read_queries(_write(d, "m.jsonl", mutate(data, muts), False), fmt))
        parses_or_lsr_error(lambda: read_queries(_write_mutated_gz(d, "g.jsonl", data, muts), fmt))


@FUZZ
@given(queries=st.dictionaries(word, st.dictionaries(word, weight, max_size=3) | st.text(max_size=10), max_size=5))
def test_fuzz_jsonl_queries_roundtrip(queries):
    recs = [{"id": q, "vector": v} if isinstance(v, dict) else {"id": q, "text": v} for q, v in queries.items()]
    with tempfile.TemporaryDirectory() as d:
        got = read_queries(_write(d, "q.jsonl", "".join(json.dumps(r) + "\n" for r in recs).encode(), False))
    assert got == [Query(q, vector=v) if isinstance(v, dict) else Query(q, text=v) for q, v in queries.items()]


@FUZZ
@given(data=st.binary(max_size=300), muts=mutations)
def test_fuzz_trec_runs_random_bytes(data, muts):
    lines = b"q1 Q0 d1 1 2.5 lsr\nq1 Q0 d2 2 1e3 lsr\nq2 Q0 d1 1 -inf x\n"
    with tempfile.TemporaryDirectory() as d:
        for i, blob in enumerate((data, mutate(lines, muts), mutate(lines + data, muts))):
            path = _write(d, f"r{i}.trec", blob, False)
            r = parses_or_lsr_error(lambda: Results.read_trec(path))
            if r is not None:
                for hits in r.by_query().values():   # ranks 1..n by score, NaN refused
                    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
                    assert all(not math.isnan(h.score) for h in hits)
                    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))


@FUZZ
@given(run=st.dictionaries(word, st.lists(st.tuples(word, st.floats(allow_nan=False)), max_size=4), max_size=4))
def test_fuzz_trec_runs_roundtrip(run):
    hits = [(q, did, s) for q, docs in run.items() for did, s in sorted(docs, key=lambda t: -t[1])]
    res = Results([h[0] for h in hits], [h[1] for h in hits], [h[2] for h in hits],
                  [1 + [x for x in hits if x[0] == h[0]].index(h) for h in hits])
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "run.trec")
        res.write_trec(path)
        got = Results.read_trec(path)
    assert got.query_ids == res.query_ids and got.doc_ids == res.doc_ids
    assert got.scores.tolist() == res.scores.tolist()


@FUZZ
@given(data=st.binary(max_size=300), muts=mutations, gz=st.booleans())
def test_fuzz_qrels_random_bytes(data, muts, gz):
    lines = b"query-id corpus-id score\nq1 d1 1\nq1 d2 0\n"
    with tempfile.TemporaryDirectory() as d:
        for i, blob in enumerate((data, mutate(lines, muts), mutate(lines + data, muts))):
            path = _write(d, f"qrels{i}.txt", blob, gz)
            got = parses_or_lsr_error(lambda: read_qrels(path))
            if got is not None:
                assert got and all(isinstance(r, int) for docs in got.values() for r in docs.values())
        parses_or_lsr_error(lambda: read_qrels(_write_mutated_gz(d, "g.txt", lines, muts)))


@FUZZ
@given(qrels=st.dictionaries(word, st.dictionaries(word, st.integers(-3, 3), min_size=1, max_size=4),
                             min_size=1, max_size=4), trec=st.booleans())
def test_fuzz_qrels_roundtrip(qrels, trec):
    text = "".join(f"{q} 0 {did} {r}\n" if trec else f"{q}\t{did}\t{r}\n"
                   for q, docs in qrels.items() for did, r in docs.items())
    with tempfile.TemporaryDirectory() as d:
        assert read_qrels(_write(d, "qrels.txt", text.encode(), False)) == qrels


# ----------------------------------------------------------------------------- manifest.json
def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


@pytest.fixture(scope="module")
def fuzz_index(small_index, tmp_path_factory):
    """A copy of the small index whose manifest the fuzz tests rewrite, and the original manifest."""
    d = tmp_path_factory.mktemp("manifest-fuzz") / "ix"
    shutil.copytree(small_index, d)
    with open(d / "manifest.json", encoding="utf-8") as f:
        return d, json.load(f)


def _open_and_search(d, verify):
    ix = parses_or_lsr_error(lambda: lsr.Index.open(d, verify=verify))
    if ix is not None:
        for algorithm in ("exhaustive", "auto", "bmw"):
            r = parses_or_lsr_error(lambda: lsr.Searcher(ix, algorithm=algorithm).search({"a": 1.0, "b": 2.0}, k=3))
            assert r is None or len(r) <= 3
    return ix


@pytest.mark.slow
@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), verify=st.booleans())
def test_fuzz_manifest_structured(fuzz_index, data, verify):
    d, base = fuzz_index
    paths = [p for p in _paths(base) if p]
    m = copy.deepcopy(base)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        parent = m
        try:
            for key in path[:-1]:
                parent = parent[key]
            old = parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue
        op = data.draw(st.sampled_from(["replace", "delete", "nudge"]))
        if op == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif op == "nudge" and isinstance(old, int) and not isinstance(old, bool):
            parent[path[-1]] = old + data.draw(st.sampled_from([-2, -1, 1, 2, 2**31, -(2**40)]))
        else:
            parent[path[-1]] = data.draw(json_value)
    with open(d / "manifest.json", "w", encoding="utf-8") as f:
        json.dump(m, f)
    _open_and_search(d, verify)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(muts=mutations, verify=st.booleans())
def test_fuzz_manifest_bytes(fuzz_index, muts, verify):
    d, base = fuzz_index
    with open(d / "manifest.json", "wb") as f:
        f.write(mutate(json.dumps(base).encode(), muts))
    _open_and_search(d, verify)


def test_unchanged_manifest_opens(fuzz_index):
    d, base = fuzz_index
    with open(d / "manifest.json", "w", encoding="utf-8") as f:
        json.dump(base, f)
    ix = _open_and_search(d, True)
    assert ix is not None and ix.num_documents == len(DOCS)
