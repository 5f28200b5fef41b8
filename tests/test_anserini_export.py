"""``lsr anserini export``: the JsonVectorCollection it writes, the inversion kernels behind it, and
(``peers``) Anserini indexing that export and returning lsr's own top k."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import lsr
from lsr.cli import main
from lsr.index import Index, IndexBuilder
from lsr.index.kernels.invert import doc_lengths, doc_lengths_ref, invert_range, invert_range_ref
from benchmarks.synthetic import SpladeLike


def _synthetic(path, n_docs=1500, seed=5):
    spec = SpladeLike(n_docs=n_docs, seed=seed, n_terms=3000)
    with IndexBuilder(path, vocabulary=spec.vocabulary()) as b:
        for batch in spec.batches():
            b.add_batch(batch.doc_ids, batch.indptr, batch.term_ids, batch.weights)
    return Index.open(path), spec


def _read_export(d):
    marker = json.loads((d / "lsr-export.json").read_text())
    recs = []
    for name in marker["files"]:
        with open(d / name, encoding="utf-8") as f:
            recs.extend(json.loads(line) for line in f)
    return marker, recs


def test_inversion_kernels_equal_their_references(tmp_path):
    ix, _ = _synthetic(tmp_path / "ix")
    bundle = ix.postings_arrays
    buf = np.empty(int(np.diff(ix.term_offsets).max()), np.int32)
    lengths = doc_lengths(bundle, ix.num_documents, buf)
    np.testing.assert_array_equal(lengths, doc_lengths_ref(bundle, ix.num_documents))
    for first, last in [(0, ix.num_documents), (0, 1), (700, 1100), (ix.num_documents - 3, ix.num_documents)]:
        ip = np.zeros(last - first + 1, np.int64)
        np.cumsum(lengths[first:last], out=ip[1:])
        terms = np.empty(int(ip[-1]), np.int32)
        imps = np.empty(int(ip[-1]), ix.postings_impacts.dtype)
        invert_range(bundle, first, last, ip, terms, imps, buf)
        r_ip, r_terms, r_imps = invert_range_ref(bundle, first, last)
        np.testing.assert_array_equal(ip, r_ip)
        np.testing.assert_array_equal(terms, r_terms)
        np.testing.assert_array_equal(imps, r_imps)


def test_export_holds_every_document_with_its_stored_impacts(tmp_path):
    ix, _ = _synthetic(tmp_path / "ix")
    # small ranges and files, so that several of each are used
    st = lsr.anserini.export_index(ix, tmp_path / "out", docs_per_file=400, range_postings=10_000)
    marker, recs = _read_export(tmp_path / "out")
    assert st.documents == ix.num_documents == len(recs) and st.files == 4 == len(marker["files"])
    assert st.postings == ix.num_postings == marker["postings"]
    assert marker["format"] == "lsr-anserini-json-vector" and marker["quantization"]["method"] == "as-stored"
    assert [r["id"] for r in recs] == ix.doc_ids(np.arange(ix.num_documents))
    assert all(r["contents"] == "" for r in recs)
    # the postings, term by term, as the index holds them
    by_term: dict[str, list] = {}
    for d, r in enumerate(recs):
        for term, w in r["vector"].items():
            assert isinstance(w, int) and w > 0
            by_term.setdefault(term, []).append((d, w))
    for term in ix.terms[:300]:
        docs, imps = ix.postings(term)
        assert by_term.get(term, []) == list(zip(docs.tolist(), imps.tolist()))


def test_float_index_is_quantised_on_export_by_the_recorded_scale(tmp_path):
    vecs = [("a", {"x": 0.5, "y": 2.0}), ("b", {"x": 1.25}), ("c", {"y": 0.001, "z": 0.75})]
    ix = lsr.build_index(vecs, tmp_path / "ix", lsr.IndexConfig(quantization=lsr.QuantizationConfig(method="float")))
    st = lsr.anserini.export_index(ix, tmp_path / "out")
    marker, recs = _read_export(tmp_path / "out")
    scale = 255 / 2.0
    assert st.scale == pytest.approx(scale) and marker["quantization"]["scale"] == pytest.approx(scale)
    # floor(w * scale + 0.5); y = 0.001 rounds to 0 and is left out
    assert recs == [{"id": "a", "contents": "", "vector": {"x": 64, "y": 255}},
                    {"id": "b", "contents": "", "vector": {"x": 159}},
                    {"id": "c", "contents": "", "vector": {"z": 96}}]
    assert st.postings == 4


def test_cli_export_overwrite_and_errors(tmp_path, capsys):
    ix, _ = _synthetic(tmp_path / "ix", n_docs=200)
    out = tmp_path / "out"
    assert main(["anserini", "export", "-i", str(ix.path), "-o", str(out), "--no-progress"]) == 0
    assert "wrote 200 documents" in capsys.readouterr().out
    # an existing export is replaced only with --overwrite
    assert main(["anserini", "export", "-i", str(ix.path), "-o", str(out), "--no-progress"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["anserini", "export", "-i", str(ix.path), "-o", str(out), "--no-progress", "--overwrite"]) == 0
    capsys.readouterr()
    # a directory lsr did not make is never replaced, and is left as it was
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(["anserini", "export", "-i", str(ix.path), "-o", str(foreign), "--overwrite", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lsr: error:") and err.count("\n") == 1 and "not an lsr Anserini export" in err
    assert os.listdir(foreign) == ["notes.txt"]
    # a missing index: one line, and nothing written
    assert main(["anserini", "export", "-i", str(tmp_path / "nope"), "-o", str(tmp_path / "o2")]) == 2
    assert capsys.readouterr().err.startswith("lsr: error:") and not (tmp_path / "o2").exists()
    assert sorted(os.listdir(tmp_path)) == ["ix", "mine", "out"]   # no build directories left


def test_terms_with_white_space_are_refused(tmp_path, capsys):
    ix = lsr.build_index([("a", {"new york": 1.0, "x": 2.0})], tmp_path / "ix")
    assert main(["anserini", "export", "-i", str(ix.path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "'new york'" in err and "white space" in err and not (tmp_path / "out").exists()
