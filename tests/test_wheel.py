"""The installed package, as a user gets it: a wheel built from the checkout, installed in a fresh venv.

The wheel is built from a copy of the checkout's files (git's tracked and
untracked-but-not-ignored files, so no stale ``build/`` leaks in) with the
running environment's setuptools, and must build without a warning. It is
installed into a new virtual environment outside the repository whose only
other packages are the dependencies of this test environment (its
site-packages is appended to the new one's path by a ``.pth`` line, which
puts the directory on ``sys.path`` without running its own ``.pth`` files, so
the checkout's editable install stays out). Every command runs from a
directory outside the checkout. Checks: the shipped presets and registry list
the same as in the checkout; a shipped preset encodes with ``--model-path`` and
indexes the shipped demo corpus in one step (``lsr index --encoder``), searched by text;
the lab code is not installed; no installed module calls apt-get or writes
``os.environ``.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LSR_SHARED_DIR", ROOT.parent / "shared"))


def _run(args, **kw):
    p = subprocess.run(args, capture_output=True, text=True, timeout=600, **kw)
    assert p.returncode == 0, f"{args}: {p.stdout[-2000:]}\n{p.stderr[-4000:]}"
    return p


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """(python, lsr script, site-packages, work dir) of a venv with the wheel installed."""
    assert shutil.which("git") and (ROOT / ".git").exists(), "the wheel is built from a git checkout's files"
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    names = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT).stdout
    for name in filter(None, names.split("\0")):
        f = ROOT / name
        if f.is_file():   # deleted-but-tracked files are skipped
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, src / name)
    build = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", str(src),
                  "-w", str(base / "dist")], cwd=base)
    warnings = [line for line in (build.stdout + build.stderr).splitlines() if "warn" in line.lower()]
    assert not warnings, "\n".join(warnings)
    (wheel,) = (base / "dist").glob("lsr-*.whl")
    env_dir = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)])
    py = env_dir / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "zz-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", str(wheel)],
         cwd=base)
    work = base / "work"
    work.mkdir()
    return py, env_dir / "bin" / "lsr", site, work


def test_installed_from_the_wheel_not_the_checkout(venv):
    py, _, site, work = venv
    out = _run([str(py), "-c", "import lsr, lsr.encoders, lsr.configs, lsr.data; "
                "print(lsr.__file__); print(lsr.encoders.__file__); print(lsr.data.path(lsr.data.CORPUS))"],
               cwd=work).stdout.split()
    assert all(Path(p).is_relative_to(site) for p in out), out
    assert Path(out[2]).is_file()


def test_presets_and_registry_list_as_in_the_checkout(venv):
    from lsr.encoders import PUBLIC_NAMES, shipped_presets
    from lsr.eval.benchmark import load_registry_entry, registry_entries

    _, lsr, _, work = venv
    listed = _run([str(lsr), "encode", "--list"], cwd=work).stdout.split()
    # what a fresh process of the checkout lists (other tests may register names in this one)
    assert listed == sorted(set(PUBLIC_NAMES) | set(shipped_presets())) and "splade-tiny" in listed
    registry = _run([str(lsr), "benchmark", "--list-registry"], cwd=work).stdout.splitlines()
    want = [f"{n}: {load_registry_entry(n).description}" for n in registry_entries()]
    assert registry == want and any(line.startswith("splade-tiny-scifact: ") for line in registry)
    from lsr.rerank import available_presets

    rerank = _run([str(lsr), "rerank", "--list"], cwd=work).stdout.splitlines()
    assert rerank[0] == "rerankers: icr, maxsim, sft"
    assert rerank[1].split(":", 1)[1].strip().split(", ") == available_presets()
    assert {"colbertv2", "icr-smollm2-135m-instruct", "sft-qwen3-reranker-0.6b"} <= set(available_presets())
    from lsr.train import available_recipes

    recipes = _run([str(lsr), "train", "--list"], cwd=work).stdout.split()
    assert recipes == available_recipes() and {"splade-pp-ensembledistil", "unicoil", "maxsim-colbert"} <= set(recipes)


@pytest.mark.slow
def test_a_shipped_preset_encodes_from_the_wheel_with_a_model_path(venv):
    _, lsr, _, work = venv
    model = SHARED / "models" / "splade-tiny"
    assert model.is_dir(), f"missing {model} (shared data)"
    (work / "q.tsv").write_text("1\tsparse retrieval with learned weights\n", encoding="utf-8")
    _run([str(lsr), "encode", "splade-tiny", "--model-path", str(model), "--queries", "q.tsv",
          "--queries-output", "q.jsonl", "--no-progress"], cwd=work)
    text = (work / "q.jsonl").read_text(encoding="utf-8")
    assert '"retrieval"' in text and '"id": "1"' in text.replace('"id":"1"', '"id": "1"')
    bad = subprocess.run([str(lsr), "encode", "splade-tiny", "--model-path", "no-such-dir", "--queries", "q.tsv",
                          "--queries-output", "o.jsonl"], cwd=work, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr == "lsr: error: no such directory: no-such-dir\n", bad.stderr


@pytest.mark.slow   # about 25 s: Numba compiles the installed copy's kernels afresh
def test_text_to_index_in_one_step_from_the_wheel(venv):
    """lsr index --encoder (a shipped preset on a local copy of its model) on the shipped demo corpus, then text
    queries: every query gets hits, and the index holds the documents given."""
    py, lsr, _, work = venv
    model = SHARED / "models" / "splade-tiny"
    data = _run([str(py), "-c", "import lsr.data as d; print(d.path(d.CORPUS)); print(d.path(d.QUERIES))"],
                cwd=work).stdout.split()
    _run([str(lsr), "index", "--encoder", "splade-tiny", "--model-path", str(model), "--corpus", data[0],
          "--limit", "60", "-o", "ix", "--no-progress"], cwd=work)
    facts = _run([str(py), "-c", "from lsr.index import Index; ix = Index.open('ix'); "
                  "print(ix.num_documents, ix.manifest['encoder']['name'])"], cwd=work).stdout.split()
    assert facts == ["60", "splade-tiny"], facts
    import gzip

    with gzip.open(data[1], "rt", encoding="utf-8") as f:
        (work / "q.jsonl").write_text("".join(next(f) for _ in range(5)), encoding="utf-8")
    _run([str(lsr), "search", "-i", "ix", "-q", "q.jsonl", "--query-format", "text", "-k", "3", "-o", "run.trec"],
         cwd=work)
    rows = [line.split() for line in (work / "run.trec").read_text().splitlines()]
    assert len(rows) == 15 and len({r[0] for r in rows}) == 5


def test_lab_code_is_not_installed(venv):
    py, _, site, work = venv
    for mod in ("lsr.index.peers", "lsr.index.realdata", "lsr.index.bench", "lsr.index.synthetic",
                "lsr.encoders.bench", "lsr.eval.bm25", "lsr.eval.bruteforce", "benchmarks"):
        p = subprocess.run([str(py), "-c", f"import {mod}"], cwd=work, capture_output=True, text=True, timeout=120)
        assert p.returncode != 0 and "ModuleNotFoundError" in p.stderr, mod
    assert not (site / "benchmarks").exists() and not (site / "tests").exists()


def _environ_writes(tree: ast.AST) -> list[int]:
    """Line numbers of writes to os.environ: assignment, deletion, setdefault/update/pop/clear, os.putenv."""
    def is_environ(node) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "environ"
                and isinstance(node.value, ast.Name) and node.value.id == "os") or (
            isinstance(node, ast.Name) and node.id == "environ")

    lines = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for t in targets:
            if isinstance(t, ast.Subscript) and is_environ(t.value):
                lines.append(node.lineno)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            f = node.func
            if f.attr in ("setdefault", "update", "pop", "popitem", "clear", "__setitem__") and is_environ(f.value):
                lines.append(node.lineno)
            if f.attr in ("putenv", "unsetenv") and isinstance(f.value, ast.Name) and f.value.id == "os":
                lines.append(node.lineno)
    return sorted(lines)


def test_no_installed_module_writes_the_environment_or_calls_apt(venv):
    _, _, site, _ = venv
    sources = sorted((site / "lsr").rglob("*.py"))
    assert len(sources) > 20
    offenders = []
    for path in sources:
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(site)
        if "apt-get" in text:
            offenders.append(f"{rel}: mentions apt-get")
        offenders += [f"{rel}:{n}: writes os.environ" for n in _environ_writes(ast.parse(text, str(path)))]
    assert not offenders, "\n".join(offenders)


def test_the_environment_scan_finds_writes():
    code = ("import os\nfrom os import environ\nos.environ['A'] = '1'\nos.environ.setdefault('B', '2')\n"
            "os.putenv('C', '3')\nenviron.update(D='4')\ndel os.environ['A']\nx = os.environ.get('E')\n")
    assert _environ_writes(ast.parse(code)) == [3, 4, 5, 6, 7]
