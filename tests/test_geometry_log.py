"""geometry.csv: the per-epoch statistics, the callback in a run, resume, and the config fields."""

import csv
import re

import numpy as np
import pytest
from keras.ops import convert_to_numpy as to_numpy

import run_bnn
from bnn import geometry_log, runs
from bnn.config import RunConfig, config_from_args
from bnn.errors import BnnError
from bnn.geometry_log import COLUMNS, kernel_statistics, read_geometry_log
from bnn.layers import QuantDense
from bnn.model import build_model

MLP = ["--data_set", "MNIST", "--conv", "--fc", "32", "--batch_size", "20"]


def run(argv, data_dir, run_dir):
    return run_bnn.main([*argv, "--data_dir", str(data_dir), "--run_dir", str(run_dir)])


def test_statistics_of_a_known_kernel():
    # two filters of d = 2: (0.6, 0.8) -> (1, 1) at arccos(1.4 / sqrt 2) = 8.13 deg;
    # (1, 0) -> (1, 1) (sign(0) = +1) at 45 deg; one of four weights sits at the clip
    w = np.array([[0.6, 1.0], [0.8, 0.0]])
    q = np.where(w >= 0, 1.0, -1.0)
    s = kernel_statistics(w, q)
    small = np.degrees(np.arccos(1.4 / np.sqrt(2)))
    assert s["d"] == 2 and np.isclose(small, 8.130, atol=1e-3)
    assert np.isclose(s["angle_mean_deg"], (small + 45) / 2)
    assert np.isclose(s["angle_std_deg"], (45 - small) / 2)
    assert s["clipped_fraction"] == 0.25 and np.isclose(s["weight_std"], np.std([0.6, 1, 0.8, 0]))
    assert np.isnan(s["flip_ratio"])
    # a conv kernel (3, 3, 2, 4) is 4 filters of d = 18; one forced sign change of 72 entries
    w = np.random.default_rng(0).uniform(-1, 1, size=(3, 3, 2, 4))
    q = np.where(w >= 0, 1.0, -1.0)
    flipped = q.copy()
    flipped[1, 2, 0, 3] *= -1
    s = kernel_statistics(w, flipped, previous=q)
    assert s["d"] == 18 and s["flip_ratio"] == 1 / 72


def test_glorot_uniform_initialization_is_30_degrees_from_its_sign():
    # uniform weights: E|w| / sqrt(E w^2) = sqrt(3) / 2 = cos 30 deg, not the Gaussian 37 deg
    layer = QuantDense(64)
    layer.build((None, 2048))
    s = kernel_statistics(to_numpy(layer.kernel), to_numpy(layer.quantized_kernel()))
    assert abs(s["angle_mean_deg"] - 30.0) < 0.3 and s["angle_std_deg"] < 1.0
    assert s["clipped_fraction"] == 0.0


def test_run_writes_geometry_per_epoch_and_resume_drops_later_rows(tiny_data_dir, tmp_path):
    run_dir = tmp_path / "run"
    assert run([*MLP, "--epochs", "2", "--ckpt_n", "1", "--keep_ckpts", "0"], tiny_data_dir, run_dir) == 0
    with open(run_dir / geometry_log.FILE, newline="") as f:
        assert tuple(next(csv.reader(f))) == COLUMNS
    log = read_geometry_log(run_dir)
    assert list(log["epoch"]) == [0, 0, 1, 1, 2, 2]
    assert list(log["layer"]) == ["fc1", "out"] * 3 and list(log["d"]) == [784, 32] * 3
    assert np.isnan(log["flip_ratio"][:2]).all() and (log["flip_ratio"][2:] >= 0).all()
    assert log["flip_ratio"][2] > 0, "training flipped no weight of fc1 in the first epoch"
    assert np.allclose(log["angle_mean_deg"][:2], 30, atol=3)  # uniform initialization
    # the last row is the final model's kernel
    _, model = runs.load_run(run_dir, "final")
    out = kernel_statistics(to_numpy(model.get_layer("out").kernel),
                            to_numpy(model.get_layer("out").quantized_kernel()))
    assert np.isclose(log["angle_mean_deg"][-1], out["angle_mean_deg"], rtol=1e-5)
    assert any((run_dir / runs.TB_DIR / geometry_log.TB_SUBDIR).glob("*tfevents*"))

    # interrupted after epoch 1: its epoch-2 rows (marked here) are dropped and written again
    lines = (run_dir / geometry_log.FILE).read_text().splitlines()
    lines[-1] = lines[-1].replace("out,32,", "out,32,999")
    (run_dir / geometry_log.FILE).write_text("\n".join(lines) + "\n")
    runs.checkpoint_path(run_dir, 2).unlink()
    (run_dir / runs.FINAL).unlink()
    assert run([*MLP, "--epochs", "2", "--ckpt_n", "1", "--keep_ckpts", "0"], tiny_data_dir, run_dir) == 0
    again = read_geometry_log(run_dir)
    assert list(again["epoch"]) == [0, 0, 1, 1, 2, 2]
    assert again["angle_mean_deg"].max() < 90
    np.testing.assert_array_equal(again["angle_mean_deg"][:4], log["angle_mean_deg"][:4])
    assert again["flip_ratio"][4] >= 0, "the resumed epoch counted no flips against its checkpoint"


