"""Encoding on Ray (lsr.distributed.encode) against the single-process encode: the real splade-tiny on
200 SciFact documents, on the session's local Ray (the ``ray_local`` fixture, 2 CPUs)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lsr
from lsr.errors import InputError

N_DOCS = 200


def _read_parts(d: Path) -> list[tuple[str, dict]]:
    out = []
    for p in sorted(d.glob("part-*.jsonl.gz")):
        with gzip.open(p, "rt", encoding="utf-8") as f:
            out += [(r["id"], r["vector"]) for r in map(json.loads, f)]
    return out


def _same_vectors(a: list[tuple[str, dict]], b: list[tuple[str, dict]]) -> None:
    assert [i for i, _ in a] == [i for i, _ in b]   # the same documents in the same order
    for (did, va), (_, vb) in zip(a, b):
        assert list(va) == list(vb), did            # the same terms, in the same order
        np.testing.assert_allclose(list(va.values()), list(vb.values()), rtol=0, atol=1e-6, err_msg=did)


def _same_index(a: Path, b: Path) -> None:
    def arrays(d: Path) -> list[str]:   # the index's arrays (a docstore comes with store_text)
        return sorted(p.name for p in d.glob("*.npy") if not p.name.startswith("docstore"))

    names = arrays(a)
    assert names and names == arrays(b)
    for name in names:
        x, y = np.load(a / name), np.load(b / name)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), name
    ma, mb = (json.loads((p / "manifest.json").read_text()) for p in (a, b))
    assert ma["quantization"] == mb["quantization"]
    assert ma["counts"] == mb["counts"] and ma["counts"]["documents"] == N_DOCS


@pytest.fixture(scope="module")
def corpus(scifact_dir, tmp_path_factory) -> Path:
    """The first 200 SciFact documents (a file of their own, so that --limit is not needed)."""
    p = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    with open(scifact_dir / "corpus.jsonl", encoding="utf-8") as f:
        p.write_text("".join(next(f) for _ in range(N_DOCS)), encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def local_encode(corpus, splade_tiny, tmp_path_factory) -> Path:
    """The single-process reference: lsr encode on 1 thread."""
    from lsr.encoders import encode_corpus, load_encoder

    out = tmp_path_factory.mktemp("local") / "vectors"
    enc = load_encoder("splade-tiny", model_path=str(splade_tiny), threads=1)
    encode_corpus(enc, str(corpus), str(out), part_size=64)
    return out


@pytest.fixture(scope="module")
def local_index(corpus, splade_tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local-index") / "index"
    lsr.build_index(str(corpus), out, encoder="splade-tiny", model_path=str(splade_tiny), threads=1, part_size=64)
    return out


# --- without Ray running -------------------------------------------------------------------------

def test_import_is_light():
    code = ("import sys, lsr, lsr.distributed, lsr.distributed.encode, lsr.commands.encode; "
            "print('ray' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"


def test_config_validation():
    from lsr.distributed.encode import RayEncodeConfig, _host_port

    assert RayEncodeConfig().address is None
    for bad in ({"address": ""}, {"address": "a b"}, {"actors": 0}, {"actors": True}, {"actors": 1.5}):
        with pytest.raises(InputError):
            RayEncodeConfig(**bad)
    assert _host_port("10.0.0.1:6379") == ("10.0.0.1", 6379)
    assert _host_port("ray://head:10001") == ("head", 10001)
    assert _host_port("[::1]:6379") == ("::1", 6379)
    assert _host_port("auto") is None
    for bad in ("head", "head:", "head:0", "head:99999", "http://head:1", "ray://"):
        with pytest.raises(InputError):
            _host_port(bad)


@pytest.mark.slow
def test_cli_bad_address(corpus, splade_tiny, tmp_path):
    """An address where no Ray cluster listens: one `lsr: error:` line in seconds, exit 2."""
    import socket

    with socket.socket() as s:   # a port that was free a moment ago: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for args in (["encode", "splade-tiny", "--model-path", str(splade_tiny), "--corpus", str(corpus),
                  "--output", str(tmp_path / "v"), "--ray", f"127.0.0.1:{port}"],
                 ["index", "--encoder", "splade-tiny", "--model-path", str(splade_tiny), "--corpus", str(corpus),
                  "-o", str(tmp_path / "ix"), "--ray=not-an-address"],
                 ["encode", "splade-tiny", "--queries", str(corpus), "--queries-output", str(tmp_path / "q.jsonl"),
                  "--ray"],
                 ["index", str(tmp_path), "-o", str(tmp_path / "ix2"), "--ray"]):
        r = subprocess.run([sys.executable, "-m", "lsr", *args], capture_output=True, text=True, timeout=120)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2, r.stderr
        assert len(lines) == 1 and lines[0].startswith("lsr: error:"), r.stderr
    assert not (tmp_path / "v").exists() and not (tmp_path / "ix").exists()


@pytest.mark.slow
def test_actor_rows_round_trip(corpus, splade_tiny):
    """EncodeActor (called in this process) returns each chunk as encode_documents_sparse gives it, and an
    encoder that cannot load as an error row with the LsrError's message."""
    import pyarrow as pa

    from lsr.distributed.encode import EncodeActor
    from lsr.encoders import RuntimeConfig, load_encoder

    enc = load_encoder("splade-tiny", model_path=str(splade_tiny), threads=1)
    docs = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines()[:10]]
    texts = [f"{d['title']} {d['text']}" for d in docs] + ["   "]
    ids = [d["_id"] for d in docs] + ["blank"]
    table = pa.table({"ids": [ids[:6], ids[6:]], "texts": [texts[:6], texts[6:]],
                      "expansions": [[None] * 6, [None] * 5]})
    out = EncodeActor(enc.config, RuntimeConfig(threads=1), 4, True)(table).to_pylist()
    assert [r["ids"] for r in out] == [ids[:6], ids[6:]] and out[1]["texts"] == texts[6:]
    assert [r["error"] for r in out] == ["", ""] and out[1]["empty"] == 1
    for r, part in zip(out, (texts[:6], texts[6:])):
        ref = enc.encode_documents_sparse(part, batch_size=4)
        assert np.array_equal(np.frombuffer(r["indptr"], np.int64), ref.indptr)
        assert np.array_equal(np.frombuffer(r["tok"], np.int32), ref.ids)
        assert np.array_equal(np.frombuffer(r["weights"], np.float32), ref.weights)
        assert r["token_ids"] and r["vocab_size"] == len(ref.terms)
    bad = EncodeActor(enc.config, RuntimeConfig(device="cuda", threads=1), 4, False)(table).to_pylist()
    assert all(r["error"] and "cuda" in r["error"] and not r["error_input"] for r in bad)


