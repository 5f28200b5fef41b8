"""Training lsr's encoders on sentence-transformers' sparse trainer (``lsr train``).

::

    from lsr.train import train, train_config

    cfg = train_config("unicoil", {"model": "sentence-transformers/all-MiniLM-L6-v2",
                                   "init_head": "random", "data": "beir/scifact/train",
                                   "negatives_from": "scifact-index", "eval.dataset": "beir/scifact/test"})
    result = train(cfg, "runs/unicoil-minilm")
    result.model_dir      # a SparseEncoder directory: lsr.encoders.load_encoder(result.model_dir)

Modules: :mod:`~lsr.train.config` (the settings and the shipped recipes),
:mod:`~lsr.train.data` (training groups), :mod:`~lsr.train.mine` (hard negatives from an lsr
index), :mod:`~lsr.train.losses` (what lsr adds to ST's losses), :mod:`~lsr.train.evaluate`
(evaluation through an lsr index), :mod:`~lsr.train.trainer` (the run). sentence-transformers,
datasets and accelerate (the ``train`` extra) are imported only when training starts.
"""

from __future__ import annotations

from typing import Any

from .config import EvalConfig, OptimConfig, TrainConfig, available_recipes, train_config


def train(config: TrainConfig, output, **kwargs: Any):
    """Train ``config`` into the directory ``output``; see :func:`lsr.train.trainer.train`."""
    from .trainer import train as _train

    return _train(config, output, **kwargs)


__all__ = ["EvalConfig", "OptimConfig", "TrainConfig", "available_recipes", "train", "train_config"]


class _CallableModule(__import__("types").ModuleType):
    """Lets ``lsr.train(config, output)`` call :func:`train` while ``lsr.train.*`` stays a package."""

    def __call__(self, config: TrainConfig, output, **kwargs: Any):
        return train(config, output, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallableModule
