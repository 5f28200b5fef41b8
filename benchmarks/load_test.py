"""Load test of ``lsr serve``: an asyncio httpx client at concurrency 1, 8, 32 (by default) against the
HTTP JSON API, reporting QPS, p50/p99 latency and errors per level as a table and JSON.

The server is one already running (``--url``), or one this script starts as a child process
(``--index DIR``: ``python -m lsr serve -i DIR --port 0``; with ``--ray`` the Ray Serve deployment of
the same app, on a Ray instance this script starts or joins, ``--ray ADDRESS``). Each level runs for
``--duration`` seconds or ``--requests`` requests, after ``--warmup`` requests that are not counted;
each worker sends its next request when the previous one is answered (closed loop).

Fault injection (``--kill-shard N|any``, Ray sharded deployment): ``--kill-after`` seconds into each
level, shard N's named actor is killed with ``ray.kill`` (``no_restart=False``), or (``any``) one shard
actor's process is sent SIGKILL; Ray restarts it and retries the calls. The report gives the failed
and incomplete (503, ``"complete": false``) responses after the kill, the longest latency in the 5 s
after it, and the recovery time: from the kill to the first complete answer to a request sent after
the last failed one; when none failed (Ray retried the calls on the restarted actor), from the kill to
the answer of the slowest request in flight in the 5 s after it.

Queries: ``--queries FILE`` (what ``lsr search`` reads: JSONL with "vector" or "text", TSV), else
``--random-queries N`` queries of 2-8 terms drawn from the index's 2,000 most frequent terms
(needs ``--index``). Client and server share the machine's cores unless the server runs elsewhere.

Examples::

    python -m benchmarks.load_test --index IDX --duration 20 --out load.json
    python -m benchmarks.load_test --url http://127.0.0.1:8080 --queries q.jsonl --concurrency 1 8 32
    python -m benchmarks.load_test --index SHARDED_IDX --ray --port 8765 --duration 20 --out ray.json
    python -m benchmarks.load_test --index SHARDED_IDX --ray --port 8765 --concurrency 8 --duration 30 \\
        --kill-shard any --kill-after 10 --out fault.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ queries
def load_queries(args) -> list[Any]:
    """The request ``query`` values: term-weight dicts or texts."""
    if args.queries:
        import lsr

        qs = lsr.read_queries(args.queries)
        return [q.vector if q.vector is not None else q.text for q in qs]
    if not args.index:
        raise SystemExit("load_test: give --queries FILE, or --index DIR to draw random queries from")
    import lsr

    ix = lsr.Index.open(args.index, verify=False)
    shards = getattr(ix, "shards", None)
    base = shards[0] if shards else ix    # every shard holds the whole vocabulary
    df = np.zeros(base.num_terms, np.int64)
    for part in (shards or [ix]):
        df += np.diff(part.term_offsets)
    top = np.argsort(-df, kind="stable")[:2000]
    rng = random.Random(args.seed)
    out = []
    for _ in range(args.random_queries):
        terms = rng.sample(top.tolist(), rng.randint(2, min(8, len(top))))
        out.append({base.terms[t]: round(rng.uniform(0.2, 2.0), 3) for t in terms})
    return out


# ------------------------------------------------------------------------------------------ server
class ChildServer:
    """``python -m lsr serve`` as a child process; :attr:`url` once /health answers."""

    def __init__(self, argv: list[str], timeout: float = 600.0):
        import httpx

        # the child's stderr, kept after the run (its path is printed when the server fails)
        self.log = tempfile.NamedTemporaryFile("w+", prefix="lsr-serve-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "lsr", "serve", *argv], stdout=subprocess.DEVNULL,
                                     stderr=self.log, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = Path(self.log.name).read_text()
            m = re.search(r" on (http://\S+) ", text)
            if m:
                self.url = m.group(1)
                try:
                    if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            if self.proc.poll() is not None:
                raise SystemExit(f"load_test: lsr serve exited ({self.proc.returncode}):\n{text}")
            time.sleep(0.3)
        self.proc.kill()
        raise SystemExit(f"load_test: lsr serve did not answer in {timeout:.0f} s (log: {self.log.name})")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


# ------------------------------------------------------------------------------------------ the load
@dataclass
class Sample:
    start: float          # seconds since the level started
    end: float
    status: int           # HTTP status; 0 = no response (connection error, timeout)
    complete: bool        # 200 with "complete": true


@dataclass
class Level:
    concurrency: int
    wall_s: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    kill_at: float | None = None
    killed: str | None = None    # what the fault injection killed
    client_cpu_s: float = 0.0    # this client's CPU time over the level (it shares the machine with the server)


async def run_level(url: str, queries: list, concurrency: int, k: int, duration: float | None,
                    requests: int | None, timeout: float, kill=None, kill_after: float | None = None) -> Level:
    import httpx

    level = Level(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    counter = iter(range(1 << 62))
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        stop_at = t0 + duration if duration else None

        async def worker():
            while True:
                i = next(counter)
                if requests is not None and i >= requests:
                    return
                now = time.perf_counter()
                if stop_at is not None and now >= stop_at:
                    return
                body = {"query": queries[i % len(queries)], "k": k, "query_id": f"q{i}"}
                status, complete = 0, False
                try:
                    r = await client.post("/search", json=body)
                    status = r.status_code
                    complete = status == 200 and r.json().get("complete", True) is True
                    if status != 200:
                        key = f"HTTP {status}"
                        level.errors[key] = level.errors.get(key, 0) + 1
                except httpx.HTTPError as e:
                    key = type(e).__name__
                    level.errors[key] = level.errors.get(key, 0) + 1
                level.samples.append(Sample(now - t0, time.perf_counter() - t0, status, complete))

        async def killer():
            await asyncio.sleep(kill_after)
            level.kill_at = time.perf_counter() - t0
            level.killed = await asyncio.get_running_loop().run_in_executor(None, kill)

        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        if kill is not None:
            tasks.append(asyncio.create_task(killer()))
        await asyncio.gather(*tasks)
        level.wall_s = time.perf_counter() - t0
        level.client_cpu_s = time.process_time() - cpu0
    return level


def summarise(level: Level) -> dict:
    from lsr.eval.benchmark import latency_stats

    ok = [s for s in level.samples if s.status == 200 and s.complete]
    lat = [(s.end - s.start) * 1000 for s in level.samples if s.status != 0]
    stats = latency_stats(lat) or {}
    out = {"concurrency": level.concurrency, "requests": len(level.samples), "ok": len(ok),
           "errors": len(level.samples) - len(ok), "error_kinds": dict(sorted(level.errors.items())),
           "wall_s": round(level.wall_s, 3), "qps": round(len(ok) / level.wall_s, 2) if level.wall_s else 0.0,
           "p50_ms": stats.get("median"), "p99_ms": stats.get("p99"), "mean_ms": stats.get("mean"),
           "max_ms": stats.get("max"), "client_cpu_s": round(level.client_cpu_s, 3)}
    if level.kill_at is not None:
        out["fault"] = fault_report(level)
    return out


def fault_report(level: Level) -> dict:
    """Failures after the kill and the recovery time (module docstring)."""
    t = level.kill_at
    after = [s for s in level.samples if s.end >= t]
    bad = [s for s in after if not (s.status == 200 and s.complete)]
    rep = {"killed": level.killed, "kill_at_s": round(t, 3), "requests_after_kill": len(after), "failed_after_kill": len(bad),
           "incomplete_503": sum(1 for s in bad if s.status == 503),
           "no_response": sum(1 for s in bad if s.status == 0)}
    if bad:
        last_bad_start = max(s.start for s in bad)
        good = [s.end for s in after if s.status == 200 and s.complete and s.start > last_bad_start]
        rep["first_failure_s"] = round(min(s.end for s in bad) - t, 3)
        rep["last_failure_s"] = round(max(s.end for s in bad) - t, 3)
        rep["recovery_s"] = round(min(good) - t, 3) if good else None   # None: not recovered in the run
    window = [s for s in after if s.start < t + 5]
    slowest = max(window, key=lambda s: s.end - s.start, default=None)
    rep["max_latency_ms_in_5s_after_kill"] = round((slowest.end - slowest.start) * 1000, 3) if slowest else None
    if not bad:   # the calls were retried on the restarted actor: recovered when the slowest one was answered
        rep["recovery_s"] = round(max(0.0, slowest.end - t), 3) if slowest else 0.0
    return rep


# ------------------------------------------------------------------------------------------ Ray
def shard_actor_killer(ray, target: str, namespace: str | None):
    """A function that kills a shard actor mid-load and says which; Ray restarts it.

    ``target`` a shard number: the named actor serving that shard (:func:`find_shard_actor`), killed
    with ``ray.kill(no_restart=False)``. ``any``: one live ``ShardWorker`` actor of
    :class:`lsr.distributed.search.RayShardedSearcher` (found with Ray's state API, which needs the
    dashboard) whose process is sent SIGKILL, as a crash would end it (it must run on this machine)."""
    if target == "any":
        from ray.util.state import list_actors

        address = ray.get_runtime_context().gcs_address

        def live():
            acts = list_actors(address=address, filters=[("class_name", "=", "ShardWorker"), ("state", "=", "ALIVE")])
            if not acts:
                raise SystemExit("load_test: no live ShardWorker actor to kill (is the index sharded, served with --ray?)")
            return min(acts, key=lambda a: a.actor_id)

        live()   # fail before the load starts if there is none

        def kill_any():
            a = live()
            os.kill(a.pid, signal.SIGKILL)
            return f"ShardWorker actor {a.actor_id} (pid {a.pid}) sent SIGKILL"

        return kill_any
    shard = int(target)
    find_shard_actor(ray, shard, namespace)   # fail before the load starts if it is not there

    def kill():
        name, actor = find_shard_actor(ray, shard, namespace)
        ray.kill(actor, no_restart=False)
        return f"actor {name} (shard {shard}) killed by ray.kill"

    return kill


def find_shard_actor(ray, shard: int, namespace: str | None):
    """``(name, handle)`` of the named actor serving shard ``shard``: the name
    ``lsr.distributed.search.shard_actor_name(shard)`` gives where that exists, else any named actor
    whose name says ``shard`` and ends in the shard's number."""
    try:
        from lsr.distributed.search import (
            shard_actor_name,  # the Ray searcher's own naming
        )
    except ImportError:
        shard_actor_name = None
    from ray.util import list_named_actors

    named = list_named_actors(all_namespaces=True)
    for a in named:
        name, ns = a["name"], a["namespace"]
        if namespace is not None and ns != namespace:
            continue
        if shard_actor_name is not None:
            match = name == shard_actor_name(shard)
        else:
            match = "shard" in name.lower() and re.search(rf"(?<!\d)0*{shard}$", name) is not None
        if match:
            return name, ray.get_actor(name, namespace=ns)
    raise SystemExit(f"load_test: no named Ray actor for shard {shard} among {sorted(a['name'] for a in named)}; "
                     "--kill-shard any kills an unnamed shard actor's process instead")


