"""Text to index in one step (`lsr index --encoder --corpus`): equal to encode -> JSONL -> index,
resumable through DIR.partial, the encoder's settings recorded for text queries, progress output."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import lsr
from lsr.cli import main
from lsr.encoders import EncoderConfig, SideConfig, load_encoder
from lsr.index.text_index import build_index_from_text, partial_dir, read_partial


def _subset(scifact_dir, path, n):
    with open(scifact_dir / "corpus.jsonl", encoding="utf-8") as f, open(path, "w", encoding="utf-8") as out:
        for _, line in zip(range(n), f):
            out.write(line)
    return path


def _queries(scifact_dir, path, n):
    with open(scifact_dir / "queries.jsonl", encoding="utf-8") as f:
        qs = [json.loads(x) for _, x in zip(range(n), f)]
    path.write_text("".join(f"{q['_id']}\t{q['text']}\n" for q in qs), encoding="utf-8")
    return path


def _same_index(a: lsr.Index, b: lsr.Index) -> None:
    assert a.terms == b.terms
    assert a.manifest["quantization"] == b.manifest["quantization"]
    assert a.manifest["counts"] == b.manifest["counts"]
    for name, arr in a.arrays.items():
        assert np.array_equal(arr, b.arrays[name]), name


@pytest.fixture(scope="module")
def splade(splade_tiny):
    return load_encoder(str(splade_tiny))


def test_one_step_equals_encode_then_index(tmp_path, splade_tiny, scifact_dir, capsys):
    """100 SciFact documents, real splade-tiny: the same vocabulary, arrays and text-query hits."""
    corpus = _subset(scifact_dir, tmp_path / "c.jsonl", 100)
    queries = _queries(scifact_dir, tmp_path / "q.tsv", 20)
    assert main(["index", "--encoder", str(splade_tiny), "--corpus", str(corpus), "-o", str(tmp_path / "one"),
                 "--threads", "1", "--no-progress"]) == 0
    assert not os.path.exists(partial_dir(tmp_path / "one"))
    assert main(["encode", str(splade_tiny), "--corpus", str(corpus), "-o", str(tmp_path / "vecs"),
                 "--threads", "1", "--no-progress"]) == 0
    assert main(["index", str(tmp_path / "vecs"), "-o", str(tmp_path / "two"), "--no-progress"]) == 0
    one, two = lsr.Index.open(tmp_path / "one"), lsr.Index.open(tmp_path / "two")
    _same_index(one, two)
    # the encoder and its runtime are recorded the same way by both paths
    assert one.encoder == two.encoder
    assert one.encoder["runtime"] == {"device": "cpu", "dtype": "float32", "threads": 1, "threads_given": True,
                                      "batch_size": 32}
    capsys.readouterr()
    for name in ("one", "two"):
        assert main(["search", "-i", str(tmp_path / name), "-q", str(queries), "--query-format", "text",
                     "-k", "10", "-o", str(tmp_path / f"{name}.run")]) == 0
    run_one = (tmp_path / "one.run").read_text().splitlines()
    assert len(run_one) == 200 and run_one == (tmp_path / "two.run").read_text().splitlines()


def test_interrupted_build_resumes_from_partial(tmp_path, splade, scifact_dir, capsys):
    corpus = _subset(scifact_dir, tmp_path / "c.jsonl", 50)
    out = tmp_path / "ix"

    def stop_after_two(part: int, done: int) -> None:
        if part == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_index_from_text(corpus, out, encoder=splade, part_size=10, on_part=stop_after_two, store_text=True)
    assert not out.exists() and not [n for n in os.listdir(tmp_path) if ".building-" in n]
    pdir = partial_dir(out)
    assert sorted(os.listdir(pdir)) == ["part-00000.npz", "part-00001.npz", "state.json"]
    state = read_partial(out)
    assert state["docs_done"] == 20 and state["parts_on_disk"] == 2 and state["complete"] is False
    # lsr info says how far it got
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "20 documents encoded in 2 part(s)" in text and "--restart" in text
    # other settings are refused, naming the difference; nothing is removed
    assert main(["index", "--encoder", str(scifact_dir.parents[2] / "models" / "splade-tiny"), "--corpus",
                 str(corpus), "-o", str(out), "--doc-max-length", "128", "--store-text", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different encoder." in err[0] and "max_length" in err[0] and "--restart" in err[0]
    with pytest.raises(lsr.LsrError, match="different store_text"):
        build_index_from_text(corpus, out, encoder=splade, part_size=10)
    with pytest.raises(lsr.LsrError, match="different chunk_docs"):
        build_index_from_text(corpus, out, encoder=splade, part_size=20, store_text=True)
    assert read_partial(out)["docs_done"] == 20
    # the same settings continue after the two parts
    ix = build_index_from_text(corpus, out, encoder=splade, part_size=10, store_text=True)
    assert ix.encode_report["resumed_from"] == 20 and ix.encode_report["docs"] == 50
    assert not os.path.exists(pdir)
    fresh = build_index_from_text(corpus, tmp_path / "fresh", encoder=splade, part_size=10, store_text=True)
    _same_index(ix, fresh)
    assert ix.doc_texts(list(range(50))) == fresh.doc_texts(list(range(50)))
    # --restart discards a partial build
    with pytest.raises(KeyboardInterrupt):
        build_index_from_text(corpus, tmp_path / "again", encoder=splade, part_size=10, on_part=stop_after_two)
    ix = build_index_from_text(corpus, tmp_path / "again", encoder=splade, part_size=10, restart=True)
    assert ix.encode_report["resumed_from"] == 0 and not os.path.exists(partial_dir(tmp_path / "again"))


def test_store_text_round_trips_every_scifact_document(tmp_path, splade_tiny, scifact_dir):
    """All 5,183 SciFact texts through the docstore (an inference-free WordPiece encoder keeps it fast)."""
    side = SideConfig(kind="tokens", model=str(splade_tiny), max_length=512)
    enc = load_encoder(EncoderConfig(name="tokens", type="tokens", doc=side, query=side))
    ix = lsr.build_index(str(scifact_dir / "corpus.jsonl"), tmp_path / "ix", encoder=enc, store_text=True)
    want = {}
    with open(scifact_dir / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            want[rec["_id"]] = " ".join(p for p in (rec["title"], rec["text"]) if p)
    assert ix.num_documents == len(want) == 5183
    ids = list(want)
    assert ix.doc_texts(ids) == [want[d] for d in ids]
    assert [ix.doc_text(ix.doc_id(i)) for i in range(0, 5183, 97)] == [ix.doc_text(i) for i in range(0, 5183, 97)]
    assert ix.doc_text(ids[-1]) == want[ids[-1]]
    with pytest.raises(lsr.InputError, match="doc id 'no-such-doc' is not in the index"):
        ix.doc_text("no-such-doc")
    with pytest.raises(lsr.InputError, match="document number 5183 is not in the index"):
        ix.doc_text(5183)
    m = ix.manifest["docstore"]
    assert m["documents"] == 5183 and set(m["files"]) == {"docstore.bin", "docstore_block_offsets.npy",
                                                          "docstore_doc_offsets.npy"}
    assert sum(e["bytes"] for e in m["files"].values()) < m["text_bytes"] / 2
    # a corrupted docstore fails the checksum on open
    with open(tmp_path / "ix" / "docstore.bin", "r+b") as f:
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(lsr.IndexFormatError, match="checksum"):
        lsr.Index.open(tmp_path / "ix")


def test_index_without_text_says_so(tmp_path):
    ix = lsr.build_index([("a", {"x": 1.0})], tmp_path / "ix")
    with pytest.raises(lsr.InputError, match="stores no document text"):
        ix.doc_text("a")


def test_progress_lines_when_stderr_is_not_a_terminal(tmp_path, splade_tiny, scifact_dir, capsys):
    from lsr.progress import Progress

    buf = io.StringIO()
    with Progress("lsr encode", 10, interval=0.0, file=buf) as p:
        p.update(4)
        p.update(6)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("lsr encode: 10/10 docs [") and "docs/s]" in lines[-1]
    corpus = _subset(scifact_dir, tmp_path / "c.jsonl", 12)
    capsys.readouterr()
    assert main(["encode", str(splade_tiny), "--corpus", str(corpus), "-o", str(tmp_path / "v")]) == 0
    err = capsys.readouterr().err
    assert "lsr encode: 12/12 docs [" in err


def test_no_progress_silences_the_libraries(tmp_path, splade_tiny, scifact_dir):
    corpus = _subset(scifact_dir, tmp_path / "c.jsonl", 5)
    r = subprocess.run([sys.executable, "-m", "lsr", "index", "--encoder", str(splade_tiny), "--corpus",
                        str(corpus), "-o", str(tmp_path / "ix"), "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lsr index: encoded 5 documents"), lines
    assert r.stdout.startswith("indexed 5 documents")


def test_encode_restores_torch_threads(splade):
    import torch

    before = torch.get_num_threads()
    enc = load_encoder(splade.config, threads=1)
    torch.set_num_threads(before)   # load_encoder's own setting, if any, is not what is checked here
    enc.encode_documents(["a short text to encode"])
    assert torch.get_num_threads() == before
    assert enc.doc_side.threads == 1


@pytest.mark.parametrize("extra, needle", [
    (["--corpus", "{tmp}/missing.jsonl"], "missing.jsonl: no such file"),
    (["--corpus", "{tmp}/dup.jsonl"], "duplicate document id '1'"),
    ([], "--encoder needs --corpus"),
])
def test_bad_one_step_input_is_one_error_line(tmp_path, splade_tiny, capsys, extra, needle):
    (tmp_path / "dup.jsonl").write_text('{"_id": "1", "text": "a"}\n{"_id": "1", "text": "b"}\n', encoding="utf-8")
    args = ["index", "--encoder", str(splade_tiny), "-o", str(tmp_path / "ix"), "--no-progress"]
    assert main(args + [a.format(tmp=tmp_path) for a in extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lsr: error: ") and needle in err[0], err
    assert not (tmp_path / "ix").exists()


@pytest.mark.parametrize("args, needle", [
    (["x.jsonl", "--store-text"], "--store-text applies to a build from text"),
    (["x.jsonl", "--threads", "2"], "--threads applies to a build from text"),
    (["x.jsonl", "--encoder", "e", "--corpus", "c"], "not both"),
    ([], "nothing to index"),
])
def test_text_options_need_an_encoder(tmp_path, capsys, args, needle):
    assert main(["index", "-o", str(tmp_path / "ix"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


@pytest.mark.slow
def test_no_progress_silences_ir_datasets_too(tmp_path, shared_dir, splade_tiny):
    """A fresh IR_DATASETS_HOME: ir_datasets builds its docstore (INFO lines and a bar) on first use."""
    home = tmp_path / "irds"
    r = subprocess.run(["bash", str(shared_dir / "tools" / "make-irds-home"), str(home)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "lsr", "index", "--encoder", str(splade_tiny), "--corpus",
                        "irds:beir/scifact", "--limit", "8", "-o", str(tmp_path / "ix"), "--no-progress"],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "IR_DATASETS_HOME": str(home)})
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines() == [ln for ln in r.stderr.strip().splitlines()
                                             if ln.startswith("lsr index: encoded 8 documents")], r.stderr
    assert lsr.Index.open(tmp_path / "ix").num_documents == 8


def test_text_queries_use_the_recorded_dtype_and_lengths(tmp_path, splade_tiny, scifact_dir):
    corpus = _subset(scifact_dir, tmp_path / "c.jsonl", 30)
    assert main(["index", "--encoder", str(splade_tiny), "--corpus", str(corpus), "-o", str(tmp_path / "ix"),
                 "--dtype", "bfloat16", "--query-max-length", "8", "--no-progress"]) == 0
    ix = lsr.Index.open(tmp_path / "ix")
    assert ix.encoder["dtype"] == "bfloat16" and ix.encoder["runtime"]["dtype"] == "bfloat16"
    assert ix.encoder["max_length"]["query"] == 8
    text = "cerebral white matter in newborn infants assessed with diffusion tensor imaging"
    s = lsr.Searcher(ix)
    hits = s.search(text, k=5)
    qenc = s._query_encoder
    assert qenc.runtime.dtype == "bfloat16" and qenc.query_side.cfg.max_length == 8
    untruncated = load_encoder(str(splade_tiny), dtype="bfloat16").encode_queries([text])[0]
    assert untruncated != qenc.encode_queries([text])[0]   # the recorded 8 tokens, not the default 256
    assert [h.doc_id for h in hits] == [h.doc_id for h in s.search(qenc.encode_queries([text])[0], k=5)]


@pytest.mark.slow
def test_sigkilled_build_resumes(tmp_path, splade_tiny, scifact_dir):
    """A real `lsr index --encoder` process killed with SIGKILL after its third part, then rerun."""
    import signal
    import time

    out = tmp_path / "ix"
    args = ["index", "--encoder", str(splade_tiny), "--corpus", str(scifact_dir / "corpus.jsonl"), "-o", str(out),
            "--limit", "240", "--part-size", "12", "--batch-size", "4", "--store-text", "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "lsr", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    try:
        while not (tmp_path / "ix.partial" / "part-00002.npz").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert not out.exists()
    done = read_partial(out)
    assert 3 <= done["parts_on_disk"] < 20 and done["docs_done"] == 12 * done["parts_on_disk"]
    assert main(args) == 0
    assert not os.path.exists(partial_dir(out))
    ix = lsr.Index.open(out)
    assert main(args[:6] + [str(tmp_path / "fresh")] + args[7:]) == 0
    fresh = lsr.Index.open(tmp_path / "fresh")
    _same_index(ix, fresh)
    assert ix.doc_texts(list(range(240))) == fresh.doc_texts(list(range(240)))


def test_thread_chooser_stays_within_the_cpus(splade):
    import torch

    from lsr.encoders.sides import ThreadChooser

    ch = ThreadChooser(every=0.0)
    first = ch.choose()
    assert 1 <= first <= torch.get_num_threads()
    sum(i * i for i in range(2_000_000))   # some CPU time of this process between two choices
    assert 1 <= ch.choose() <= ch.cap <= torch.get_num_threads()
    assert load_encoder(splade.config, threads=3).doc_side.threads == 3


def test_build_index_takes_a_preset_with_a_local_model_path(tmp_path, splade_tiny, scifact_dir, splade):
    """lsr.build_index(..., encoder="splade-tiny", model_path=DIR) (the README's API example offline) builds the
    same index as the checkpoint directory itself; a loaded Encoder with a model_path is refused."""
    corpus = _subset(scifact_dir, tmp_path / "c.jsonl", 30)
    a = lsr.build_index(corpus, tmp_path / "preset", encoder="splade-tiny", model_path=splade_tiny, threads=1)
    b = lsr.build_index(corpus, tmp_path / "dir", encoder=str(splade_tiny), threads=1)
    _same_index(a, b)
    with pytest.raises(lsr.InputError, match="model_path"):
        lsr.build_index(corpus, tmp_path / "x", encoder=splade, model_path=splade_tiny)
