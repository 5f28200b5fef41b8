"""CIFF import and export (lsr.ciff, ``lsr ciff``): the official toy file, round trips, float
quantisation, and bad files refused with one error line and nothing left behind."""

from __future__ import annotations

import ast
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.internal.decoder import _DecodeVarint

from lsr.ciff import DelimitedReader, export_index, import_index, write_delimited
from lsr.ciff import common_index_format_v1_pb2 as pb
from lsr.cli import main
from lsr.config import IndexConfig, QuantizationConfig
from lsr.errors import LsrError
from lsr.index import Index, IndexBuilder
from lsr.index.search import Searcher

TOY_NAME = "toy-complete-20200309.ciff"
# What the toy file holds, as the reference implementation's tests list it (pisa-engine/ciff,
# tests/toy.rs, test_toy_index: coll.documents, coll.sizes, coll.terms, coll.docs, coll.freqs).
TOY_DOCS = ["WSJ_1", "TREC_DOC_1", "DOC222"]
TOY_LENGTHS = [6, 4, 6]
TOY_TERMS = ["01", "03", "30", "content", "enough", "head", "simpl", "text", "veri"]
TOY_POSTINGS = {   # term -> (doc ids, tf)
    "01": ([0], [1]), "03": ([0], [1]), "30": ([0], [1]), "content": ([0], [1]), "enough": ([2], [1]),
    "head": ([0, 1, 2], [1, 1, 1]), "simpl": ([1, 2], [1, 1]), "text": ([0, 1, 2], [1, 1, 3]), "veri": ([1], [1]),
}
TOY_DESCRIPTION = ("Export of toy 3-document collection from Anserini's io.anserini.integration.TrecEndToEndTest "
                   "test case")


@pytest.fixture(scope="module")
def toy(shared_dir) -> Path:
    p = shared_dir / "data" / "ciff" / TOY_NAME
    assert p.is_file()
    return p


def read_ciff(path):
    """(header, [(term, df, cf, doc ids, tf)], [(docid, collection_docid, doclength)]) of a CIFF file."""
    with DelimitedReader(path) as r:
        h = r.read(pb.Header, "header")
        lists = []
        for i in range(h.num_postings_lists):
            pl = r.read(pb.PostingsList, f"list {i}")
            docs = np.cumsum([p.docid for p in pl.postings]).tolist()
            lists.append((pl.term, pl.df, pl.cf, docs, [p.tf for p in pl.postings]))
        recs = [r.read(pb.DocRecord, f"doc {d}") for d in range(h.num_docs)]
        assert r.at_end()
    return h, lists, [(d.docid, d.collection_docid, d.doclength) for d in recs]


def write_ciff(path, header: dict, lists, records, tail: bytes = b""):
    """A CIFF file from plain values: lists of (term, doc ids, tf[, df, cf]) (doc ids absolute, written as
    gaps), records of (docid, collection_docid, doclength)."""
    with open(path, "wb") as f:
        write_delimited(f, pb.Header(**header))
        for item in lists:
            term, docs, tf = item[:3]
            df = item[3] if len(item) > 3 else len(docs)
            cf = item[4] if len(item) > 4 else sum(tf)
            pl = pb.PostingsList(term=term, df=df, cf=cf)
            prev = 0
            for d, x in zip(docs, tf):
                pl.postings.add(docid=d - prev, tf=x)
                prev = d
            write_delimited(f, pl)
        for d, cid, n in records:
            write_delimited(f, pb.DocRecord(docid=d, collection_docid=cid, doclength=n))
        f.write(tail)


def all_postings(ix: Index) -> dict[str, tuple[list[int], list[int]]]:
    """term -> (doc ids, impacts) of the terms with postings (CIFF carries no empty postings list)."""
    out = {}
    for t in ix.terms:
        docs, imps = ix.postings(t)
        if len(docs):
            out[t] = (docs.tolist(), np.asarray(imps).tolist())
    return out


