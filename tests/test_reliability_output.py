"""What lsr writes never costs the user data (issue 24, items 1, 2 and 5).

--overwrite replaces only what lsr made (an index, an encode output) or an empty directory, never an
input, a file or a foreign directory; the swap leaves an index at the output at every step; SIGTERM
cleans a build up like Ctrl-C, and a build killed outright is cleaned up (with a warning) by the next
build in the same directory; an unfinished `lsr encode` directory is refused unless --allow-partial.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

import lsr
from lsr.cli import main
from lsr.errors import InputError
from lsr.index import builder as builder_mod
from lsr.outputs import exchange

GOOD = '{"id": "d1", "vector": {"a": 1.5, "b": 0.25}}\n{"id": "d2", "vector": {"a": 0.5}}\n'
OTHER = '{"id": "x1", "vector": {"c": 2.0}}\n{"id": "x2", "vector": {"a": 1.0, "c": 1.0}}\n{"id": "x3", ' \
        '"vector": {"b": 3.0}}\n'


def run_cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def one_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lsr: error: "), err
    return lines[0]


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def leftovers(parent) -> list[str]:
    return sorted(n for n in os.listdir(parent) if ".building-" in n)


# ---------------------------------------------------------------------------------------- --overwrite
def test_overwrite_refuses_an_output_that_contains_the_input(tmp_path, capsys):
    src = write(tmp_path / "dir" / "in.jsonl", GOOD)
    rc, _, err = run_cli(capsys, "index", src, "-o", tmp_path / "dir", "--overwrite")
    assert rc == 2 and "contains the input" in one_error(err) and str(tmp_path / "dir") in err
    assert src.read_text(encoding="utf-8") == GOOD
    assert sorted(os.listdir(tmp_path / "dir")) == ["in.jsonl"]


def test_overwrite_refuses_the_input_file_itself(tmp_path, capsys):
    src = write(tmp_path / "good.jsonl", GOOD)
    rc, _, err = run_cli(capsys, "index", src, "-o", src, "--overwrite")
    assert rc == 2 and "is the input" in one_error(err)
    assert src.read_text(encoding="utf-8") == GOOD
    assert sorted(os.listdir(tmp_path)) == ["good.jsonl"]
    # through a symbolic link too
    os.symlink(src, tmp_path / "link.jsonl")
    rc, _, err = run_cli(capsys, "index", tmp_path / "link.jsonl", "-o", src, "--overwrite")
    assert rc == 2 and "is the input" in one_error(err) and src.read_text(encoding="utf-8") == GOOD


def test_overwrite_never_deletes_a_file(tmp_path, capsys):
    src = write(tmp_path / "c.jsonl", GOOD)
    precious = write(tmp_path / "notes.txt", "mine\n")
    rc, _, err = run_cli(capsys, "index", src, "-o", precious, "--overwrite")
    assert rc == 2 and "not a directory" in one_error(err) and str(precious) in err
    assert precious.read_text(encoding="utf-8") == "mine\n"
    assert sorted(os.listdir(tmp_path)) == ["c.jsonl", "notes.txt"]


def test_overwrite_refuses_a_directory_that_is_not_an_index(tmp_path, capsys):
    src = write(tmp_path / "c.jsonl", GOOD)
    unrelated = write(tmp_path / "other" / "unrelated.txt", "keep me\n")
    rc, _, err = run_cli(capsys, "index", src, "-o", tmp_path / "other", "--overwrite")
    assert rc == 2 and "not an lsr index" in one_error(err)
    assert unrelated.read_text(encoding="utf-8") == "keep me\n"
    assert sorted(os.listdir(tmp_path)) == ["c.jsonl", "other"]
    # the Python API says the same
    with pytest.raises(InputError, match="not an lsr index"):
        lsr.build_index([{"id": "d", "vector": {"a": 1}}], tmp_path / "other", overwrite=True)
    assert unrelated.exists()


def test_overwrite_refuses_an_index_holding_a_foreign_file(tmp_path, capsys):
    src = write(tmp_path / "c.jsonl", GOOD)
    assert run_cli(capsys, "index", src, "-o", tmp_path / "ix")[0] == 0
    write(tmp_path / "ix" / "my-notes.md", "notes\n")
    rc, _, err = run_cli(capsys, "index", src, "-o", tmp_path / "ix", "--overwrite")
    assert rc == 2 and "'my-notes.md'" in one_error(err)
    assert (tmp_path / "ix" / "my-notes.md").exists() and lsr.Index.open(tmp_path / "ix").num_documents == 2
    # a manifest of another kind is not an index either
    write(tmp_path / "fake" / "manifest.json", '{"format": "something-else"}')
    rc, _, err = run_cli(capsys, "index", src, "-o", tmp_path / "fake", "--overwrite")
    assert rc == 2 and "not an lsr index manifest" in one_error(err)
    assert (tmp_path / "fake" / "manifest.json").exists()


def test_overwrite_replaces_an_index_or_an_empty_directory(tmp_path, capsys):
    src = write(tmp_path / "c.jsonl", GOOD)
    other = write(tmp_path / "o.jsonl", OTHER)
    (tmp_path / "empty").mkdir()
    assert run_cli(capsys, "index", src, "-o", tmp_path / "empty", "--overwrite")[0] == 0
    assert lsr.Index.open(tmp_path / "empty").num_documents == 2
    assert run_cli(capsys, "index", src, "-o", tmp_path / "ix")[0] == 0
    rc, _, err = run_cli(capsys, "index", other, "-o", tmp_path / "ix", "--overwrite")
    assert rc == 0 and "warning" not in err
    assert lsr.Index.open(tmp_path / "ix").num_documents == 3
    assert sorted(os.listdir(tmp_path / "ix")) == sorted(
        [f"{n}.npy" for n in lsr.index.format.ARRAY_DTYPES] + ["manifest.json", "vocab.json"])
    assert sorted(os.listdir(tmp_path)) == ["c.jsonl", "empty", "ix", "o.jsonl"]


def test_overwrite_replaces_a_symbolic_link_but_not_its_target(tmp_path, capsys):
    src = write(tmp_path / "c.jsonl", GOOD)
    assert run_cli(capsys, "index", src, "-o", tmp_path / "real")[0] == 0
    os.symlink(tmp_path / "real", tmp_path / "ix")
    assert run_cli(capsys, "index", write(tmp_path / "o.jsonl", OTHER), "-o", tmp_path / "ix", "--overwrite")[0] == 0
    assert not os.path.islink(tmp_path / "ix") and lsr.Index.open(tmp_path / "ix").num_documents == 3
    assert lsr.Index.open(tmp_path / "real").num_documents == 2
    assert leftovers(tmp_path) == []


def _exchange_supported(tmp_path) -> bool:
    a, b = tmp_path / "xa", tmp_path / "xb"
    a.mkdir(), b.mkdir()
    (a / "f").write_text("a")
    ok = exchange(str(a), str(b))
    if ok:
        assert (b / "f").exists() and not (a / "f").exists()
    shutil.rmtree(a), shutil.rmtree(b)
    return ok


def test_the_swap_leaves_an_index_at_the_output_at_every_step(tmp_path, monkeypatch):
    """Every rename, exchange, unlink and delete the replacement makes: the output opens after each."""
    assert _exchange_supported(tmp_path), "renameat2(RENAME_EXCHANGE) is not supported on this file system"
    out = tmp_path / "ix"
    old = lsr.build_index([{"id": "d1", "vector": {"a": 1.0}}, {"id": "d2", "vector": {"b": 2.0}}], out)
    searcher = lsr.Searcher(old)
    before = searcher.search({"a": 1.0, "b": 1.0}, k=5).to_dict()
    seen = []

    def check(what):
        seen.append(what)
        ix = lsr.Index.open(out, verify=True)   # raises if there is no whole index at out
        assert ix.num_documents in (2, 3), what

    def watch(name, real):
        def wrapper(*a, **k):
            r = real(*a, **k)
            check(name)
            return r
        return wrapper

    armed = {"on": False}
    real_exchange = getattr(builder_mod, "exchange", None)   # (absent before the exchange existed)

    def watched_exchange(a, b):
        armed["on"] = True   # from here on the old index is being replaced
        r = real_exchange(a, b)
        check("exchange")
        return r

    for mod, name in ((os, "rename"), (os, "replace"), (os, "unlink"), (shutil, "rmtree")):
        real = getattr(mod, name)

        def gated(*a, _real=real, _name=name, **k):
            r = _real(*a, **k)
            if armed["on"] or (_name in ("rename", "replace") and os.fspath(a[0]) == str(out)):
                check(_name)
            return r
        monkeypatch.setattr(mod, name, gated)
    monkeypatch.setattr(builder_mod, "exchange", watched_exchange, raising=False)
    new = lsr.build_index([{"id": "x1", "vector": {"a": 3.0}}, {"id": "x2", "vector": {"c": 1.0}},
                           {"id": "x3", "vector": {"b": 1.0}}], out, overwrite=True)
    monkeypatch.undo()
    assert "exchange" in seen and len(seen) >= 3, seen
    assert new.num_documents == 3 and leftovers(tmp_path) == []
    # a reader that had the old index open keeps reading the old index
    assert searcher.search({"a": 1.0, "b": 1.0}, k=5).to_dict() == before


def test_the_fallback_swap_without_exchange(tmp_path, monkeypatch):
    out = tmp_path / "ix"
    lsr.build_index([{"id": "d1", "vector": {"a": 1.0}}], out)
    monkeypatch.setattr(builder_mod, "exchange", lambda a, b: False, raising=False)
    assert lsr.build_index([{"id": "x1", "vector": {"a": 3.0}}, {"id": "x2", "vector": {"c": 1.0}}], out,
                           overwrite=True).num_documents == 2
    assert sorted(os.listdir(tmp_path)) == ["ix"]
    assert "building.json" not in os.listdir(out)


def test_one_step_and_encode_overwrite_refuse_an_output_holding_the_corpus(tmp_path, capsys, splade_tiny):
    corpus = write(tmp_path / "dir" / "c.jsonl", '{"_id": "d1", "text": "a cat"}\n{"_id": "d2", "text": "a dog"}\n')
    rc, _, err = run_cli(capsys, "index", "--encoder", splade_tiny, "--corpus", corpus, "-o", tmp_path / "dir",
                         "--overwrite", "--no-progress")
    assert rc == 2 and "contains the input" in one_error(err) and corpus.exists()
    rc, _, err = run_cli(capsys, "encode", splade_tiny, "--corpus", corpus, "-o", tmp_path / "dir", "--overwrite",
                         "--no-progress")
    assert rc == 2 and "contains the input" in one_error(err) and corpus.exists()
    assert sorted(os.listdir(tmp_path / "dir")) == ["c.jsonl"]


def test_encode_overwrite_replaces_only_an_encode_output(tmp_path, splade_tiny):
    from lsr.encoders import encode_corpus, encode_query_file, load_encoder

    enc = load_encoder(str(splade_tiny))
    corpus = write(tmp_path / "c.jsonl", '{"_id": "d1", "text": "a cat"}\n{"_id": "d2", "text": "a dog"}\n')
    text = corpus.read_text()
    with pytest.raises(InputError, match="is the input"):
        encode_corpus(enc, str(corpus), str(corpus), overwrite=True)
    foreign = write(tmp_path / "vecs" / "part-00000.jsonl.gz", "not mine")
    with pytest.raises(InputError, match="not an lsr encode output"):
        encode_corpus(enc, str(corpus), str(tmp_path / "vecs"), overwrite=True)
    assert foreign.read_text() == "not mine"
    with pytest.raises(InputError, match="is the input"):
        encode_query_file(enc, str(corpus), str(corpus))
    assert corpus.read_text() == text
    # an encode output is replaced, and one holding a foreign file is refused
    assert encode_corpus(enc, str(corpus), str(tmp_path / "enc")).complete
    rep = encode_corpus(enc, str(corpus), str(tmp_path / "enc"), overwrite=True)
    assert rep.complete and rep.encoded == 2
    write(tmp_path / "enc" / "readme.txt", "mine")
    with pytest.raises(InputError, match="'readme.txt'"):
        encode_corpus(enc, str(corpus), str(tmp_path / "enc"), overwrite=True)
    assert (tmp_path / "enc" / "readme.txt").exists() and (tmp_path / "enc" / "encode.state").exists()


# ------------------------------------------------------------------------------- signals and leftovers
def _collection(path, n_docs, terms=8):
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n_docs):
            vec = {f"t{(i * 7 + j * 13) % 5000}": 1.0 + (i + j) % 9 for j in range(terms)}
            f.write(json.dumps({"id": f"d{i}", "vector": vec}) + "\n")
    return path


def _start_fifo_build(tmp_path, first_lines: str, *extra):
    """An `lsr index` process reading a FIFO; returns (process, writer) once it has spilled a run."""
    fifo = tmp_path / "in.jsonl"
    os.mkfifo(fifo)
    out = tmp_path / "ix"
    config = write(tmp_path / "cfg" / "small-runs.yaml", "batch_docs: 100\nrun_postings: 1000\n")
    proc = subprocess.Popen([sys.executable, "-m", "lsr", "index", str(fifo), "-o", str(out), "--config",
                             str(config), "--no-progress", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while True:   # open the writing end once the process has opened the reading end
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "the build did not open its input in time"
            time.sleep(0.02)
    os.set_blocking(fd, True)
    writer = os.fdopen(fd, "w", encoding="utf-8")
    writer.write(first_lines)
    writer.flush()
    while not any(os.path.isdir(tmp_path / b / "runs" / "run-00001") for b in leftovers(tmp_path)):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "the build spilled no run in time"
        time.sleep(0.02)
    return proc, writer


def _lines(n, start=0):
    return "".join(json.dumps({"id": f"d{i}", "vector": {f"t{i % 97}": 1.0 + i % 5, f"u{i % 13}": 2.0}}) + "\n"
                   for i in range(start, start + n))


def _sigterm_when(proc, ready, seconds: float, poll: float) -> bytes:
    """Wait (at most ``seconds``) until ``ready()``, the process still running, then SIGTERM it; its stderr."""
    deadline = time.time() + seconds
    try:
        while not ready():
            assert proc.poll() is None, "the process ended first: " + proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline
            time.sleep(poll)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return err


def test_sigterm_while_reading_removes_the_building_directory(tmp_path):
    proc, writer = _start_fifo_build(tmp_path, _lines(1500))
    try:
        (b,) = leftovers(tmp_path)
        record = tmp_path / b / "building.json"
        owner = json.loads(record.read_text()) if record.exists() else None
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        writer.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()
    assert "lsr: terminated" in err.decode() and "Traceback" not in err.decode()
    assert leftovers(tmp_path) == [] and not (tmp_path / "ix").exists()
    assert owner is not None and owner["pid"] == proc.pid and owner["host"] == socket.gethostname()


def test_sigterm_during_the_final_assembly_removes_the_building_directory(tmp_path):
    src = _collection(tmp_path / "c.jsonl", 30_000)
    out = tmp_path / "ix"
    proc = subprocess.Popen([sys.executable, "-m", "lsr", "index", str(src), "-o", str(out), "--run-postings",
                             "5000", "--reorder", "bp", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # the merge has begun: postings_impacts.npy is created once every run is on disk
    err = _sigterm_when(proc, lambda: any(os.path.exists(tmp_path / b / "postings_impacts.npy")
                                          for b in leftovers(tmp_path)), 300, 0.002)
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()
    assert leftovers(tmp_path) == [] and not out.exists()


def test_sigkilled_build_is_cleaned_up_by_the_next_build(tmp_path, capsys):
    proc, writer = _start_fifo_build(tmp_path, _lines(1500))
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        writer.close()
    (stale,) = leftovers(tmp_path)
    os.unlink(tmp_path / "in.jsonl")
    src = write(tmp_path / "c.jsonl", GOOD)
    # a build of another index in the same directory finds it, removes it and says so
    rc, _, err = run_cli(capsys, "index", src, "-o", tmp_path / "other")
    assert rc == 0
    assert f"lsr: warning: removed the stale build directory {tmp_path / stale}" in err
    assert f"process {proc.pid}" in err
    assert leftovers(tmp_path) == [] and sorted(os.listdir(tmp_path)) == ["c.jsonl", "cfg", "other"]


def _fake_building(parent, name, owner):
    d = parent / name
    (d / "runs").mkdir(parents=True)
    (d / "docids.bin").write_bytes(b"x" * 1000)
    if owner is not None:
        (d / "building.json").write_text(json.dumps(owner))
    return d


def test_only_builds_whose_process_is_gone_are_removed(tmp_path, recwarn):
    host = socket.gethostname()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        fmt = "lsr-build-owner/1"
        alive = _fake_building(tmp_path, "a.building-1", {"format": fmt, "pid": live.pid, "host": host})
        gone = _fake_building(tmp_path, "b.building-2", {"format": fmt, "pid": dead.pid, "host": host})
        elsewhere = _fake_building(tmp_path, "c.building-3", {"format": fmt, "pid": dead.pid, "host": host + "-x"})
        unknown = _fake_building(tmp_path, "d.building-4", None)
        (tmp_path / "e.partial").mkdir()
        (tmp_path / "e.partial" / "part-00000.npz").write_bytes(b"progress")
        lsr.build_index([{"id": "d", "vector": {"a": 1}}], tmp_path / "new")
    finally:
        live.kill()
        live.wait()
    assert alive.exists() and elsewhere.exists() and unknown.exists() and not gone.exists()
    assert (tmp_path / "e.partial" / "part-00000.npz").exists()
    msgs = [str(w.message) for w in recwarn]
    assert any(f"removed the stale build directory {gone}" in m and f"process {dead.pid}" in m for m in msgs), msgs
    assert not any(str(alive) in m or str(elsewhere) in m or str(unknown) in m for m in msgs), msgs


# ------------------------------------------------------------------------- unfinished encode directories
def test_unfinished_encode_is_refused_unless_allow_partial(tmp_path, capsys, splade_tiny):
    from lsr.encoders import encode_corpus, load_encoder

    corpus = write(tmp_path / "c.jsonl", "".join(json.dumps({"_id": f"d{i}", "text": f"document number {i} "
                                                             f"about {'cats' if i % 2 else 'dogs'}"}) + "\n"
                                                 for i in range(12)))
    enc = load_encoder(str(splade_tiny))

    class Stop(Exception):
        pass

    def stop(part, done):
        raise Stop

    with pytest.raises(Stop):
        encode_corpus(enc, str(corpus), str(tmp_path / "vecs"), part_size=4, on_part=stop)
    assert not (tmp_path / "vecs" / "encoder.json").exists()
    capsys.readouterr()   # the model's loading bar
    rc, _, err = run_cli(capsys, "index", tmp_path / "vecs", "-o", tmp_path / "ix")
    line = one_error(err)
    assert rc == 2 and "unfinished lsr encode: 4 documents in 1 parts" in line and "--allow-partial" in line
    assert str(corpus) in line and not (tmp_path / "ix").exists()
    with pytest.raises(InputError, match="unfinished"):
        lsr.build_index(tmp_path / "vecs", tmp_path / "ix")
    rc, _, err = run_cli(capsys, "index", tmp_path / "vecs", "-o", tmp_path / "ix", "--allow-partial")
    assert rc == 0 and "lsr: warning:" in err and "indexing only those documents" in err
    ix = lsr.Index.open(tmp_path / "ix")
    assert ix.num_documents == 4
    recorded = dict(ix.encoder)
    assert recorded.pop("runtime") is None
    assert recorded == json.loads(json.dumps(enc.describe()))
    # finished: indexed without the option, with encoder.json recorded
    encode_corpus(enc, str(corpus), str(tmp_path / "vecs"), part_size=4)
    capsys.readouterr()
    assert run_cli(capsys, "index", tmp_path / "vecs", "-o", tmp_path / "ix2")[0] == 0
    ix2 = lsr.Index.open(tmp_path / "ix2")
    assert ix2.num_documents == 12 and ix2.encoder["runtime"] is not None
    # a part of a finished encode gone missing is named
    os.unlink(tmp_path / "vecs" / "part-00001.jsonl.gz")
    rc, _, err = run_cli(capsys, "index", tmp_path / "vecs", "-o", tmp_path / "ix3")
    assert rc == 2 and "part-00001.jsonl.gz is missing" in one_error(err)


@pytest.mark.slow
def test_sigterm_during_lsr_encode_keeps_the_finished_parts(tmp_path, splade_tiny, scifact_dir):
    corpus = tmp_path / "c.jsonl"
    with open(scifact_dir / "corpus.jsonl", encoding="utf-8") as f:
        corpus.write_text("".join(line for _, line in zip(range(400), f)), encoding="utf-8")
    out = tmp_path / "vecs"
    proc = subprocess.Popen([sys.executable, "-m", "lsr", "encode", str(splade_tiny), "--corpus", str(corpus), "-o",
                             str(out), "--part-size", "4", "--batch-size", "2", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err = _sigterm_when(proc, (out / "part-00001.jsonl.gz").exists, 240, 0.02)
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()[-2000:]
    assert "lsr: terminated; the finished parts are kept" in err.decode()
    names = os.listdir(out)
    assert not [n for n in names if ".tmp-" in n] and "encoder.json" not in names
    state = json.loads((out / "encode.state").read_text())
    assert not state["complete"] and 2 <= len([n for n in names if n.startswith("part-")]) < 100
