"""``lsr encode``: inputs (JSONL, TSV, ir_datasets), the vector collection directory, resuming, errors."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from encoders_helpers import (  # noqa: F401  (fixtures: heads_dir, minilm, splade_tiny)
    DL19,
    REPO,
    SCIFACT,
    SHARED,
    SPLADE_TINY,
    assert_vectors_close,
    heads_dir,
    minilm,
    run_lsr,
    scifact_docs,
    splade_tiny,
)
from lsr.encoders import ModelLoadError, encode_corpus, load_encoder

from lsr.cli import build_parser, main
from lsr.io import iter_vectors, read_encoder_info, read_queries

PRESET = "splade-tiny"   # the shipped preset (hub id rasyosef/splade-tiny), on the local copy in ../shared
MODEL_ARGS = ["--model-path", str(SPLADE_TINY)]


@pytest.fixture(scope="module")
def enc():
    return load_encoder(PRESET, model_path=SPLADE_TINY)


@pytest.fixture()
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.jsonl"
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as src, open(path, "w", encoding="utf-8") as out:
        for i, line in enumerate(src):
            if i == 23:
                break
            out.write(line)
    return path


def encode_args(*extra: str) -> list[str]:
    return ["encode", PRESET, *MODEL_ARGS, "--no-progress", *extra]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("lsr: error: ")
    return err[0]


def test_help_describes_every_option():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    enc_parser = sub.choices["encode"]
    text = enc_parser.format_help()
    for action in enc_parser._actions:
        if action.dest == "help":
            continue
        assert action.help and len(action.help) > 10, action.dest
        for opt in action.option_strings:
            assert opt in text
    for needle in ("irds:", "JSONL", "TSV", "encoder.json", "resum"):
        assert needle in text


def test_list(capsys):
    assert main(["encode", "--list"]) == 0
    names = capsys.readouterr().out.split()
    assert "splade-v3" in names and "deeper-impact" in names


def test_encode_jsonl_corpus_and_queries(tmp_path, corpus, enc, capsys):
    out = tmp_path / "vecs"
    qout = tmp_path / "q.jsonl"
    rc = main(encode_args("--corpus", str(corpus), "--output", str(out), "--part-size", "8", "--batch-size", "5",
                          "--queries", str(SCIFACT / "queries.jsonl"), "--queries-output", str(qout)))
    assert rc == 0
    err = capsys.readouterr().err
    assert "23 documents in 3 parts" in err and "1109 queries" in err
    assert sorted(os.listdir(out)) == ["encode.state", "encoder.json", "part-00000.jsonl.gz",
                                       "part-00001.jsonl.gz", "part-00002.jsonl.gz"]
    docs = scifact_docs(23)
    got = list(iter_vectors(str(out)))
    assert [d for d, _ in got] == [d for d, _ in docs]
    assert_vectors_close([v for _, v in got], enc.encode_documents([t for _, t in docs]))
    info = read_encoder_info(str(out))
    runtime = info.pop("runtime")
    assert info == json.loads(json.dumps(enc.describe()))
    assert runtime["batch_size"] == 5 and runtime["device"] == "cpu" and runtime["threads"] >= 1
    with gzip.open(out / "part-00000.jsonl.gz", "rt", encoding="utf-8") as f:
        assert json.loads(f.readline())["contents"] == ""
    queries = read_queries(qout)
    assert len(queries) == 1109 and all(q.vector is not None for q in queries)
    assert_vectors_close([queries[0].vector], enc.encode_queries([json.loads(
        (SCIFACT / "queries.jsonl").read_text(encoding="utf-8").splitlines()[0])["text"]]))
    # running it again: nothing to do
    assert main(encode_args("--corpus", str(corpus), "--output", str(out), "--part-size", "8")) == 0
    assert "already complete" in capsys.readouterr().err
    # a different encoder setting is refused, --overwrite starts again
    assert main(encode_args("--corpus", str(corpus), "--output", str(out), "--part-size", "8",
                            "--doc-max-length", "128")) == 2
    assert "different encoder" in one_error_line(capsys)
    assert main(encode_args("--corpus", str(corpus), "--output", str(out), "--part-size", "8",
                            "--doc-max-length", "128", "--doc-top-k", "20", "--overwrite")) == 0
    assert all(len(v) <= 20 for _, v in iter_vectors(str(out)))
    assert read_encoder_info(str(out))["max_length"]["doc"] == 128


def test_tsv_corpus_gz_query_output_and_empty_text(tmp_path, enc, capsys):
    lines = (DL19 / "collection.tsv").read_text(encoding="utf-8").splitlines()[:9]
    tsv = tmp_path / "c.tsv"
    tsv.write_text("\n".join(lines + ["empty1\t", "", "empty2\t   "]) + "\n", encoding="utf-8")
    out = tmp_path / "v"
    qout = tmp_path / "q.jsonl.gz"
    assert main(encode_args("--corpus", str(tsv), "-o", str(out), "--queries", str(DL19 / "queries.tsv"),
                            "--queries-output", str(qout), "--query-top-k", "5")) == 0
    assert "empty 2" in capsys.readouterr().err
    got = dict(iter_vectors(str(out)))
    assert list(got)[:9] == [ln.split("\t")[0] for ln in lines]
    assert got["empty1"] == {} and got["empty2"] == {}
    texts = [ln.split("\t", 1)[1] for ln in lines]
    assert_vectors_close([got[ln.split("\t")[0]] for ln in lines], enc.encode_documents(texts))
    qs = read_queries(qout)
    assert len(qs) == 43 and all(0 < len(q.vector) <= 5 for q in qs)


def test_expansion_field_with_a_unicoil_preset(tmp_path, minilm, heads_dir, capsys):
    preset = tmp_path / "unicoil-minilm.yaml"
    preset.write_text(f"type: unicoil\nboth:\n  kind: unicoil\n  model: {minilm}\n"
                      f"  head_file: {heads_dir / 'unicoil.safetensors'}\n  max_length: 64\n", encoding="utf-8")
    recs = [{"_id": "a", "title": "Cats", "text": "the cat sat on the mat", "d2q": "where do cats sit"},
            {"_id": "b", "text": "proteins fold", "d2q": ["how do proteins fold", "protein folding"]},
            {"_id": "c", "text": "no expansion here"}]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    out = tmp_path / "v"
    assert main(["encode", str(preset), "--corpus", str(corpus), "-o", str(out), "--expansion-field", "d2q",
                 "--no-progress"]) == 0
    got = dict(iter_vectors(str(out)))
    e = load_encoder(str(preset))
    want = e.encode_documents(["Cats the cat sat on the mat", "proteins fold", "no expansion here"],
                              expansions=["where do cats sit", "how do proteins fold\nprotein folding", None])
    assert_vectors_close([got["a"], got["b"], got["c"]], want)
    assert "where" in got["a"] and read_encoder_info(str(out))["type"] == "unicoil"


def test_resume_after_interrupt_loses_nothing_and_duplicates_nothing(tmp_path, corpus, enc):
    out = tmp_path / "resumed"

    def stop_after_two(part: int, done: int) -> None:
        if part == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        encode_corpus(enc, str(corpus), str(out), part_size=5, on_part=stop_after_two)
    assert sorted(n for n in os.listdir(out) if n.startswith("part-")) == ["part-00000.jsonl.gz",
                                                                         "part-00001.jsonl.gz"]
    assert not (out / "encoder.json").exists()
    rep = encode_corpus(enc, str(corpus), str(out), part_size=5)
    assert (rep.resumed_from, rep.encoded, rep.docs, rep.parts, rep.complete) == (10, 13, 23, 5, True)
    fresh = tmp_path / "fresh"
    encode_corpus(enc, str(corpus), str(fresh), part_size=5)
    a, b = list(iter_vectors(str(out))), list(iter_vectors(str(fresh)))
    assert [d for d, _ in a] == [d for d, _ in b] and len({d for d, _ in a}) == 23
    assert_vectors_close([v for _, v in a], [v for _, v in b])


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path, enc):
    """A real encode process killed with SIGKILL mid-way, then resumed."""
    out = tmp_path / "killed"
    args = ["encode", PRESET, *MODEL_ARGS, "--corpus", str(SCIFACT / "corpus.jsonl"), "-o", str(out), "--limit", "240",
            "--part-size", "12", "--batch-size", "4", "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "lsr", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    try:
        while not (out / "part-00002.jsonl.gz").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    state = json.loads((out / "encode.state").read_text(encoding="utf-8"))
    assert state["complete"] is False
    done = sorted(n for n in os.listdir(out) if n.startswith("part-") and n.endswith(".jsonl.gz"))
    assert 3 <= len(done) < 20
    assert main(args) == 0
    got = list(iter_vectors(str(out)))
    docs = scifact_docs(240)
    assert [d for d, _ in got] == [d for d, _ in docs]
    sample = list(range(0, 240, 17))
    assert_vectors_close([got[i][1] for i in sample], enc.encode_documents([docs[i][1] for i in sample]))
    assert not [n for n in os.listdir(out) if ".tmp-" in n]


@pytest.mark.parametrize("content, needle", [
    (b'{"_id": "1", "text": "ok"}\n{"_id": "2", "text": "caf\xe9"}\n', "corpus.jsonl:2: not valid UTF-8"),
    (b'{"_id": "1", "text": "a"}\n{"_id": "1", "text": "b"}\n', "duplicate document id '1'"),
    (b'{"_id": "a b", "text": "a"}\n', "contains whitespace"),
    (b'{"_id": "1", "text": "a"}\n{"_id": "2", "text": \n', "corpus.jsonl:2: malformed JSON"),
    (b'{"text": "no id"}\n', "no id"),
    (b'{"_id": "1", "text": 5}\n', "must be a string"),
    (b'{"_id": "1", "body": "x"}\n', "no text"),
])
def test_bad_corpus_lines_are_one_line_errors(tmp_path, capsys, content, needle):
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(content)
    assert main(encode_args("--corpus", str(path), "-o", str(tmp_path / "o"))) == 2
    assert needle in one_error_line(capsys)


@pytest.mark.parametrize("argv, needle", [
    (["encode", "no-such-encoder", "--queries", "q.tsv", "--queries-output", "o.jsonl"], "unknown encoder"),
    (encode_args("--corpus", "c.jsonl"), "--corpus and --output go together"),
    (encode_args(), "nothing to encode"),
    (encode_args("--corpus", "/nonexistent/c.jsonl", "-o", "x"), "no such file"),
    (encode_args("--corpus", "irds:", "-o", "x"), "irds: needs a dataset id"),
    (["encode", PRESET, *MODEL_ARGS, "--queries", "q.tsv", "--queries-output", "o.jsonl", "--dtype", "float16"],
     "float16 needs a GPU"),
])
def test_usage_errors(tmp_path, capsys, argv, needle, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert needle in one_error_line(capsys)


def test_d2q_and_query_encoder_options_build_configs():
    from lsr.commands.encode import build_config
    from lsr.errors import InputError

    parser = build_parser()
    cfg = build_config(parser.parse_args(["encode", "deeper-impact", "--d2q-model", "lm-dir", "--d2q-num-queries",
                                          "3", "--d2q-top-p", "0.9", "--doc-max-length", "300"]))
    assert cfg.doc.expansion.model == "lm-dir" and cfg.doc.expansion.num_queries == 3
    assert cfg.doc.expansion.top_p == 0.9 and cfg.doc.max_length == 300
    assert build_config(parser.parse_args(["encode", "deeper-impact", "--no-d2q"])).doc.expansion is None
    cfg = build_config(parser.parse_args(["encode", "splade-v3", "--query-encoder", "splade-v3-doc",
                                          "--query-min-weight", "0.5"]))
    assert cfg.query.kind == "tokens" and cfg.query.min_weight == 0.5 and cfg.doc.model == "naver/splade-v3"
    with pytest.raises(InputError, match="DeepImpact"):
        build_config(parser.parse_args(["encode", "splade-v3", "--d2q-num-queries", "2"]))
    with pytest.raises(InputError, match="--d2q-model"):
        build_config(parser.parse_args(["encode", "deeper-impact", "--d2q-num-queries", "2"]))


@pytest.mark.slow
def test_irds_sources_offline(tmp_path, enc):
    """irds: corpus and queries, with an IR_DATASETS_HOME filled from shared/ (ir_datasets reads it at import,
    so the encode runs in a subprocess)."""
    home = tmp_path / "irds"
    r = subprocess.run(["bash", str(SHARED / "tools" / "make-irds-home"), str(home)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out, qout = tmp_path / "v", tmp_path / "q.jsonl"
    r = run_lsr(encode_args("--corpus", "irds:beir/scifact", "--limit", "15", "-o", str(out),
                            "--queries", "irds:beir/scifact/test", "--queries-output", str(qout)),
                env={"IR_DATASETS_HOME": str(home)})
    assert r.returncode == 0, r.stderr[-3000:]
    got = list(iter_vectors(str(out)))
    docs = scifact_docs(15)
    assert [d for d, _ in got] == [d for d, _ in docs]
    assert_vectors_close([v for _, v in got], enc.encode_documents([t for _, t in docs]))
    assert len(read_queries(qout)) == 300
    r = run_lsr(encode_args("--corpus", "irds:no/such-dataset", "-o", str(tmp_path / "x")),
                env={"IR_DATASETS_HOME": str(home)})
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("lsr: error: ")
    assert "unknown ir_datasets id" in r.stderr


def test_hub_id_in_offline_mode_is_one_line_error(tmp_path):
    q = tmp_path / "q.tsv"
    q.write_text("1\twhat is splade\n", encoding="utf-8")
    r = run_lsr(["encode", "naver/splade-v3", "--queries", str(q), "--queries-output", str(tmp_path / "o.jsonl")],
                env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("lsr: error: cannot load"), lines
    assert "naver/splade-v3" in lines[0] and "Traceback" not in r.stderr


@pytest.mark.slow
def test_hub_id_without_network_is_a_model_load_error():
    """A hub id with no route to the hub (as on CI): a clear ModelLoadError at once (no minute of retries)."""
    e = load_encoder("naver/splade-v3", revision="main")
    with pytest.raises(ModelLoadError) as err:
        e.encode_queries(["what is splade"])
    msg = str(err.value)
    assert "naver/splade-v3@main" in msg and "hub" in msg and "\n" not in msg