# ---------------------------------------------------------------------------------------------- toy file
def test_the_toy_file_imports_with_exactly_what_it_holds(toy, tmp_path):
    ix = import_index(toy, tmp_path / "toy")
    assert ix.num_documents == 3 and ix.num_terms == 9 and ix.num_postings == 14
    assert ix.doc_ids(range(3)) == TOY_DOCS
    assert ix.arrays["doc_lengths"].tolist() == TOY_LENGTHS
    assert ix.terms == TOY_TERMS
    assert all_postings(ix) == TOY_POSTINGS
    assert int(np.asarray(ix.postings_impacts, np.int64).sum()) == 16   # term occurrences
    assert ix.manifest["impact_dtype"] == "uint8"
    q = ix.quantization
    assert q["method"] == "identity" and q["scale"] == 1.0
    assert ix.manifest["counts"]["empty_documents"] == 0
    prov = ix.manifest["provenance"]["ciff"]
    assert prov["description"] == TOY_DESCRIPTION
    assert prov["total_terms_in_collection"] == 16 and prov["average_doclength"] == pytest.approx(16 / 3)
    assert ix.encoder is None
    # scores are sums of query weight x tf: "text" has tf 1, 1, 3 and "head" 1, 1, 1
    res = Searcher(ix).search({"text": 2, "head": 1}, k=3)
    assert [h.doc_id for h in res] == ["DOC222", "WSJ_1", "TREC_DOC_1"]
    assert [h.score for h in res] == [7, 3, 3]


def test_the_toy_file_reads_as_the_reference_lists_it(toy):
    h, lists, recs = read_ciff(toy)
    assert h.num_postings_lists == h.total_postings_lists == 9 and h.num_docs == h.total_docs == 3
    assert {t: (d, tf) for t, _, _, d, tf in lists} == TOY_POSTINGS
    assert recs == [(0, "WSJ_1", 6), (1, "TREC_DOC_1", 4), (2, "DOC222", 6)]


def test_the_toy_import_re_exports_byte_identical(toy, tmp_path):
    assert main(["ciff", "import", str(toy), "-o", str(tmp_path / "toy"), "--no-progress"]) == 0
    out = tmp_path / "toy.ciff"
    assert main(["ciff", "export", "-i", str(tmp_path / "toy"), "-o", str(out), "--no-progress"]) == 0
    assert out.read_bytes() == toy.read_bytes()
    # and message by message (what a reader sees), also with a description of our own
    export_index(tmp_path / "toy", tmp_path / "mine.ciff", description="mine")
    h0, lists0, recs0 = read_ciff(toy)
    h1, lists1, recs1 = read_ciff(tmp_path / "mine.ciff")
    assert h1.description == "mine"
    h1.description = h0.description
    assert h1 == h0 and lists1 == lists0 and recs1 == recs0


def test_the_shipped_messages_are_a_fresh_compile_of_the_shipped_proto(tmp_path):
    import grpc_tools
    from grpc_tools import protoc

    import lsr.ciff

    src = Path(lsr.ciff.__file__).parent
    proto = "common-index-format-v1.proto"
    shutil.copy(src / proto, tmp_path / proto)
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    assert protoc.main(["protoc", f"-I{tmp_path}", f"-I{include}", f"--python_out={tmp_path}",
                        str(tmp_path / proto)]) == 0
    fresh = (tmp_path / "common_index_format_v1_pb2.py").read_text()
    calls = [n for n in ast.walk(ast.parse(fresh)) if isinstance(n, ast.Call)
             and getattr(n.func, "attr", None) == "AddSerializedFile"]
    assert len(calls) == 1
    assert ast.literal_eval(calls[0].args[0]) == pb.DESCRIPTOR.serialized_pb
    assert (src / proto).read_bytes() == (Path(__file__).resolve().parents[2] / "shared" / "data" / "ciff"
                                          / proto).read_bytes() or not (Path(__file__).resolve().parents[2]
                                                                        / "shared").is_dir()


# ------------------------------------------------------------------------------------ lsr indexes out
def _build(path, docs, config=None):
    with IndexBuilder(path, config or IndexConfig()) as b:
        for i, vec in enumerate(docs):
            b.add(f"d{i}", vec)
    return b.index


FLOAT_DOCS = [{"a": 0.5, "b": 2.0}, {"a": 1.3, "c": 0.004}, {"b": 0.7, "c": 1.0}, {"a": 2.6}, {}]


