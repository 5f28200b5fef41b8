"""``lsr train``'s settings: recipes, overrides, validation, and the output directory rules (no training
runs here; tests/test_train.py trains)."""

from __future__ import annotations

import json

import pytest
import yaml

from lsr.cli import main
from lsr.errors import InputError
from lsr.train import TrainConfig, available_recipes, train_config
from lsr.train.trainer import MARKER, last_checkpoint, prepare_output

RECIPES = {"distilsplade-max", "splade-pp-ensembledistil", "splade-inference-free", "unicoil", "deepimpact",
           "maxsim-colbert", "sparterm"}


def test_every_shipped_recipe_loads_and_round_trips():
    assert RECIPES <= set(available_recipes())
    for name in available_recipes():
        cfg = train_config(name)
        assert cfg.name == name
        assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    pp = train_config("splade-pp-ensembledistil")
    assert (pp.query_regularizer_weight, pp.document_regularizer_weight) == (0.5, 0.4)
    assert (pp.optim.learning_rate, pp.optim.batch_size, pp.optim.max_steps, pp.optim.warmup_steps,
            pp.max_length) == (2e-5, 128, 150_000, 6000, 256)
    d = train_config("distilsplade-max")
    assert (d.loss, d.query_regularizer_weight, d.document_regularizer_weight) == ("margin_mse", 0.1, 0.08)
    assert train_config("splade-inference-free").query_encoder == "static"
    assert train_config("deepimpact").query_encoder == "words"
    assert train_config("unicoil").init_head == "random"


def test_overrides_are_dotted_and_typed():
    cfg = train_config("unicoil", {"optim.learning_rate": 1e-4, "eval.every": 5, "model": "m",
                                   "eval.metrics": "nDCG@10,RR@10"})
    assert cfg.optim.learning_rate == 1e-4 and cfg.eval.every == 5 and cfg.model == "m"
    assert cfg.eval.metrics == ("nDCG@10", "RR@10")
    assert train_config(None, model="x").encoder == "splade"


@pytest.mark.parametrize("overrides, message", [
    ({"optim.lr": 1}, "unknown setting(s) lr"),
    ({"lr": 1}, "unknown setting(s) lr"),
    ({"encoder": "colbert"}, "encoder must be one of"),
    ({"query_encoder": "static", "encoder": "unicoil"}, "static (inference-free) needs encoder: splade"),
    ({"encoder": "deepimpact", "query_encoder": "same"}, "set query_encoder: words"),
    ({"init_head": "zeros"}, "init_head must be 'random'"),
    ({"mine_window": [100, 10]}, "mine_window"),
    ({"loss": "margin_mse", "negatives": 0}, "needs negatives >= 1"),
    ({"optim.precision": "fp8"}, "optim.precision"),
    ({"teacher": "x", "teacher_scores": "y"}, "not both"),
])
def test_bad_settings_are_one_clear_error(overrides, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train_config(None, {"model": "m", **overrides})


def test_a_recipe_file_with_relative_paths(tmp_path):
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({"model": "m", "data": "./groups.jsonl",
                                                     "optim": {"batch_size": 4}}))
    cfg = train_config(tmp_path / "r.yaml")
    assert cfg.data == str(tmp_path / "groups.jsonl") and cfg.optim.batch_size == 4 and cfg.name == "r"


def test_cli_list_dry_run_and_errors(tmp_path, capsys):
    assert main(["train", "--list"]) == 0
    assert set(capsys.readouterr().out.split()) >= RECIPES
    assert main(["train", "--recipe", "unicoil", "--set", "optim.learning_rate=1e-4", "--dry-run"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["optim"]["learning_rate"] == 1e-4
    for argv, message in [
        (["--recipe", "nope", "-o", str(tmp_path / "o")], "unknown recipe 'nope'"),
        (["--recipe", "unicoil", "--set", "optim.lr=1", "-o", str(tmp_path / "o")], "unknown setting(s) lr"),
        (["--recipe", "unicoil"], "give --output DIR"),
    ]:
        assert main(["train", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("lsr: error: ") and message in err[0], err
    assert not (tmp_path / "o").exists()


def test_output_directory_rules(tmp_path):
    cfg = train_config("unicoil", model="m")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="holds something other than an lsr training run"):
        prepare_output(str(other), cfg, resume=False, overwrite=True)
    assert (other / "notes.txt").read_text() == "mine"
    out = tmp_path / "run"
    prepare_output(str(out), cfg, resume=False, overwrite=False)
    assert json.loads((out / MARKER).read_text())["config"]["model"] == "m"
    with pytest.raises(InputError, match="--resume to continue it or --overwrite"):
        prepare_output(str(out), cfg, resume=False, overwrite=False)
    # resuming with other settings, or without a checkpoint, is refused
    with pytest.raises(InputError, match="trained with other settings .*differs in optim.learning_rate"):
        prepare_output(str(out), train_config("unicoil", {"model": "m", "optim.learning_rate": 1e-3}),
                       resume=True, overwrite=False)
    with pytest.raises(InputError, match="differs in encoder"):
        prepare_output(str(out), train_config("deepimpact", model="m"), resume=True, overwrite=False)
    with pytest.raises(InputError, match="no checkpoint to resume from"):
        prepare_output(str(out), cfg, resume=True, overwrite=False)
    # evaluation settings may change on resume
    (out / "checkpoints" / "checkpoint-3").mkdir(parents=True)
    (out / "checkpoints" / "checkpoint-3" / "trainer_state.json").write_text("{}")
    (out / "checkpoints" / "checkpoint-5").mkdir()          # incomplete: no trainer_state.json
    assert last_checkpoint(str(out)) == str(out / "checkpoints" / "checkpoint-3")
    prepare_output(str(out), train_config("unicoil", {"model": "m", "eval.every": 7}), resume=True, overwrite=False)
    # --overwrite replaces only what lsr made
    (out / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="keep.txt, which lsr did not make"):
        prepare_output(str(out), cfg, resume=False, overwrite=True)
    assert (out / "checkpoints").is_dir()
    (out / "keep.txt").unlink()
    prepare_output(str(out), cfg, resume=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [MARKER]
    with pytest.raises(InputError, match="holds no training run to resume"):
        prepare_output(str(tmp_path / "new"), cfg, resume=True, overwrite=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is not a directory"):
        prepare_output(str(tmp_path / "file"), cfg, resume=False, overwrite=True)
