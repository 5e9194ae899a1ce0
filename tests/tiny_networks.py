"""Tiny networks with random batch-norm statistics, and run directories holding them, for the
packing and summary tests (no data needed)."""

import keras
import numpy as np

from bnn import runs
from bnn.config import RunConfig
from bnn.model import build_model


def randomize_batch_norm(model, rng):
    """Random moving statistics, scales (some negative, some zero) and shifts, so that every
    folded threshold differs and the signs of gamma matter."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 4, n))
            layer.moving_variance.assign(rng.uniform(0.5, 30, n))
            if layer.scale:
                layer.gamma.assign(rng.normal(0, 1, n) * (rng.random(n) > 0.1))
            if layer.center:
                layer.beta.assign(rng.normal(0, 1, n))


def tiny_network(seed=0, **config):
    """``(config, model)``: :func:`bnn.model.build_model` of ``RunConfig(**config)``, weights
    from ``seed`` and batch norm from :func:`randomize_batch_norm`."""
    config = RunConfig(**config).resolve()
    keras.utils.set_random_seed(seed)
    model = build_model(config)
    randomize_batch_norm(model, np.random.default_rng(seed))
    return config, model


def images(model, n, seed=0):
    """``n`` random images in [-1, 1] of the model's input shape."""
    return np.random.default_rng(seed).uniform(-1, 1, (n, *model.input.shape[1:])).astype("float32")


def write_run(run_dir, config, model):
    """A run directory as run_bnn.py leaves it: config.json and final.keras."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config.run_dir = str(run_dir)
    config.save(run_dir / runs.CONFIG)
    runs.atomic_save(model, run_dir / runs.FINAL)
    return run_dir