def test_a_float_index_exports_quantised_with_its_scale_and_ranks_as_the_quantised_reference(tmp_path):
    ix = _build(tmp_path / "f", FLOAT_DOCS, IndexConfig(quantization=QuantizationConfig(method="float")))
    st = export_index(ix, tmp_path / "f.ciff", bits=8)
    w = {t: dict(zip(*(x.tolist() for x in ix.postings(t)))) for t in ix.terms}
    top = max(max(v.values()) for v in w.values())
    scale = 255 / float(np.float32(top))
    assert st.scale == pytest.approx(scale, rel=1e-12)
    # the hand-made reference: tf = floor(w * scale + 0.5), 0.004 * 98.08 rounds to 0 and is left out
    ref = {t: {d: math.floor(float(np.float32(x)) * st.scale + 0.5) for d, x in v.items()} for t, v in w.items()}
    ref = {t: {d: x for d, x in v.items() if x > 0} for t, v in ref.items()}
    assert st.dropped == 1 and ref["c"] == {2: 98}
    h, lists, recs = read_ciff(tmp_path / "f.ciff")
    assert f"lsr quantisation scale={st.scale!r} bits=8" in h.description
    meta = json.loads(h.description.splitlines()[1].removeprefix("lsr-metadata: "))
    assert meta["tf"] == {"method": "max", "bits": 8, "scale": st.scale, "rounding": "floor(weight * scale + 0.5)",
                          "dropped_postings": 1}
    assert {t: dict(zip(d, tf)) for t, _, _, d, tf in lists} == ref
    lengths = [sum(v.get(d, 0) for v in ref.values()) for d in range(5)]
    assert recs == [(d, f"d{d}", lengths[d]) for d in range(5)]
    assert h.total_terms_in_collection == sum(lengths) and h.average_doclength == sum(lengths) / 5
    imp = import_index(tmp_path / "f.ciff", tmp_path / "g")
    assert imp.manifest["impact_dtype"] == "uint8" and imp.quantization["method"] == "identity"
    assert imp.manifest["counts"]["empty_documents"] == 1
    q = {"a": 3, "b": 1, "c": 2}
    want = sorted(((sum(q[t] * ref[t].get(d, 0) for t in q), f"d{d}") for d in range(5)), key=lambda x: (-x[0], x[1]))
    got = Searcher(imp).search(q, k=5)
    assert [(h.score, h.doc_id) for h in got] == [x for x in want if x[0] > 0]


@pytest.mark.filterwarnings("ignore:max quantisation")   # the source index drops a posting: so be it
def test_integer_indexes_export_exactly_and_come_back_identical(tmp_path):
    docs = [{"x": 3, "y": 70000 / 1000}, {"x": 1000}, {"y": 5, "z": 1, "w": 0.5}]
    for bits in (8, 16):
        ix = _build(tmp_path / f"i{bits}", docs, IndexConfig(quantization=QuantizationConfig(method="max", bits=bits)))
        export_index(ix, tmp_path / f"i{bits}.ciff")
        back = import_index(tmp_path / f"i{bits}.ciff", tmp_path / f"j{bits}")
        assert back.manifest["impact_dtype"] == ("uint8" if bits == 8 else "uint16")
        assert all_postings(back) == all_postings(ix) and back.doc_ids(range(3)) == ix.doc_ids(range(3))
        # an index without doc_lengths exports the sum of its impacts; the import keeps them
        sums = [sum(v[1][v[0].index(d)] for v in all_postings(ix).values() if d in v[0]) for d in range(3)]
        assert back.arrays["doc_lengths"].tolist() == sums
        export_index(back, tmp_path / f"k{bits}.ciff")
        assert (tmp_path / f"k{bits}.ciff").read_bytes() == (tmp_path / f"i{bits}.ciff").read_bytes()


