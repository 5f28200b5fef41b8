"""Index directories as Hugging Face hub dataset repositories, with no network: a local path, a hub id
resolved offline from a Hugging Face cache laid out as huggingface_hub lays it out (blobs, snapshots,
refs), the one-line errors, and what a push uploads (the dataset card and the file set). The upload itself
needs the hub and is not run here."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import lsr
from lsr.cli import main
from lsr.errors import IndexFormatError, InputError
from lsr.index.hub import CARD, HubError, dataset_card, push_index, upload_files, write_card

COMMIT = "5a" * 20


@pytest.fixture(scope="module")
def small_index(tmp_path_factory, scifact_dir):
    """A real index of 200 SciFact documents (whole-word term weights) with stored text."""
    ix = tmp_path_factory.mktemp("hubix") / "ix"
    with open(scifact_dir / "corpus.jsonl", encoding="utf-8") as f:
        docs = [json.loads(line) for _, line in zip(range(200), f)]
    with lsr.IndexBuilder(ix, store_text=True) as b:
        for d in docs:
            words = f"{d['title']} {d['text']}".lower().split()
            vec: dict[str, float] = {}
            for w in words:
                vec[w] = vec.get(w, 0.0) + 1.0
            b.add(d["_id"], {w: float(np.log1p(c)) for w, c in vec.items()}, text=d["text"])
    return ix


def hub_cache(root, repo_id: str, index_dir, commit: str = COMMIT):
    """``root`` laid out as huggingface_hub's cache holding the dataset repo ``repo_id`` at ``commit`` (the
    ``main`` ref): each file a blob under ``blobs/`` named by its SHA-256, linked from ``snapshots/<commit>/``."""
    owner, name = repo_id.split("/")
    repo = root / f"datasets--{owner}--{name}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for fname in sorted(os.listdir(index_dir)):
        data = (index_dir / fname).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        os.symlink(os.path.relpath(blob, snap), snap / fname)
    return repo


@pytest.fixture
def offline(monkeypatch):
    """HF_HUB_OFFLINE for this test only: the variable, and the constant huggingface_hub read from it at
    import."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def _same_search(a: lsr.Index, b: lsr.Index):
    searcher_a, searcher_b = lsr.Searcher(a), lsr.Searcher(b)
    for q in ({"cancer": 1.0, "cells": 0.5}, {"protein": 2.0}, {"the": 0.1, "vitamin": 1.5, "d": 0.7}):
        ra, rb = searcher_a.search(q, k=10), searcher_b.search(q, k=10)
        assert [(h.doc_id, h.score) for h in ra] == [(h.doc_id, h.score) for h in rb]
        assert len(list(ra)) > 0


def test_local_path_opens_as_is(small_index):
    ix = lsr.Index.from_pretrained(small_index)
    assert ix.path == str(small_index) and ix.num_documents == 200
    _same_search(ix, lsr.Index.open(small_index))
    with pytest.raises(InputError, match="revision applies to hub repositories only"):
        lsr.Index.from_pretrained(small_index, revision="main")
    with pytest.raises(IndexFormatError, match="does not exist"):
        lsr.Index.from_pretrained(str(small_index) + "-missing")


def test_hub_id_from_the_offline_cache(small_index, tmp_path, offline):
    """owner/name resolved from a cache_dir laid out as huggingface_hub's, offline: the snapshot opens
    (checksums verified) and searches exactly as the original directory; a revision by commit works too."""
    hub_cache(tmp_path / "hub", "lsr-test/scifact-words", small_index)
    ix = lsr.Index.from_pretrained("lsr-test/scifact-words", cache_dir=tmp_path / "hub")
    assert ix.path.endswith(os.path.join("snapshots", COMMIT))
    assert ix.manifest == lsr.Index.open(small_index).manifest
    _same_search(ix, lsr.Index.open(small_index))
    assert ix.doc_texts([0]) == lsr.Index.open(small_index).doc_texts([0])
    same = lsr.Index.from_pretrained("lsr-test/scifact-words", revision=COMMIT, cache_dir=tmp_path / "hub")
    assert same.path == ix.path