# ------------------------------------------------------------------------------------------ report
def table(rows: list[dict]) -> str:
    head = f"{'conc':>5} {'requests':>9} {'ok':>8} {'errors':>7} {'QPS':>9} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        f = lambda v: f"{v:9.2f}" if v is not None else f"{'-':>9}"
        lines.append(f"{r['concurrency']:>5} {r['requests']:>9} {r['ok']:>8} {r['errors']:>7} {r['qps']:>9.1f} "
                     f"{f(r['p50_ms'])} {f(r['p99_ms'])} {f(r['max_ms'])}")
        if r["error_kinds"]:
            lines.append(f"      errors: {r['error_kinds']}")
        if "fault" in r:
            lines.append(f"      fault: {r['fault']}")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.load_test", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a running lsr serve (or its Ray Serve deployment), e.g. http://127.0.0.1:8080")
    where.add_argument("--index", help="start `lsr serve -i INDEX` as a child process and load it")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="with --index: serve through Ray Serve (`lsr serve --ray`), on a Ray instance this script "
                        "starts (no ADDRESS) or joins; with --url: the Ray cluster to find shard actors in "
                        "(--kill-shard)")
    p.add_argument("--ray-cpus", type=int, default=None, help="CPUs of the Ray instance this script starts")
    p.add_argument("--port", type=int, default=0, help="port of the child server (default 0 = a free one; "
                        "--ray needs a fixed one, default then 8765)")
    p.add_argument("--serve-config", help="--config YAML for the child server")
    p.add_argument("--queries", help="query file (JSONL or TSV, as lsr search reads)")
    p.add_argument("--random-queries", type=int, default=1000, help="random queries drawn from --index (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-k", type=int, default=10, help="hits per request (default 10)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32], help="levels (default 1 8 32)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per level (default 20)")
    p.add_argument("--requests", type=int, help="requests per level instead of --duration")
    p.add_argument("--warmup", type=int, default=50, help="uncounted requests before each level (default 50)")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds (default 30)")
    p.add_argument("--kill-shard", metavar="N|any", help="kill the Ray actor of shard N (a named actor), or any "
                        "one shard actor's process (any), during each level")
    p.add_argument("--kill-after", type=float, default=5.0, help="seconds into the level (default 5)")
    p.add_argument("--ray-namespace", help="namespace of the shard actors (default: search all)")
    p.add_argument("--out", help="write the report as JSON here")
    args = p.parse_args(argv)
    if args.requests is not None:
        args.duration = None
    if args.kill_shard is not None and not args.ray:
        p.error("--kill-shard needs --ray (the Ray cluster whose shard actor is killed)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from lsr.eval.benchmark import git_facts, machine_facts

    queries = load_queries(args)
    ray = None
    child = None
    try:
        if args.ray:
            import ray as _ray

            ray = _ray
            if args.ray == "local":
                ray.init(num_cpus=args.ray_cpus, log_to_driver=False)   # the dashboard: the state API of --kill-shard any
            else:
                ray.init(address=args.ray, log_to_driver=False)
        url = args.url
        if args.index:
            argv = ["-i", args.index]
            if args.ray:
                argv += ["--ray", ray.get_runtime_context().gcs_address, "--port", str(args.port or 8765)]
            else:
                argv += ["--port", str(args.port)]
            if args.serve_config:
                argv += ["--config", args.serve_config]
            child = ChildServer(argv)
            url = child.url
        kill = shard_actor_killer(ray, args.kill_shard, args.ray_namespace) if args.kill_shard is not None else None
        rows = []
        for c in args.concurrency:
            if args.warmup:
                asyncio.run(run_level(url, queries, min(c, 8), args.k, None, args.warmup, args.timeout))
            level = asyncio.run(run_level(url, queries, c, args.k, args.duration, args.requests, args.timeout,
                                          kill, args.kill_after if kill else None))
            rows.append(summarise(level))
            r = rows[-1]
            print(f"concurrency {c}: {r['ok']} ok, {r['errors']} errors, {r['qps']} QPS, p50 {r['p50_ms']} ms, "
                  f"p99 {r['p99_ms']} ms", file=sys.stderr, flush=True)
        report = {"url": url, "index": args.index, "ray": args.ray, "k": args.k, "queries": len(queries),
                  "query_source": args.queries or f"{args.random_queries} random from the index",
                  "duration_s": args.duration, "requests_per_level": args.requests, "warmup": args.warmup,
                  "kill_shard": args.kill_shard, "kill_after_s": args.kill_after if kill else None,
                  "levels": rows, "machine": machine_facts(), "git": git_facts(str(ROOT)),
                  "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        print(table(rows))
        if args.out:
            tmp = f"{args.out}.tmp-{os.getpid()}"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(report, f, indent=1)
                f.write("\n")
            os.replace(tmp, args.out)
            print(f"wrote {args.out}", file=sys.stderr)
    finally:
        if child is not None:
            child.stop()
        if ray is not None:
            if args.ray == "local":
                try:
                    from ray import serve

                    serve.shutdown()
                except Exception:   # noqa: BLE001, S110  (Serve never started: nothing to stop)
                    pass
            ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
