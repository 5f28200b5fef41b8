"""The reproducibility registry as shipped package data, and ``lsr benchmark``'s --model-path / registry options."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LSR_SHARED_DIR", ROOT.parent / "shared"))
MODEL = SHARED / "models" / "splade-tiny"


def test_registry_is_read_from_package_data():
    from lsr import configs
    from lsr.eval.benchmark import load_registry_entry, registry_entries

    shipped = sorted(e.name[:-5] for e in configs.path("registry").iterdir() if e.name.endswith(".yaml"))
    entries = registry_entries()
    assert sorted(entries) == shipped and "splade-tiny-scifact" in entries
    e = load_registry_entry("splade-tiny-scifact")
    assert e.config.encoder == "splade-tiny" and e.config.model_path is None
    assert e.path == "lsr.configs/registry/splade-tiny-scifact.yaml"
    for name in entries:   # nothing shipped points outside the package (e.g. into ../shared)
        text = configs.path("registry", f"{name}.yaml").read_text(encoding="utf-8")
        assert "../" not in text and "shared/" not in text, name


def test_registry_from_a_directory_and_a_path(tmp_path):
    from lsr.errors import InputError
    from lsr.eval.benchmark import load_registry_entry, registry_entries

    (tmp_path / "mine.yaml").write_text(
        "name: mine\ndescription: d\ncommand: lsr benchmark -d beir/scifact/test -e splade-tiny\n"
        "config: {dataset: beir/scifact/test, encoder: splade-tiny, model_path: /models/tiny}\n", encoding="utf-8")
    assert registry_entries(tmp_path) == {"mine": str(tmp_path / "mine.yaml")}
    e = load_registry_entry("mine", tmp_path)
    assert e.config.model_path == "/models/tiny" and e.path == str(tmp_path / "mine.yaml")
    assert load_registry_entry(str(tmp_path / "mine.yaml")).config == e.config
    with pytest.raises(InputError, match="unknown registry entry 'nope' \\(known: .*splade-tiny-scifact"):
        load_registry_entry("nope")
    assert registry_entries(tmp_path / "missing") == {}


def test_model_path_option_reaches_the_config():
    from lsr.cli import build_parser
    from lsr.commands.benchmark import config_from_args
    from lsr.errors import InputError
    from lsr.eval.benchmark import BenchmarkConfig

    parser = build_parser()
    args = parser.parse_args(["benchmark", "--registry", "splade-tiny-scifact", "--model-path", str(MODEL)])
    c = config_from_args(args)
    assert (c.encoder, c.model_path, c.name) == ("splade-tiny", str(MODEL), "splade-tiny-scifact")
    assert BenchmarkConfig.from_dict(c.to_dict()) == c
    with pytest.raises(InputError, match="model_path replaces an encoder's checkpoint"):
        BenchmarkConfig(dataset="beir/scifact/test", vectors="v", model_path=str(MODEL))
    with pytest.raises(InputError, match="model_path must be a non-empty string"):
        BenchmarkConfig(dataset="beir/scifact/test", encoder="splade-tiny", model_path="")


def test_a_missing_model_path_is_one_line(capsys, tmp_path):
    import lsr.data
    from lsr.cli import main

    ds = tmp_path / "demo"   # the demo data as a flat dataset directory
    ds.mkdir()
    for src, dst in ((lsr.data.CORPUS, "corpus.jsonl.gz"), (lsr.data.QUERIES, "queries.jsonl.gz"),
                     (lsr.data.QRELS, "qrels.tsv")):
        (ds / dst).symlink_to(str(lsr.data.path(src)))
    rc = main(["benchmark", "-d", str(ds), "-e", "splade-tiny", "--model-path", str(tmp_path / "none"),
               "-o", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert rc == 2 and capsys.readouterr().err == f"lsr: error: no such directory: {tmp_path / 'none'}\n"
    assert not (tmp_path / "out").exists()


def test_list_registry_prints_every_entry(capsys):
    from lsr.cli import main
    from lsr.eval.benchmark import load_registry_entry, registry_entries

    assert main(["benchmark", "--list-registry"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{n}: {load_registry_entry(n).description}" for n in registry_entries()]