# --- on the session's local Ray ------------------------------------------------------------------

@pytest.mark.slow
def test_ray_encode_equals_single_process(ray_local, corpus, splade_tiny, local_encode, tmp_path):
    from lsr.distributed.encode import RayEncodeConfig
    from lsr.encoders import encode_corpus, load_encoder

    enc = load_encoder("splade-tiny", model_path=str(splade_tiny), threads=1)
    rep = encode_corpus(enc, str(corpus), str(tmp_path / "v"), part_size=64, ray=RayEncodeConfig(actors=2))
    assert rep.complete and rep.docs == rep.encoded == N_DOCS and rep.parts == 4
    _same_vectors(_read_parts(local_encode), _read_parts(tmp_path / "v"))
    a, b = (json.loads((d / "encoder.json").read_text()) for d in (local_encode, tmp_path / "v"))
    assert b["runtime"]["ray"] == {"actors": 2, "address": None}
    assert {k: v for k, v in a.items() if k != "runtime"} == {k: v for k, v in b.items() if k != "runtime"}
    # the parts are what `lsr index` reads: the same index as from the single-process parts
    lsr.build_index(str(local_encode), tmp_path / "ia")
    lsr.build_index(str(tmp_path / "v"), tmp_path / "ib")
    _same_index(tmp_path / "ia", tmp_path / "ib")


@pytest.mark.slow
def test_ray_resumes_a_single_process_encode(ray_local, corpus, splade_tiny, local_encode, tmp_path):
    """An encode stopped after its first part continues on Ray (the read task skips the finished
    documents) and ends with the same parts."""
    from lsr.distributed.encode import RayEncodeConfig
    from lsr.encoders import encode_corpus, load_encoder

    enc = load_encoder("splade-tiny", model_path=str(splade_tiny), threads=1)

    class Stop(Exception):
        pass

    def stop(part, docs):
        raise Stop

    with pytest.raises(Stop):
        encode_corpus(enc, str(corpus), str(tmp_path / "v"), part_size=64, on_part=stop)
    rep = encode_corpus(enc, str(corpus), str(tmp_path / "v"), part_size=64, ray=RayEncodeConfig(actors=1))
    assert rep.resumed_from == 64 and rep.encoded == N_DOCS - 64 and rep.docs == N_DOCS
    _same_vectors(_read_parts(local_encode), _read_parts(tmp_path / "v"))