def test_hub_errors_are_one_line(small_index, tmp_path, offline):
    hub = tmp_path / "hub"
    with pytest.raises(HubError, match=r"lsr-test/absent is not in the Hugging Face cache and HF_HUB_OFFLINE is "
                                       r"set.*no local directory lsr-test/absent") as e:
        lsr.Index.from_pretrained("lsr-test/absent", cache_dir=hub)
    assert "\n" not in str(e.value)
    # a dataset repository that holds something else: not an lsr index
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("a,b\n1,2\n")
    hub_cache(hub, "lsr-test/not-an-index", other)
    with pytest.raises(IndexFormatError, match="hub dataset lsr-test/not-an-index is not an lsr index"):
        lsr.Index.from_pretrained("lsr-test/not-an-index", cache_dir=hub)
    # a damaged file in the cached snapshot is caught as Index.open catches it
    bad = tmp_path / "bad"
    shutil.copytree(small_index, bad)
    raw = bytearray((bad / "postings_impacts.npy").read_bytes())
    raw[-1] ^= 0xFF
    (bad / "postings_impacts.npy").write_bytes(bytes(raw))
    hub_cache(hub, "lsr-test/damaged", bad)
    with pytest.raises(IndexFormatError, match="postings_impacts.npy"):
        lsr.Index.from_pretrained("lsr-test/damaged", cache_dir=hub)


def test_push_prepares_card_and_files(small_index, tmp_path, offline):
    """What a push uploads: the files Index.open reads plus the card; the card holds library_name: lsr,
    tags and the manifest's counts; the directory still opens with the card in it. The upload itself is
    refused offline, in one line, after the card is written."""
    ix_dir = tmp_path / "ix"
    shutil.copytree(small_index, ix_dir)
    ix = lsr.Index.open(ix_dir)
    files = upload_files(ix)
    assert set(files) == set(os.listdir(ix_dir)) and "manifest.json" in files and "docstore.bin" in files
    card = dataset_card(ix, "lsr-test/scifact-words")
    head = card.split("---")[1]
    assert "library_name: lsr" in head and "- learned-sparse-retrieval" in head and "n<1K" in head
    c = ix.manifest["counts"]
    for value in (c["documents"], c["terms"], c["postings"]):
        assert f"| {value:,} |" in card
    assert 'lsr.Index.from_pretrained("lsr-test/scifact-words")' in card
    write_card(ix, "lsr-test/scifact-words")
    assert (ix_dir / CARD).read_text(encoding="utf-8") == card
    reopened = lsr.Index.open(ix_dir)   # a README.md in the directory is not part of the index
    _same_search(reopened, ix)
    assert upload_files(reopened) == files
    # a README.md that lsr did not write is kept
    (ix_dir / CARD).write_text("# my own notes\n", encoding="utf-8")
    write_card(ix, "lsr-test/scifact-words")
    assert (ix_dir / CARD).read_text(encoding="utf-8") == "# my own notes\n"
    with pytest.raises(HubError, match="owner/name"):
        push_index(ix, "not a repo id")
    with pytest.raises(HubError, match="cannot push the index to hub dataset lsr-test/x") as e:
        ix.push_to_hub("lsr-test/x")
    assert "\n" not in str(e.value)


@pytest.mark.slow
def test_card_of_an_encoded_index(scifact_splade_index):
    card = dataset_card(lsr.Index.open(scifact_splade_index), "o/n")
    enc = lsr.Index.open(scifact_splade_index).encoder
    assert f"| encoder | {enc['config']['name']} |" in card
    assert "| impacts | uint8, " in card or "| impacts | uint16, " in card or "| impacts | float32 |" in card


CLI_SCRIPT = """
import sys
from lsr.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_cli_reads_hub_ids_from_the_cache(small_index, tmp_path):
    """`lsr info owner/name` and `lsr search -i owner/name` with HF_HUB_CACHE and HF_HUB_OFFLINE set for the
    child process; the run equals the one from the local directory."""
    hub_cache(tmp_path / "hub", "lsr-test/scifact-words", small_index)
    q = tmp_path / "q.tsv"
    q.write_text("1\tcancer:1.0 cells:0.5\n2\tprotein:2.0\n", encoding="utf-8")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-c", CLI_SCRIPT, "info", "lsr-test/scifact-words"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "documents   200" in r.stdout
    r = subprocess.run([sys.executable, "-c", CLI_SCRIPT, "search", "-i", "lsr-test/scifact-words", "-q", str(q),
                        "--query-format", "vector", "-k", "5", "-o", str(tmp_path / "hub.run")], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert main(["search", "-i", str(small_index), "-q", str(q), "--query-format", "vector", "-k", "5",
                 "-o", str(tmp_path / "local.run")]) == 0
    assert (tmp_path / "hub.run").read_text() == (tmp_path / "local.run").read_text()
    r = subprocess.run([sys.executable, "-c", CLI_SCRIPT, "info", "lsr-test/absent"], env=env,
                       capture_output=True, text=True, timeout=300)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1 and err[0].startswith("lsr: error:") and "HF_HUB_OFFLINE" in err[0]
