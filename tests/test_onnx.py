"""ONNX export and the onnxruntime side (lsr.encoders.onnx, ``lsr onnx export``), on the shared splade-tiny
and real SciFact text: outputs equal torch's within 1e-5, the export directory loads as an encoder, the
CLI's errors are one line, and a searcher answers text queries through the exported query encoder."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from encoders_helpers import SCIFACT, SPLADE_TINY, scifact_docs, scifact_queries

TOL = 1e-5


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    from lsr.encoders.onnx import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "splade-tiny-onnx"
    rep = export_onnx("splade-tiny", out, model_path=SPLADE_TINY)
    assert rep.max_abs_diff <= TOL
    return out


@pytest.fixture(scope="module")
def torch_encoder():
    from lsr.encoders import load_encoder

    return load_encoder("splade-tiny", model_path=SPLADE_TINY, threads=1)


def _dense(batch, n_vocab: int) -> np.ndarray:
    out = np.zeros((len(batch), n_vocab), dtype=np.float64)
    for i in range(len(batch)):
        a, b = batch.indptr[i], batch.indptr[i + 1]
        out[i, batch.ids[a:b]] = batch.weights[a:b]
    return out


def _scifact_query_texts() -> list[str]:
    test = {line.split("\t")[0] for line in (SCIFACT / "qrels" / "test.tsv").read_text().splitlines()[1:]}
    return [t for i, t in scifact_queries(2000) if i in test]


def test_export_directory_describes_itself(export_dir):
    from lsr.encoders.onnx import MARKER, _sha256

    marker = json.loads((export_dir / MARKER).read_text())
    assert marker["format"] == "lsr-onnx/1" and marker["opset"] == 17
    assert marker["sides"]["doc"]["file"] == marker["sides"]["query"]["file"] == "model.onnx"
    assert marker["sides"]["query"]["config"]["max_length"] == 64
    assert marker["sides"]["doc"]["config"]["max_length"] == 256
    assert marker["sides"]["doc"]["source"]["model"] == str(SPLADE_TINY)
    info = marker["files"]["model.onnx"]
    assert info["sha256"] == _sha256(str(export_dir / "model.onnx"))
    assert info["vocab_size"] == 30522 and info["inputs"] == ["input_ids", "attention_mask"]
    assert "tokenizer.json" in marker["tokenizer_files"]
    assert sorted(os.listdir(export_dir)) == sorted([MARKER, *marker["all_files"]])
    # the graph has dynamic batch and sequence axes
    import onnx

    g = onnx.load(str(export_dir / "model.onnx")).graph
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in g.input]
    assert dims == [["batch", "sequence"], ["batch", "sequence"]]


def test_onnx_side_equals_torch_on_scifact_queries(export_dir, torch_encoder):
    from lsr.encoders import load_encoder
    from lsr.encoders.onnx import OnnxSide

    enc = load_encoder(export_dir, threads=1)
    assert isinstance(enc.query_side, OnnxSide)
    assert enc.query_side.tokenizer_hash == torch_encoder.query_side.tokenizer_hash
    texts = _scifact_query_texts()
    assert len(texts) == 300
    V = len(enc.query_side.vocab)
    # batches of 64 length-sorted queries: padded rows
    got = enc.query_side.encode_sparse(texts, batch_size=64)
    want = torch_encoder.query_side.encode_sparse(texts, batch_size=64)
    assert np.abs(_dense(got, V) - _dense(want, V)).max() <= TOL
    # one query at a time (the single-text path, no padding)
    for t in texts[:40]:
        a = enc.encode_queries([t])[0]
        b = torch_encoder.encode_queries([t])[0]
        assert max(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b)) <= TOL


def test_onnx_side_equals_torch_on_scifact_documents_with_truncation(export_dir, torch_encoder):
    from lsr.encoders import load_encoder

    enc = load_encoder(export_dir, threads=1)
    texts = [t for _, t in scifact_docs(24)]
    got = enc.encode_documents_sparse(texts, batch_size=8)
    assert enc.last_doc_stats.truncated > 0          # SciFact abstracts beyond 256 tokens are cut
    want = torch_encoder.encode_documents_sparse(texts, batch_size=8)
    assert torch_encoder.last_doc_stats.truncated == enc.last_doc_stats.truncated
    V = len(enc.doc_side.vocab)
    assert np.abs(_dense(got, V) - _dense(want, V)).max() <= TOL
    # an empty text gives {} and does not reach the graph
    assert enc.encode_documents(["", texts[0]])[0] == {}


def test_onnx_graph_output_equals_torch_pooling_on_a_padded_batch(export_dir, torch_encoder):
    import torch

    from lsr.encoders.heads import pool_logits
    from lsr.encoders.onnx import _session

    side = torch_encoder.doc_side
    texts = [t for _, t in scifact_docs(5)] + [t for t in _scifact_query_texts()[:3]]
    enc = side.text.encode(texts)
    L = max(len(x) for x in enc.ids)
    ids = np.full((len(texts), L), side.text.pad_id, dtype=np.int64)
    mask = np.zeros_like(ids)
    for r, x in enumerate(enc.ids):
        ids[r, :len(x)] = x
        mask[r, :len(x)] = 1
    assert mask.sum(1).min() < L                    # some rows are padded
    got = _session(str(export_dir / "model.onnx"), 1).run(["weights"], {"input_ids": ids, "attention_mask": mask})[0]
    with torch.inference_mode():
        logits = side.parts.model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits
        want = pool_logits(logits, torch.from_numpy(mask).unsqueeze(-1) > 0, "max").numpy()
    assert got.shape == (len(texts), 30522)
    assert np.abs(got - want).max() <= TOL


@pytest.mark.slow
@pytest.mark.parametrize("pooling,activation", [("sum", "relu"), ("max", "log1p_relu")])
def test_sum_pooling_and_the_log1p_relu_variant(tmp_path, pooling, activation):
    from lsr.encoders import EncoderConfig, SideConfig, load_encoder
    from lsr.encoders.onnx import export_onnx

    side = SideConfig(kind="splade", model=str(SPLADE_TINY), max_length=128, pooling=pooling, activation=activation)
    cfg = EncoderConfig(name="tiny-variant", type="splade", doc=side, query=side)
    export_onnx(cfg, tmp_path / "x")
    texts = _scifact_query_texts()[:32] + [t for _, t in scifact_docs(4)]
    a = load_encoder(tmp_path / "x", threads=1)
    b = load_encoder(cfg, threads=1)
    assert a.config.doc.pooling == pooling and a.config.doc.activation == activation
    got, want = a.encode_documents_sparse(texts), b.encode_documents_sparse(texts)
    assert np.abs(_dense(got, 30522) - _dense(want, 30522)).max() <= TOL * 10   # sums of up to 128 terms


def test_inference_free_export_has_no_query_graph(tmp_path, torch_encoder):
    from lsr.encoders import load_encoder
    from lsr.encoders.onnx import OnnxSide, export_onnx

    rep = export_onnx("splade-tiny-inference-free", tmp_path / "if", model_path=SPLADE_TINY)
    assert rep.graphs == {"doc": "model.onnx", "query": None}
    enc = load_encoder(tmp_path / "if", threads=1)
    assert isinstance(enc.doc_side, OnnxSide) and enc.config.query.kind == "tokens"
    q = _scifact_query_texts()[0]
    ref = load_encoder("splade-tiny-inference-free", model_path=SPLADE_TINY).encode_queries([q])[0]
    assert enc.encode_queries([q])[0] == ref


def test_a_changed_graph_is_refused(tmp_path, export_dir):
    from lsr.encoders import IncompatibleModelError, load_encoder

    copy = tmp_path / "copy"
    shutil.copytree(export_dir, copy)
    with open(copy / "model.onnx", "r+b") as f:
        f.seek(-4, os.SEEK_END)
        f.write(b"\0\0\0\0")
    with pytest.raises(IncompatibleModelError, match="changed since it was exported"):
        load_encoder(copy).describe()


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lsr: error: "), err
    return err[0]


def test_cli_export_overwrite_and_errors(tmp_path, capsys):
    from lsr.cli import main

    out = tmp_path / "exp"
    args = ["onnx", "export", "splade-tiny", "--model-path", str(SPLADE_TINY), "-o", str(out), "--no-progress"]
    assert main(args) == 0
    assert "max |difference|" in capsys.readouterr().out
    assert main(args) == 2
    assert "already exists" in _one_error_line(capsys)
    assert main(args + ["--overwrite"]) == 0
    capsys.readouterr()
    # --overwrite replaces only an earlier export
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["onnx", "export", "splade-tiny", "--model-path", str(SPLADE_TINY), "-o", str(other),
                 "--overwrite"]) == 2
    assert "not an lsr ONNX export" in _one_error_line(capsys)
    assert (other / "notes.txt").read_text() == "mine"
    (out / "extra.bin").write_bytes(b"x")
    assert main(args + ["--overwrite"]) == 2
    assert "extra.bin" in _one_error_line(capsys)
    # bad inputs: one line each, exit 2, nothing left behind
    for bad, words in (
        (["onnx", "export", str(tmp_path / "missing"), "-o", str(tmp_path / "o1")], "no such directory"),
        (["onnx", "export", "no-such-encoder", "-o", str(tmp_path / "o2")], "unknown encoder"),
        (["onnx", "export", "splade-tiny", "--model-path", str(SPLADE_TINY), "-o", str(tmp_path / "o3"),
          "--opset", "99"], "opset"),
        (["onnx", "export", "unicoil-msmarco-passage", "-o", str(tmp_path / "o4")], "supports splade"),
        (["onnx", "export", "splade-tiny", "--model-path", str(SPLADE_TINY), "-o", str(SPLADE_TINY),
          "--overwrite"], "is the input"),
    ):
        assert main(bad) == 2, bad
        line = _one_error_line(capsys)
        assert words in line, line
    assert main(["onnx", "export", str(out), "-o", str(tmp_path / "o5")]) == 2
    assert "already runs an ONNX export" in _one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp", "other"]


def test_cli_export_of_an_encoder_without_a_model(tmp_path, capsys):
    from lsr.cli import main

    preset = tmp_path / "tokens.yaml"
    preset.write_text(f"name: t\nboth:\n  kind: tokens\n  model: {SPLADE_TINY}\n")
    assert main(["onnx", "export", str(preset), "-o", str(tmp_path / "o")]) == 2
    assert "nothing to export" in _one_error_line(capsys)


@pytest.mark.slow
def test_searcher_answers_text_queries_through_the_onnx_query_encoder(tmp_path, export_dir, torch_encoder, capsys):
    import lsr
    from lsr.cli import main
    from lsr.encoders.onnx import OnnxSide

    corpus = tmp_path / "corpus.jsonl"
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as f, open(corpus, "w", encoding="utf-8") as out:
        for _, line in zip(range(400), f):
            out.write(line)
    # documents by torch, queries by the export (recorded in the index)
    assert main(["index", "--encoder", "splade-tiny", "--model-path", str(SPLADE_TINY), "--query-encoder",
                 str(export_dir), "--corpus", str(corpus), "-o", str(tmp_path / "ix"), "--threads", "1",
                 "--no-progress"]) == 0
    ix = lsr.Index.open(tmp_path / "ix")
    assert ix.encoder["query"]["backend"] == "onnxruntime" and ix.encoder["doc"].get("backend") is None
    searcher = lsr.Searcher(ix, k=10)
    scale = searcher.config.query_scale
    texts = _scifact_query_texts()
    onnx_side = None
    boundary = 0
    for n, text in enumerate(texts):
        got = searcher.search(text, query_id=str(n))
        onnx_side = onnx_side or searcher._query_encoder.query_side
        want = searcher.search(torch_encoder.encode_queries([text])[0], query_id=str(n))
        assert [h.doc_id for h in got] == [h.doc_id for h in want], text
        # scores are equal unless a query weight sits on a rounding boundary of the query scale (the two
        # weights differ by < 1e-5 but round to neighbouring integers)
        a, b = onnx_side.encode([text])[0], torch_encoder.encode_queries([text])[0]
        if any(int(a.get(t, 0.0) * scale + 0.5) != int(b.get(t, 0.0) * scale + 0.5) for t in set(a) | set(b)):
            boundary += 1
        else:
            assert [h.score for h in got] == [h.score for h in want], text
    assert isinstance(onnx_side, OnnxSide)
    assert boundary <= 3
    # and the CLI's text queries
    queries = tmp_path / "q.tsv"
    queries.write_text("".join(f"{i}\t{t}\n" for i, t in enumerate(texts[:20])), encoding="utf-8")
    capsys.readouterr()
    assert main(["search", "-i", str(tmp_path / "ix"), "-q", str(queries), "--query-format", "text", "-k", "10",
                 "-o", str(tmp_path / "run")]) == 0
    lines = (tmp_path / "run").read_text().splitlines()
    ref = lsr.Results.concat(searcher.search(torch_encoder.encode_queries([t])[0], query_id=str(i))
                             for i, t in enumerate(texts[:20]))
    assert [x.split()[:3] for x in lines] == [[h.query_id, "Q0", h.doc_id] for h in ref]


@pytest.mark.slow
def test_searcher_query_encoder_replaces_the_recorded_one(tmp_path, export_dir, torch_encoder, capsys):
    """An index built with torch searched through its model's ONNX export (Searcher(query_encoder=...)
    and ``lsr search --query-encoder``): the same hits as the recorded torch encoder; an export of other
    weights or another tokenizer is refused."""
    import lsr
    from lsr.cli import main
    from lsr.encoders.errors import IncompatibleModelError
    from lsr.encoders.onnx import OnnxSide
    from lsr.index.search import _own_query_encoder

    corpus = tmp_path / "corpus.jsonl"
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as f, open(corpus, "w", encoding="utf-8") as out:
        for _, line in zip(range(300), f):
            out.write(line)
    assert main(["index", "--encoder", "splade-tiny", "--model-path", str(SPLADE_TINY), "--corpus", str(corpus),
                 "-o", str(tmp_path / "ix"), "--threads", "1", "--no-progress"]) == 0
    ix = lsr.Index.open(tmp_path / "ix")
    assert ix.encoder["query"].get("backend") is None   # torch recorded
    torch_s = lsr.Searcher(ix, k=10)
    onnx_s = lsr.Searcher(ix, k=10, query_encoder=str(export_dir))
    assert isinstance(onnx_s._query_encoder.query_side, OnnxSide)
    texts = _scifact_query_texts()[:30]
    same = sum([h.doc_id for h in onnx_s.search(t)] == [h.doc_id for h in torch_s.search(t)] for t in texts)
    assert same >= len(texts) - 1   # a weight on a rounding boundary of the query scale may swap a tie
    queries = tmp_path / "q.tsv"
    queries.write_text("".join(f"{i}\t{t}\n" for i, t in enumerate(texts)), encoding="utf-8")
    capsys.readouterr()
    assert main(["search", "-i", str(tmp_path / "ix"), "-q", str(queries), "--query-format", "text", "-k", "10",
                 "--query-encoder", str(export_dir), "-o", str(tmp_path / "run")]) == 0
    want = onnx_s.search_batch([(str(i), t) for i, t in enumerate(texts)])
    assert [x.split()[:3] for x in (tmp_path / "run").read_text().splitlines()] == \
        [[h.query_id, "Q0", h.doc_id] for h in want]
    # the checks, against the index's real record with one field changed
    rec = json.loads(json.dumps(ix.encoder))
    rec["query"]["sha256"] = "0" * 64
    with pytest.raises(IncompatibleModelError, match="weights"):
        _own_query_encoder(str(export_dir), rec)
    rec = json.loads(json.dumps(ix.encoder))
    rec["query"]["tokenizer_hash"] = "another"
    with pytest.raises(IncompatibleModelError, match="tokenizer"):
        _own_query_encoder(str(export_dir), rec)
    assert _own_query_encoder(torch_encoder, rec) is torch_encoder   # a loaded encoder is the caller's choice
    capsys.readouterr()
    assert main(["search", "-i", str(tmp_path / "ix"), "-q", str(queries), "--query-format", "text",
                 "--query-encoder", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lsr: error:"), err


def test_single_text_tokenization_equals_the_batch_path(torch_encoder):
    """One text is tokenised with ``Tokenizer.encode`` (the single-query fast path), a list with
    ``encode_batch``: the same ids and truncation flags, with and without special tokens."""
    tok = torch_encoder.query_side.text
    texts = _scifact_query_texts() + [t for _, t in scifact_docs(30)]     # documents: truncated at 64
    for special in (True, False):
        batch = tok.encode(texts, add_special_tokens=special)
        assert any(batch.truncated)
        for i, t in enumerate(texts):
            one = tok.encode([t], add_special_tokens=special)
            assert one.ids == [batch.ids[i]] and one.truncated == [batch.truncated[i]]