@pytest.mark.slow
def test_ray_index_equals_single_process(ray_local, corpus, splade_tiny, local_index, tmp_path):
    from lsr.distributed.encode import RayEncodeConfig

    ix = lsr.build_index(str(corpus), tmp_path / "ix", encoder="splade-tiny", model_path=str(splade_tiny),
                         threads=1, part_size=64, store_text=True, ray=RayEncodeConfig(actors=2))
    assert ix.manifest["encoder"]["runtime"]["ray"]["actors"] == 2
    assert ix.encode_report["docs"] == N_DOCS
    _same_index(local_index, tmp_path / "ix")
    first = json.loads(corpus.read_text(encoding="utf-8").splitlines()[0])
    assert ix.doc_text(first["_id"]) == f"{first['title']} {first['text']}"
    assert not os.path.exists(str(tmp_path / "ix") + ".partial")


@pytest.mark.slow
def test_ray_input_error_is_the_readers(ray_local, splade_tiny, tmp_path):
    """A duplicate id found by the read task (in a Ray worker) reaches the caller as lsr's InputError."""
    from lsr.distributed.encode import RayEncodeConfig
    from lsr.encoders import encode_corpus, load_encoder

    src = tmp_path / "dup.jsonl"
    src.write_text('{"_id": "a", "text": "one"}\n{"_id": "b", "text": "two"}\n{"_id": "a", "text": "three"}\n')
    enc = load_encoder("splade-tiny", model_path=str(splade_tiny), threads=1)
    with pytest.raises(InputError, match=r"^.*duplicate document id 'a' \(record 3\)$"):
        encode_corpus(enc, str(src), str(tmp_path / "v"), ray=RayEncodeConfig(actors=1))


@pytest.mark.slow
def test_cli_ray_encode_then_index(ray_local, corpus, splade_tiny, local_index, tmp_path):
    """`python -m lsr encode ... --ray ADDRESS` (the session's Ray) writes parts that `lsr index` reads
    into the same index as the single-process one-step build."""
    address = ray_local.get_runtime_context().gcs_address
    r = subprocess.run([sys.executable, "-m", "lsr", "encode", "splade-tiny", "--model-path", str(splade_tiny),
                        "--corpus", str(corpus), "--output", str(tmp_path / "v"), "--threads", "1",
                        "--part-size", "64", "--ray", address, "--ray-actors", "1", "--no-progress"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert f"{N_DOCS} documents in 4 parts" in r.stderr and "on Ray (1 actor(s), 1 thread(s) each)" in r.stderr
    r = subprocess.run([sys.executable, "-m", "lsr", "index", str(tmp_path / "v"), "-o", str(tmp_path / "ix")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    _same_index(local_index, tmp_path / "ix")


@pytest.mark.slow
def test_cli_ray_sigterm_keeps_parts(ray_local, corpus, splade_tiny, local_encode, tmp_path):
    """SIGTERM during `lsr encode --ray` (ray.init replaces the SIGTERM handler; lsr puts its own back):
    exit 143 with lsr's one line, the finished parts kept, and a rerun completes them into the
    single-process vectors."""
    import signal
    import time

    address = ray_local.get_runtime_context().gcs_address
    cmd = [sys.executable, "-m", "lsr", "encode", "splade-tiny", "--model-path", str(splade_tiny),
           "--corpus", str(corpus), "--output", str(tmp_path / "v"), "--threads", "1", "--part-size", "16",
           "--ray", address, "--ray-actors", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (tmp_path / "v" / "part-00000.jsonl.gz").exists() and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == ("lsr: terminated; the finished parts are kept: rerun the same "
                                             "command to continue")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "resumed after" in r.stderr, r.stderr
    # part sizes differ from the reference's (16 vs 64 documents), the vectors do not
    _same_vectors(_read_parts(local_encode), _read_parts(tmp_path / "v"))


@pytest.mark.slow
def test_pool_must_fit_the_cluster(ray_local, splade_tiny, corpus, tmp_path):
    """The session's Ray has 2 CPUs and no GPU: pools that cannot run are refused before anything is written."""
    from lsr.distributed.encode import RayEncodeConfig, driver_encoder
    from lsr.encoders import encode_corpus

    for device, threads, actors, msg in (("cuda", None, None, "no GPUs"), ("cuda:1", None, None, "give 'cuda'"),
                                         ("cpu", 1, 3, "need 3 CPUs; the cluster has 2"),
                                         ("cpu", 3, None, "3 threads per Ray actor")):
        enc = driver_encoder("splade-tiny", model_path=str(splade_tiny), device=device, threads=threads)
        with pytest.raises(InputError, match=msg):
            encode_corpus(enc, str(corpus), str(tmp_path / "v"), ray=RayEncodeConfig(actors=actors))
    assert not (tmp_path / "v").exists()
