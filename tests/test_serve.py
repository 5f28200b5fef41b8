"""``lsr serve``: a real server process (``python -m lsr serve``) on a loopback port, queried over HTTP
with httpx: results equal :class:`lsr.Searcher`'s, /health, /info, every 4xx case, the index left
untouched, the default loopback bind, a graceful SIGTERM stop; a sharded index (the shard status in
the response, 503 with the partial hits flagged when a shard is missing); text queries through the
index's encoder and the Ray Serve deployment (slow)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

import lsr
from lsr.serve import ServeConfig

ROOT = Path(__file__).resolve().parents[1]
VOCAB = [f"t{i}" for i in range(300)]


# ------------------------------------------------------------------------------------------ helpers
def _random_records(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"id": f"d{i}", "vector": {t: round(rng.uniform(0.05, 3.0), 3) for t in rng.sample(VOCAB, rng.randint(3, 25))}}
            for i in range(n)]


def _queries(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        terms = rng.sample(VOCAB, rng.randint(1, 8))
        # float weights (scaled by query_scale) and integer ones (kept as they are)
        out.append({t: (rng.randint(1, 5) if i % 3 == 0 else round(rng.uniform(0.1, 2.0), 4)) for t in terms})
    return out


def tree_checksums(path: Path) -> dict[str, str]:
    """Every file under ``path``: relative name -> SHA-256 (the index before and after a server ran on it)."""
    out = {}
    for p in sorted(path.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(path))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


class Server:
    """``python -m lsr serve ARGS`` in a child process; :attr:`url` once it answers /health."""

    def __init__(self, args: list[str], log: Path, timeout: float = 180.0):
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "lsr", "serve", *args], stdout=subprocess.DEVNULL,
                                     stderr=open(log, "w"), cwd=ROOT)  # noqa: SIM115  (the child's log)
        deadline = time.monotonic() + timeout
        self.url = None
        while time.monotonic() < deadline:
            m = re.search(r" on (http://\S+) ", log.read_text())
            if m:
                self.url = m.group(1)
                try:
                    if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            if self.proc.poll() is not None:
                raise AssertionError(f"lsr serve exited with {self.proc.returncode}: {log.read_text()}")
            time.sleep(0.2)
        self.proc.kill()
        raise AssertionError(f"lsr serve did not come up in {timeout:.0f} s: {log.read_text()}")

    def stop(self, sig=signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def post(self, body=None, **kw) -> httpx.Response:
        if body is not None:
            kw["json"] = body
        return httpx.post(self.url + "/search", timeout=60, **kw)


def _hits(results: lsr.Results) -> list[dict]:
    return [{"doc_id": d, "score": s, "rank": r}
            for d, s, r in zip(results.doc_ids, results.scores.tolist(), results.ranks.tolist())]


def _listening_addresses(port: int) -> list[str]:
    """The local addresses of the sockets listening on ``port`` (Linux /proc/net/tcp, tcp6)."""
    out = []
    for name in ("tcp", "tcp6"):
        p = Path("/proc/net") / name
        if not p.is_file():
            continue
        for line in p.read_text().splitlines()[1:]:
            f = line.split()
            addr, prt = f[1].split(":")
            if int(prt, 16) == port and f[3] == "0A":   # LISTEN
                out.append(socket.inet_ntop(socket.AF_INET if len(addr) == 8 else socket.AF_INET6,
                                            bytes.fromhex(addr)[::-1] if len(addr) == 8 else
                                            b"".join(bytes.fromhex(addr[i:i + 8])[::-1] for i in range(0, 32, 8))))
    return out


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def vec_index(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serve") / "index"
    lsr.build_index(_random_records(600, seed=1), out)
    return out


@pytest.fixture(scope="module")
def server(vec_index, tmp_path_factory):
    s = Server(["-i", str(vec_index), "--port", "0"], tmp_path_factory.mktemp("log") / "serve.err")
    yield s
    s.stop()


# ------------------------------------------------------------------------------------------ search
def test_search_equals_the_searcher(server, vec_index):
    searcher = lsr.Searcher(vec_index)
    for i, q in enumerate(_queries(30, seed=2)):
        k = (1, 10, 100, 1000)[i % 4]
        r = server.post({"query": q, "k": k, "query_id": f"q{i}"})
        assert r.status_code == 200, r.text
        body = r.json()
        want = searcher.search(q, k=k, query_id=f"q{i}")
        assert body["hits"] == _hits(want)
        assert body["query_id"] == f"q{i}" and body["complete"] is True and "shards" not in body
        assert isinstance(body["took_ms"], float) and body["took_ms"] >= 0
    # default k (10), default query id, a query with no known term: no hits
    q = _queries(1, seed=3)[0]
    body = server.post({"query": q}).json()
    assert body["hits"] == _hits(searcher.search(q, k=10)) and body["query_id"] == "0"
    assert server.post({"query": {"unknown-term": 1.0}}).json()["hits"] == []


def test_concurrent_requests_each_get_their_own_answer(server, vec_index):
    """32 requests at once over the server's thread pool (per-thread work buffers): each equals the
    searcher's answer to it alone, and /health answers meanwhile."""
    searcher = lsr.Searcher(vec_index)
    queries = _queries(64, seed=4)

    async def go():
        async with httpx.AsyncClient(base_url=server.url, timeout=60,
                                     limits=httpx.Limits(max_connections=32)) as client:
            reqs = [client.post("/search", json={"query": q, "k": 50}) for q in queries]
            return await asyncio.gather(client.get("/health"), *reqs)

    health, *answers = asyncio.run(go())
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    for q, r in zip(queries, answers):
        assert r.status_code == 200 and r.json()["hits"] == _hits(searcher.search(q, k=50))