def test_export_refuses_an_existing_output_unless_overwrite(tmp_path, capsys):
    ix = _build(tmp_path / "ix", [{"a": 1}])
    out = tmp_path / "o.ciff"
    out.write_bytes(b"old")
    assert main(["ciff", "export", "-i", str(ix.path), "-o", str(out), "--no-progress"]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"old"
    assert main(["ciff", "export", "-i", str(ix.path), "-o", str(out), "--overwrite", "--no-progress"]) == 0
    assert read_ciff(out)[2] == [(0, "d0", 1)]
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask   # made as open() makes files, not private
    assert main(["ciff", "export", "-i", str(ix.path), "-o", str(tmp_path / "ix" / "in.ciff")]) == 2
    assert sorted(os.listdir(tmp_path)) == ["ix", "o.ciff"]


def test_term_major_input_cannot_be_mixed_with_documents(tmp_path):
    with pytest.raises(LsrError):
        with IndexBuilder(tmp_path / "ix") as b:
            b.add("d0", {"a": 1})
            b.add_postings(np.array([0]), b.term_ids(["a"]), np.array([1.0]))
    with pytest.raises(LsrError, match="ascending document order"):
        with IndexBuilder(tmp_path / "ix") as b:
            t = b.term_ids(["a"])[0]
            b.add_postings(np.array([1, 0]), np.array([t, t]), np.array([1.0, 1.0]))
            b.add_doc_ids(["x", "y"])
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------------------- bad input
GOOD_HEADER = dict(version=1, num_postings_lists=2, num_docs=2, total_postings_lists=2, total_docs=2,
                   total_terms_in_collection=5, average_doclength=2.5, description="t")
GOOD_LISTS = [("a", [0, 1], [1, 2]), ("b", [1], [2])]
GOOD_RECORDS = [(0, "D0", 2), (1, "D1", 3)]


def _h(**kw):
    return {**GOOD_HEADER, **kw}


BAD_FILES = {   # name -> (header, lists, records, tail, what the error says)
    "list out of order": (_h(), [("b", [1], [2]), ("a", [0, 1], [1, 2])], GOOD_RECORDS, b"", "out of order"),
    "term twice": (_h(), [("a", [0], [1]), ("a", [1], [2])], GOOD_RECORDS, b"", "repeats the term"),
    "doc id not increasing": (_h(), [("a", [1, 1], [1, 2]), ("b", [1], [2])], GOOD_RECORDS, b"", "ascend strictly"),
    "doc id beyond num_docs": (_h(), [("a", [0, 2], [1, 2]), ("b", [1], [2])], GOOD_RECORDS, b"", "doc id 2"),
    "df mismatch": (_h(), [("a", [0, 1], [1, 2], 3), ("b", [1], [2])], GOOD_RECORDS, b"", "df 3 but 2 postings"),
    "cf mismatch": (_h(), [("a", [0, 1], [1, 2], 2, 4), ("b", [1], [2])], GOOD_RECORDS, b"", "cf 4"),
    "tf 0": (_h(), [("a", [0, 1], [0, 2]), ("b", [1], [2])], GOOD_RECORDS, b"", "tf 0"),
    "tf too large": (_h(), [("a", [0, 1], [1, 70000]), ("b", [1], [2])], GOOD_RECORDS, b"", "above 65535"),
    "empty term": (_h(), [("", [0], [1]), ("b", [1], [2])], GOOD_RECORDS, b"", "empty term"),
    "header counts more lists": (_h(num_postings_lists=3, total_postings_lists=3), GOOD_LISTS, GOOD_RECORDS, b"",
                                 "postings list 2"),
    "header counts fewer lists": (_h(num_postings_lists=1, total_postings_lists=1), GOOD_LISTS, GOOD_RECORDS, b"",
                                  "DocRecord"),
    "header counts more docs": (_h(num_docs=3, total_docs=3), GOOD_LISTS, GOOD_RECORDS, b"", "DocRecord 2"),
    "header counts fewer docs": (_h(num_docs=1, total_docs=1), [("a", [0], [1]), ("b", [0], [2])], GOOD_RECORDS,
                                 b"", "follow after the last"),
    "more lists than the vocabulary": (_h(total_postings_lists=1), GOOD_LISTS, GOOD_RECORDS, b"",
                                       "exceeds total_postings_lists 1"),
    "num_docs != total_docs": (_h(total_docs=5), GOOD_LISTS, GOOD_RECORDS, b"", "total_docs"),
    "version": (_h(version=2), GOOD_LISTS, GOOD_RECORDS, b"", "version 2"),
    "no docs": (_h(num_docs=0, total_docs=0), GOOD_LISTS, [], b"", "num_docs is 0"),
    "docrecord docid wrong": (_h(), GOOD_LISTS, [(1, "D0", 2), (0, "D1", 3)], b"", "DocRecord 0 has docid 1"),
    "docrecord id empty": (_h(), GOOD_LISTS, [(0, "", 2), (1, "D1", 3)], b"", "collection_docid ''"),
    "docrecord id with space": (_h(), GOOD_LISTS, [(0, "D 0", 2), (1, "D1", 3)], b"", "whitespace"),
    "docrecord id twice": (_h(), GOOD_LISTS, [(0, "D0", 2), (1, "D0", 3)], b"", "duplicate doc id 'D0'"),
    "trailing bytes": (_h(), GOOD_LISTS, GOOD_RECORDS, b"\x02\x08\x05", "3 bytes follow after"),
}


@pytest.mark.parametrize("header, says", [
    (_h(total_terms_in_collection=6), "total_terms_in_collection 6"),
    (_h(average_doclength=2.0), "average_doclength 2"),
    (_h(total_terms_in_collection=0, average_doclength=0.0), "total_terms_in_collection 0"),
    (_h(total_postings_lists=7), "2 of the collection's 7 postings lists"),
])
def test_header_statistics_that_disagree_with_the_content_import_with_a_warning(header, says, tmp_path):
    """Writers fill the statistics in differently (Anserini's doclengths are Lucene's lossy norms, some
    writers leave them 0): a warning, the doclengths kept, the header's values in the manifest."""
    write_ciff(tmp_path / "s.ciff", header, GOOD_LISTS, GOOD_RECORDS)
    with pytest.warns(UserWarning, match=says):
        ix = import_index(tmp_path / "s.ciff", tmp_path / "s")
    assert ix.arrays["doc_lengths"].tolist() == [2, 3]
    assert ix.manifest["provenance"]["ciff"]["total_terms_in_collection"] == header["total_terms_in_collection"]


def test_a_gzip_compressed_file_imports_and_a_truncated_one_is_refused(toy, tmp_path, capsys):
    import gzip

    data = gzip.compress(toy.read_bytes())
    (tmp_path / "toy.ciff.gz").write_bytes(data)
    ix = import_index(tmp_path / "toy.ciff.gz", tmp_path / "toy")
    assert all_postings(ix) == TOY_POSTINGS and ix.doc_ids(range(3)) == TOY_DOCS
    (tmp_path / "out").mkdir()
    (tmp_path / "cut.ciff.gz").write_bytes(data[:len(data) // 2])
    assert "truncated" in _import_fails(tmp_path / "cut.ciff.gz", tmp_path / "out", capsys)


def _one_error_line(capsys) -> str:
    """The one ``lsr: error:`` line, last; before it at most ``lsr: warning:`` lines (a partial vocabulary)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("lsr: error: "), err
    assert all(line.startswith("lsr: warning: ") for line in err[:-1]), err
    return err[-1]


def _import_fails(src: Path, out_parent: Path, capsys) -> str:
    out = out_parent / "idx"
    assert main(["ciff", "import", str(src), "-o", str(out), "--no-progress"]) == 2
    line = _one_error_line(capsys)
    assert os.listdir(out_parent) == []   # no index, no .building-* directory
    return line


def test_the_good_file_of_the_bad_input_tests_imports(tmp_path):
    write_ciff(tmp_path / "good.ciff", GOOD_HEADER, GOOD_LISTS, GOOD_RECORDS)
    ix = import_index(tmp_path / "good.ciff", tmp_path / "good")
    assert all_postings(ix) == {"a": ([0, 1], [1, 2]), "b": ([1], [2])}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_bad_ciff_file_is_one_error_line_and_leaves_nothing(name, tmp_path, capsys):
    header, lists, records, tail, says = BAD_FILES[name]
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    src = tmp_path / "in" / "bad.ciff"
    write_ciff(src, header, lists, records, tail)
    line = _import_fails(src, tmp_path / "out", capsys)
    assert says in line, line
    with pytest.raises(LsrError):
        import_index(src, tmp_path / "out" / "api")
    assert os.listdir(tmp_path / "out") == []


def test_a_truncated_or_corrupted_toy_file_is_refused(toy, tmp_path, capsys):
    data = toy.read_bytes()
    (tmp_path / "out").mkdir()
    src = tmp_path / "bad.ciff"
    for cut in (0, 1, 50, 150, 300, 336):
        src.write_bytes(data[:cut])
        line = _import_fails(src, tmp_path / "out", capsys)
        assert "truncated" in line or "empty file" in line, (cut, line)
    # a message length that runs past the end, and bytes that are not a valid message
    _, at = _DecodeVarint(data, 0)
    src.write_bytes(b"\xff\x7f" + data[at:])
    assert "truncated" in _import_fails(src, tmp_path / "out", capsys)
    src.write_bytes(b"\xff\xff\xff\xff\x0f" + data[at:])
    assert "more than a protobuf message can hold" in _import_fails(src, tmp_path / "out", capsys)
    n, at = _DecodeVarint(data, 0)
    _, first = _DecodeVarint(data, at + n)
    bad = bytearray(data)
    bad[first] = 0x0F   # the first postings list's first field key: wire type 7 does not exist
    src.write_bytes(bytes(bad))
    assert "not a valid PostingsList message" in _import_fails(src, tmp_path / "out", capsys)
    assert _import_fails(tmp_path / "missing.ciff", tmp_path / "out", capsys).endswith("does not exist")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")   # flips in the header's statistics warn
def test_every_flipped_byte_of_the_toy_file_is_refused_or_imports_whole(toy, tmp_path, capsys):
    """A flip in the description, a doc id's letters or a low byte of the average makes another valid
    file; every other flip is one error line with nothing left behind (337 imports)."""
    data = toy.read_bytes()
    (tmp_path / "out").mkdir()
    src = tmp_path / "bad.ciff"
    refused = 0
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x55
        src.write_bytes(bytes(bad))
        rc = main(["ciff", "import", str(src), "-o", str(tmp_path / "out" / "idx"), "--no-progress"])
        if rc == 2:
            _one_error_line(capsys)
            refused += 1
            assert os.listdir(tmp_path / "out") == []
        else:
            assert rc == 0
            capsys.readouterr()
            Index.open(tmp_path / "out" / "idx")
            shutil.rmtree(tmp_path / "out" / "idx")
    assert refused > len(data) // 2


def test_an_existing_output_is_kept_unless_overwrite(toy, tmp_path, capsys):
    out = tmp_path / "idx"
    out.mkdir()
    (out / "mine.txt").write_text("x")
    assert main(["ciff", "import", str(toy), "-o", str(out), "--no-progress"]) == 2
    assert "already exists" in _one_error_line(capsys)
    assert main(["ciff", "import", str(toy), "-o", str(out), "--overwrite", "--no-progress"]) == 2
    assert "not an lsr index" in _one_error_line(capsys)
    assert os.listdir(out) == ["mine.txt"]
    (out / "mine.txt").unlink()
    assert main(["ciff", "import", str(toy), "-o", str(out), "--overwrite", "--no-progress"]) == 0
    assert Index.open(out).num_documents == 3


# ------------------------------------------------------------------------------- a real SciFact index
@pytest.mark.slow
def test_scifact_export_import_round_trip_is_identical(scifact_splade_index, scifact_dir, tmp_path, capsys):
    ix = Index.open(scifact_splade_index)
    c1 = tmp_path / "scifact.ciff"
    assert main(["ciff", "export", "-i", str(scifact_splade_index), "-o", str(c1), "--no-progress"]) == 0
    assert main(["ciff", "import", str(c1), "-o", str(tmp_path / "back"), "--no-progress"]) == 0
    back = Index.open(tmp_path / "back")
    n = ix.num_documents
    assert n == back.num_documents == 5183
    assert back.doc_ids(range(n)) == ix.doc_ids(range(n))
    nonempty = [t for t in ix.terms if ix.postings(t)[0].size]
    assert back.terms == sorted(nonempty)
    for t in nonempty:
        d0, i0 = ix.postings(t)
        d1, i1 = back.postings(t)
        np.testing.assert_array_equal(d0, d1)
        np.testing.assert_array_equal(i0, i1)
    assert back.manifest["impact_dtype"] == ix.manifest["impact_dtype"] == "uint8"
    lengths = np.zeros(n, np.int64)
    for t in nonempty:
        d, i = ix.postings(t)
        lengths[d] += i
    np.testing.assert_array_equal(back.arrays["doc_lengths"], lengths)
    # the second export equals the first, byte for byte (the description travels with the import)
    c2 = tmp_path / "again.ciff"
    export_index(back, c2)
    assert c2.read_bytes() == c1.read_bytes()
    h = read_ciff(c1)[0]
    assert h.num_docs == n and h.num_postings_lists == len(nonempty)
    assert h.total_terms_in_collection == int(lengths.sum()) and h.average_doclength == lengths.sum() / n
    # search: the encoder travels in the description, so text queries run on the import; same hits and scores
    assert back.encoder == ix.encoder
    with open(scifact_dir / "queries.jsonl", encoding="utf-8") as f:
        queries = [(q["_id"], q["text"]) for q in map(json.loads, f)][:40]
    r0 = Searcher(ix).search_batch(queries, k=20)
    r1 = Searcher(back).search_batch(queries, k=20)
    assert r0.query_ids == r1.query_ids and r0.doc_ids == r1.doc_ids
    np.testing.assert_array_equal(r0.scores, r1.scores)
    vec = {t: 1 + i % 5 for i, t in enumerate(nonempty[::97])}
    assert Searcher(ix).search(vec, k=50).doc_ids == Searcher(back).search(vec, k=50).doc_ids


def test_the_cli_runs_as_a_module(toy, tmp_path):
    r = subprocess.run([sys.executable, "-m", "lsr", "ciff", "import", str(toy), "-o", str(tmp_path / "t"),
                        "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "imported 3 documents, 9 terms, 14 postings" in r.stdout
