"""The docstore (IndexBuilder(store_text=True), Index.doc_text): order, reorder, errors."""

from __future__ import annotations

import numpy as np
import pytest

import lsr
from lsr.index import IndexBuilder


def _texts(n):
    # varied lengths, non-ASCII, empty texts, texts crossing block boundaries (16 documents a block)
    return [("" if i % 11 == 0 else f"doc {i} naïve café 北京 " * (i % 7 + 1)) for i in range(n)]


@pytest.mark.parametrize("reorder", ["none", "bp"])
def test_texts_follow_their_documents(tmp_path, reorder):
    n = 70
    texts = _texts(n)
    ids = [f"d{i}" for i in range(n)]
    with IndexBuilder(tmp_path / "ix", lsr.IndexConfig(reorder=reorder), store_text=True) as b:
        t = b.term_ids([f"t{i % 5}" for i in range(40)])
        b.add_batch(ids[:40], np.arange(41), t, np.arange(1, 41, dtype=np.float32), texts=texts[:40])
        for i in range(40, n):
            b.add(ids[i], {f"t{i % 3}": 1.0, f"u{i % 4}": 2.0}, text=texts[i])
    ix = lsr.Index.open(tmp_path / "ix")
    assert ix.has_text and ix.manifest["reorder"]["method"] == reorder
    assert ix.doc_texts(ids) == texts
    assert [ix.doc_text(i) for i in range(n)] == [texts[ids.index(ix.doc_id(i))] for i in range(n)]
    assert ix.doc_texts([]) == []
    with pytest.raises(lsr.InputError, match="external id"):
        ix.doc_text(1.5)


def test_store_text_needs_a_text_for_every_document(tmp_path):
    with pytest.raises(lsr.InputError, match="1 document"):
        with IndexBuilder(tmp_path / "ix", store_text=True) as b:
            b.add("a", {"x": 1.0})
    assert not (tmp_path / "ix").exists()
    with pytest.raises(lsr.InputError, match="stores no text"):
        with IndexBuilder(tmp_path / "iy") as b:
            b.add("a", {"x": 1.0}, text="hello")


def test_truncated_docstore_is_refused(tmp_path):
    ix = lsr.build_index([("a", {"x": 1.0})], tmp_path / "ix")
    assert not ix.has_text
    with IndexBuilder(tmp_path / "iz", store_text=True) as b:
        b.add("a", {"x": 1.0}, text="some text " * 50)
    with open(tmp_path / "iz" / "docstore.bin", "r+b") as f:
        f.truncate(10)
    with pytest.raises(lsr.IndexFormatError, match="docstore.bin"):
        lsr.Index.open(tmp_path / "iz", verify=False)


def test_an_open_index_keeps_its_texts_across_an_overwrite(tmp_path):
    """The docstore is mapped when the index opens: an --overwrite swap afterwards does not hand the open
    index the new index's texts."""
    def build(text):
        with IndexBuilder(tmp_path / "ix", store_text=True, overwrite=True) as b:
            b.add("a", {"x": 1.0}, text=text)

    build("old text")
    ix = lsr.Index.open(tmp_path / "ix")
    build("new text")
    assert ix.doc_text("a") == "old text"
    assert lsr.Index.open(tmp_path / "ix").doc_text("a") == "new text"