def test_health_and_info(server, vec_index):
    r = httpx.get(server.url + "/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = httpx.get(server.url + "/info")
    assert r.status_code == 200
    assert r.json() == json.loads((vec_index / "manifest.json").read_text())


# ------------------------------------------------------------------------------------------ 4xx
NO_ENCODER = None


@pytest.mark.parametrize("case,status,fragment", [
    ({"query": {"t1": 1}, "k": 0}, 422, "k must be a positive integer, got 0"),
    ({"query": {"t1": 1}, "k": -3}, 422, "k must be a positive integer, got -3"),
    ({"query": {"t1": 1}, "k": 1001}, 422, "k must be at most 1000"),
    ({"query": {"t1": 1}, "k": "10"}, 422, "k must be an integer"),
    ({"query": {"t1": 1}, "k": True}, 422, "k must be an integer"),
    ({"query": {"t1": 1}, "k": 2.5}, 422, "k must be an integer"),
    ({"query": 5}, 422, '"query" must be a text string or a {"term": weight} object'),
    ({"query": ["t1"]}, 422, '"query" must be a text string or a {"term": weight} object'),
    ({"query": {"t1": "heavy"}}, 422, "the weight of query term 't1' must be a number"),
    ({"query": {"t1": None}}, 422, "the weight of query term 't1' must be a number"),
    ({"query": {"t1": -1.0}}, 422, "negative"),
    ({"query": {"t1": 1}, "limit": 3}, 422, "unknown field(s) 'limit'"),
    ({"query": {"t1": 1}, "rerank_depth": 5}, 422, "only taken by a server that reranks"),
    ({"query": {"t1": 1}, "query_id": 7}, 422, '"query_id" must be a non-empty string'),
    ({"k": 3}, 422, 'the field "query" is required'),
    ([{"query": "x"}], 422, "the request body must be a JSON object"),
    ({"query": "x" * 4097}, 422, "the query text has 4097 characters, more than this server's limit of 4096"),
    ({"query": {f"t{i}": 1 for i in range(1025)}}, 422, "the query has 1025 terms, more than this server's limit of 1024"),
    ({"query": {"t" * 5000: 1}}, 422, "a query term has 5000 characters"),
    ({"query": "a text query"}, 400, NO_ENCODER),
])
def test_bad_requests_get_one_line_json_errors(server, vec_index, case, status, fragment):
    r = server.post(case)
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["error"] and "\n" not in body["error"]
    if fragment is NO_ENCODER:   # the message lsr gives everywhere for a text query without an encoder
        with pytest.raises(lsr.InputError) as e:
            lsr.Searcher(vec_index).search("a text query")
        assert body["error"] == str(e.value)
    else:
        assert fragment in body["error"]


def test_malformed_oversized_and_non_json_bodies(server):
    def check(r, status, fragment):
        assert r.status_code == status, r.text
        assert list(r.json()) == ["error"] and fragment in r.json()["error"]

    check(server.post(content=b'{"query": {"t1": 1', headers={"Content-Type": "application/json"}), 400,
          "malformed JSON")
    check(server.post(content=b"", headers={"Content-Type": "application/json"}), 422,
          "the request body must be a JSON object")
    check(server.post(content=b'{"query": "x"}'), 415, "Content-Type: application/json")
    check(server.post(content=b'{"query": "x"}', headers={"Content-Type": "text/plain"}), 415, "application/json")
    big = json.dumps({"query": "x" * 70_000}).encode()
    too_large = "larger than this server's limit of 65536 bytes"
    check(server.post(content=big, headers={"Content-Type": "application/json"}), 413, too_large)

    def chunks():   # no Content-Length: the limit is applied while the body is read
        for i in range(0, len(big), 8192):
            yield big[i:i + 8192]

    check(server.post(content=chunks(), headers={"Content-Type": "application/json"}), 413, too_large)
    check(httpx.get(server.url + "/nowhere"), 404, "Not Found")
    check(httpx.delete(server.url + "/search"), 405, "Method Not Allowed")
    check(httpx.post(server.url + "/info"), 405, "Method Not Allowed")
    # a body just under the limit is read and answered
    ok = json.dumps({"query": {"t1": 1.0}, "query_id": "x" * 200}).encode()
    assert server.post(content=ok, headers={"Content-Type": "application/json"}).status_code == 200


def test_binds_to_loopback_by_default(server):
    assert ServeConfig().host == "127.0.0.1" and ServeConfig().port == 8080
    host, port = re.match(r"http://([^:]+):(\d+)", server.url).groups()
    assert host == "127.0.0.1"
    assert _listening_addresses(int(port)) == ["127.0.0.1"]


@pytest.mark.slow
def test_index_unchanged_and_graceful_stop(vec_index, tmp_path):
    """A server of its own: after searches, reads of /info and /health and refused requests the index
    files are byte for byte what they were; SIGTERM stops the server cleanly (exit 0)."""
    before = tree_checksums(vec_index)
    s = Server(["-i", str(vec_index), "--port", "0"], tmp_path / "serve.err")
    try:
        for i, q in enumerate(_queries(20, seed=11)):
            assert s.post({"query": q, "k": (10, 1000)[i % 2]}).status_code == 200
        assert httpx.get(s.url + "/info").status_code == 200 and httpx.get(s.url + "/health").status_code == 200
        assert s.post({"query": {"t1": 1.0}, "k": 0}).status_code == 422
        assert s.post(content=b"{", headers={"Content-Type": "application/json"}).status_code == 400
    finally:
        code = s.stop(signal.SIGTERM)
    assert code == 0
    assert tree_checksums(vec_index) == before
    assert "lsr serve: stopped" in s.log.read_text()
    assert "Traceback" not in s.log.read_text()


# ------------------------------------------------------------------------------------------ CLI errors
def _cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lsr", "serve", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, check=False)


@pytest.mark.slow
def test_bad_input_is_one_error_line(tmp_path, vec_index):
    r = _cli(["-i", str(tmp_path / "missing")])
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("lsr: error: ")
    cfg = tmp_path / "serve.yaml"
    cfg.write_text("max_k: 0\n")
    r = _cli(["-i", str(vec_index), "--config", str(cfg)])
    assert r.returncode == 2 and r.stderr == "lsr: error: max_k must be an integer >= 1, got 0\n"
    cfg.write_text("port: 8080\nmax_kk: 3\n")
    r = _cli(["-i", str(vec_index), "--config", str(cfg)])
    assert r.returncode == 2 and r.stderr.startswith("lsr: error: ServeConfig: unknown setting(s) max_kk")
    r = _cli(["-i", str(vec_index), "--port", "70000"])
    assert r.returncode == 2 and "--port: expected a port number in [0, 65535], got '70000'" in r.stderr
    r = _cli(["-i", str(vec_index), "--ray", "--port", "0"])
    assert r.returncode == 2 and r.stderr == "lsr: error: lsr serve --ray needs a fixed port (Ray Serve's HTTP proxy), not 0\n"
    with socket.socket() as closed:   # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        free = closed.getsockname()[1]
    r = _cli(["-i", str(vec_index), "--ray", f"127.0.0.1:{free}", "--port", "8799"])
    assert r.returncode == 2 and r.stderr.startswith(f"lsr: error: cannot reach Ray at 127.0.0.1:{free}: ")
    assert r.stderr.count("\n") == 1
    r = _cli(["-i", str(vec_index), "--depth", "5"])
    assert r.returncode == 2 and r.stderr == "lsr: error: --rerank-set and --depth go with --rerank\n"
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        r = _cli(["-i", str(vec_index), "--port", str(busy.getsockname()[1])])
    finally:
        busy.close()
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("lsr: error: cannot listen on 127.0.0.1:") and "in use" in r.stderr


def test_config_validation():
    with pytest.raises(lsr.InputError, match="port must be an integer in"):
        ServeConfig(port=-1)
    with pytest.raises(lsr.InputError, match="default_k .* must not exceed max_k"):
        ServeConfig(max_k=5)
    with pytest.raises(lsr.InputError, match="log_level"):
        ServeConfig(log_level="loud")
    c = ServeConfig.from_dict({"max_k": 50, "default_k": 5, "search": {"algorithm": "exhaustive"}})
    assert c.search.algorithm == "exhaustive" and c.max_k == 50
    assert ServeConfig.from_dict(c.to_dict()) == c


def test_import_lsr_imports_no_server_library():
    code = ("import sys, lsr, lsr.serve, lsr.cli; lsr.cli.build_parser(); "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------------------------------ sharded
@pytest.fixture(scope="module")
def sharded_index(vec_index, tmp_path_factory) -> Path:
    from lsr.index.sharded import shard_index

    out = tmp_path_factory.mktemp("sharded") / "index"
    shard_index(vec_index, out, 3)
    return out


def test_sharded_index_reports_its_shards(sharded_index, vec_index, tmp_path):
    before = tree_checksums(sharded_index)
    s = Server(["-i", str(sharded_index), "--port", "0"], tmp_path / "serve.err")
    try:
        plain = lsr.Searcher(vec_index)
        for i, q in enumerate(_queries(12, seed=5)):
            k = (10, 1000)[i % 2]
            r = s.post({"query": q, "k": k})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["shards"] == {"total": 3, "answered": [0, 1, 2], "missing": []}
            assert body["complete"] is True
            assert body["hits"] == _hits(plain.search(q, k=k))     # identical to the unsharded index
        assert httpx.get(s.url + "/info").json() == json.loads((sharded_index / "manifest.json").read_text())
    finally:
        assert s.stop() == 0
    assert tree_checksums(sharded_index) == before


class _OneShardDown:
    """The real sharded searcher with shard ``down`` not answering: the top k of the other shards (a
    stand-in for a Ray shard actor that stays down; the Ray searcher reports it the same way)."""

    def __init__(self, searcher, down: int):
        self._s, self.down = searcher, down
        self.index, self.config = searcher.index, searcher.config

    def search_batch_with_status(self, queries, k=None):
        from lsr.index.sharded import ShardStatus

        full = self._s.search_batch(queries, k=self.index.num_documents)
        lo, hi = int(self.index.starts[self.down]), int(self.index.starts[self.down + 1])
        keep = [i for i, d in enumerate(full.doc_ids) if not lo <= self.index.internal_id(d) < hi][:k]
        res = lsr.Results([full.query_ids[i] for i in keep], [full.doc_ids[i] for i in keep],
                          full.scores[keep], np.arange(1, len(keep) + 1))
        n = self.index.num_shards
        return res, ShardStatus(n, tuple(i for i in range(n) if i != self.down), (self.down,))


def test_a_missing_shard_is_503_with_the_partial_hits_flagged(sharded_index):
    from fastapi.testclient import TestClient

    from lsr.serve import create_app

    real = lsr.Searcher(sharded_index)
    app = create_app(_OneShardDown(real, down=1), config=ServeConfig())
    with TestClient(app) as client:
        q = _queries(1, seed=6)[0]
        r = client.post("/search", json={"query": q, "k": 20})
        assert r.status_code == 503
        body = r.json()
        assert body["complete"] is False and body["shards"] == {"total": 3, "answered": [0, 2], "missing": [1]}
        assert "missing: 1" in body["error"]
        lo, hi = int(real.index.starts[1]), int(real.index.starts[2])
        assert body["hits"] and all(not lo <= real.index.internal_id(h["doc_id"]) < hi for h in body["hits"])
        assert client.get("/health").status_code == 200


# ------------------------------------------------------------------------------------------ slow
@pytest.mark.slow
def test_text_queries_through_the_recorded_encoder(scifact_splade_index, tmp_path):
    s = Server(["-i", str(scifact_splade_index), "--port", "0"], tmp_path / "serve.err")
    try:
        searcher = lsr.Searcher(scifact_splade_index)
        for text in ("vitamin D deficiency and cancer risk", "0-dimensional biomaterials lack inductive properties",
                     "", "   "):
            r = s.post({"query": text, "k": 10})
            assert r.status_code == 200, r.text
            assert r.json()["hits"] == _hits(searcher.search(text, k=10))
    finally:
        assert s.stop() == 0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["plain", "sharded"])
def test_ray_serve_deployment_answers_the_same(ray_local, kind, request, vec_index, tmp_path):
    """The same app deployed on Ray Serve (``--ray ADDRESS``, joining the session's local Ray): a plain
    Searcher in the replica, or for a sharded index RayShardedSearcher's shard actors."""
    from ray import serve

    index = vec_index if kind == "plain" else request.getfixturevalue("sharded_index")
    address = ray_local.get_runtime_context().gcs_address
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    cfg = tmp_path / "serve.yaml"
    cfg.write_text("ray_replica_cpus: 0.5\nray_app_name: lsr-test\n")
    before = tree_checksums(index)
    s = Server(["-i", str(index), "--ray", address, "--port", str(port), "--config", str(cfg)],
               tmp_path / "serve.err", timeout=240)
    try:
        assert s.url == f"http://127.0.0.1:{port}"
        searcher = lsr.Searcher(vec_index)
        for i, q in enumerate(_queries(8, seed=7)):
            k = (10, 1000)[i % 2]
            r = s.post({"query": q, "k": k})
            assert r.status_code == 200, r.text
            assert r.json()["hits"] == _hits(searcher.search(q, k=k))
            if kind == "sharded":
                assert r.json()["shards"] == {"total": 3, "answered": [0, 1, 2], "missing": []}
        r = s.post({"query": {"t1": 1}, "k": 0})
        assert r.status_code == 422 and "k must be a positive integer" in r.json()["error"]
        assert httpx.get(s.url + "/info").json() == json.loads((index / "manifest.json").read_text())
    finally:
        rc = s.stop()
        serve.shutdown()
    assert rc == 0
    assert tree_checksums(index) == before


@pytest.fixture(scope="module")
def text_index(tmp_path_factory, splade_tiny, scifact_dir) -> Path:
    """150 SciFact documents encoded by splade-tiny, with their text stored (for the reranker)."""
    out = tmp_path_factory.mktemp("text") / "index"
    lsr.build_index(str(scifact_dir / "corpus.jsonl"), out, encoder="splade-tiny", model_path=str(splade_tiny),
                    store_text=True, limit=150)
    return out


@pytest.mark.slow
def test_rerank_equals_the_python_pipeline(text_index, tmp_path):
    from benchmarks.rerankers import minilm_colbert

    colbert = minilm_colbert(str(tmp_path / "cache"), dim=16, seed=3)
    cfg = tmp_path / "maxsim.yaml"
    cfg.write_text(f"reranker: maxsim\nmodel: {colbert}\n")
    s = Server(["-i", str(text_index), "--port", "0", "--rerank", str(cfg), "--depth", "20"], tmp_path / "serve.err")
    try:
        searcher = lsr.Searcher(text_index)
        reranker = lsr.load_reranker(str(cfg))
        for text, depth in (("vitamin D and bone density", None), ("cancer cells in mice", 10)):
            body = {"query": text, "k": 5, **({"rerank_depth": depth} if depth else {})}
            r = s.post(body)
            assert r.status_code == 200, r.text
            want = lsr.Pipeline(searcher, reranker, depth=depth or 20).search(text, k=5)
            got = r.json()["hits"]
            assert [h["doc_id"] for h in got] == want.doc_ids and [h["rank"] for h in got] == want.ranks.tolist()
            np.testing.assert_allclose([h["score"] for h in got], want.scores, rtol=1e-5, atol=1e-5)
        r = s.post({"query": "x", "rerank_depth": 1001})
        assert r.status_code == 422 and "rerank_depth must be at most 1000" in r.json()["error"]
        r = s.post({"query": {"cancer": 1.0}})
        assert r.status_code == 400 and r.json() == {"error": "query '0': a pipeline with a reranker takes text queries"}
    finally:
        assert s.stop() == 0


# ------------------------------------------------------------------------------------------ load test
@pytest.mark.slow
def test_load_test_script_runs_against_a_child_server(vec_index, tmp_path):
    from benchmarks import load_test

    out = tmp_path / "load.json"
    assert load_test.main(["--index", str(vec_index), "--requests", "40", "--concurrency", "1", "4",
                           "--warmup", "4", "--random-queries", "50", "--out", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert [r["concurrency"] for r in rep["levels"]] == [1, 4]
    for r in rep["levels"]:
        assert r["requests"] == r["ok"] == 40 and r["errors"] == 0 and r["qps"] > 0
        assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]


def test_fault_report_counts_failures_and_recovery():
    from benchmarks.load_test import Level, Sample, fault_report

    lv = Level(2, kill_at=1.0)
    lv.samples = [Sample(0.5, 0.6, 200, True), Sample(0.9, 1.2, 503, False), Sample(1.1, 1.3, 0, False),
                  Sample(1.3, 1.35, 200, True), Sample(1.35, 1.5, 503, False), Sample(1.5, 1.8, 200, True),
                  Sample(1.6, 1.7, 200, True)]
    rep = fault_report(lv)
    assert rep["failed_after_kill"] == 3 and rep["incomplete_503"] == 2 and rep["no_response"] == 1
    assert rep["first_failure_s"] == 0.2 and rep["last_failure_s"] == 0.5
    assert rep["recovery_s"] == 0.7      # the first complete answer to a request sent after 1.35 ends at 1.7
    lv.samples = [Sample(0.9, 2.4, 200, True), Sample(1.1, 1.2, 200, True)]
    rep = fault_report(lv)               # no failure: retried on the restarted actor, answered at 2.4
    assert rep["failed_after_kill"] == 0 and rep["recovery_s"] == 1.4 and rep["max_latency_ms_in_5s_after_kill"] == 1500.0


def test_searcher_failures_are_json_errors(vec_index):
    from fastapi.testclient import TestClient
    from lsr.index.sharded import ShardStatus, ShardsUnavailable

    from lsr.serve import create_app

    class Broken:
        def __init__(self, exc):
            self.index, self.exc = lsr.Index.open(vec_index), exc

        def search(self, *a, **kw):
            raise self.exc

    with TestClient(create_app(Broken(RuntimeError("disk on fire\nsecond line"))),
                    raise_server_exceptions=False) as client:
        r = client.post("/search", json={"query": {"t1": 1}})
        assert r.status_code == 500 and r.json() == {"error": "internal error: RuntimeError: disk on fire"}
    down = ShardsUnavailable(ShardStatus(2, (0,), (1,)))
    with TestClient(create_app(Broken(down))) as client:
        r = client.post("/search", json={"query": {"t1": 1}})
        assert r.status_code == 503
        assert r.json() == {"error": str(down), "complete": False,
                            "shards": {"total": 2, "answered": [0], "missing": [1]}}