def test_no_geometry_log_flag_and_old_runs(tiny_data_dir, tmp_path):
    assert run([*MLP, "--epochs", "1", "--no_geometry_log"], tiny_data_dir, tmp_path / "r") == 0
    assert not (tmp_path / "r" / geometry_log.FILE).exists()
    assert read_geometry_log(tmp_path / "r") is None


def test_config_without_the_new_fields_loads_with_todays_behaviour():
    old = RunConfig().resolve().to_dict()
    for key in ("threshold_weights", "threshold_activations", "bn_momentum", "bn_epsilon",
                "bn_scale", "rotate_first_layer", "no_geometry_log"):
        del old[key]
    old["threshold"] = 0.2
    c = RunConfig.from_dict(old)
    assert (c.threshold_weights, c.threshold_activations) == (0.2, 0.2)
    assert (c.bn_momentum, c.bn_epsilon, c.bn_scale, c.rotate_first_layer) == (0.9, 1e-4, 1, False)
    assert not c.no_geometry_log


def test_separate_thresholds_and_batch_norm_fields_reach_the_layers():
    c = config_from_args([*MLP, "--levels", "3", "--threshold", "0.1", "--threshold_activations",
                          "0.4", "--bn_momentum", "0.999", "--bn_epsilon", "1e-3", "--bn_scale", "0"])
    model = build_model(c)
    assert model.get_layer("fc1").threshold == 0.1 and model.get_layer("out").threshold == 0.1
    assert model.get_layer("fc1_act").threshold == 0.4
    bn = model.get_layer("fc1_bn")
    assert (bn.momentum, bn.epsilon, bn.scale, bn.center) == (0.999, 1e-3, False, True)
    assert [w.name for w in bn.trainable_weights] == ["beta"]
    c = config_from_args([*MLP, "--threshold_weights", "0.05"])
    assert (c.threshold_weights, c.threshold_activations) == (0.05, 0.0)
    default = build_model(config_from_args(MLP)).get_layer("out_bn")
    assert (default.momentum, default.epsilon, default.scale) == (0.9, 1e-4, True)


@pytest.mark.parametrize("argv, message", [
    (["--threshold_weights", "1.0"], "argument --threshold_weights: expected a number < 1, got '1.0'"),
    (["--threshold_activations", "-0.1"], "argument --threshold_activations: expected a number >= 0, got '-0.1'"),
    (["--bn_momentum", "1.0"], "argument --bn_momentum: expected a number < 1, got '1.0'"),
    (["--bn_scale", "2"], "argument --bn_scale: expected an integer in [0, 1], got '2'"),
])
def test_out_of_range_values_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        config_from_args([*MLP, *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: " + message) and err.count("\n") == 1


@pytest.mark.parametrize("argv, message", [
    (["--rotate_first_layer", "--continuous"], "--rotate_first_layer changes"),
    (["--rotate_first_layer", "--quantize_weights", "0", "1"], "--rotate_first_layer changes"),
])
def test_bad_new_fields(argv, message):
    with pytest.raises(BnnError, match=re.escape(message)):
        config_from_args([*MLP, *argv])
