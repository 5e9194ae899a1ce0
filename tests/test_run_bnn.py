"""End to end: run_bnn.py trains, writes its run directory, refuses bad input, and resumes."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from bnn import runs
from bnn.config import RunConfig
from bnn.layer_tensors import inspect_network
from bnn.train import learning_rate
from conftest import REPO, run
from processes import kill_after_checkpoint

MLP = ["--data_set", "MNIST", "--conv", "--fc", "32", "--batch_size", "20"]


def log_rows(run_dir):
    with open(run_dir / runs.LOG, newline="") as f:
        return list(csv.DictReader(f))


def snapshot(folder):
    return {p: p.stat().st_mtime_ns for p in Path(folder).rglob("*") if p.is_file() and p.name != runs.LOCK}


def test_mlp_run_directory_and_learning(tiny_data_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert run([*MLP, "--epochs", "4", "--ckpt_n", "2", "--lr_start", "0.01", "--lr_end", "0.001"],
               tiny_data_dir, run_dir) == 0
    out = capsys.readouterr().out
    assert out.count("epoch ") >= 4 and "test accuracy" in out
    assert out.count("s (validation ") == 4  # every epoch line says what its validation took
    config = RunConfig.load(run_dir / runs.CONFIG)
    assert config.fc == [32] and config.epochs == 4 and config.data_set == "MNIST"
    assert [e for e, _ in runs.checkpoints(run_dir)] == [2, 4]
    for name in (runs.BEST, runs.BEST_INFO, runs.FINAL, runs.RESULTS):
        assert (run_dir / name).exists(), name
    assert any((run_dir / runs.TB_DIR).rglob("*tfevents*"))
    rows = log_rows(run_dir)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    np.testing.assert_allclose([float(r["learning_rate"]) for r in rows],
                               [learning_rate(config, e) for e in range(4)], rtol=1e-5)
    assert learning_rate(config, 0) == 0.01 and np.isclose(learning_rate(config, 3), 0.001)
    results = json.loads((run_dir / runs.RESULTS).read_text())
    best = json.loads((run_dir / runs.BEST_INFO).read_text())
    assert results["best_epoch"] == best["epoch"]
    assert results["n_test"] == 50 and results["n_train"] + results["n_val"] == 200
    # the fake classes are bright squares: a binary MLP learns them well above chance (0.1)
    assert results["best_test_accuracy"] > 0.5

    # a run loads from its path alone, and the inspection API sees binary tensors
    loaded_config, model = runs.load_run(run_dir)
    assert loaded_config == config
    from data.load_data import load_data
    x = load_data("MNIST", tiny_data_dir).x_test[:5]
    layers = inspect_network(model, x)
    assert [l.name for l in layers] == ["fc1", "out"]
    assert set(np.unique(layers[0].activation)) == {-1.0, 1.0}
    assert layers[1].inputs.shape == (5, 32) and layers[0].dim == 784


def test_conv_ternary_and_continuous_runs(tiny_data_dir, tmp_path):
    conv = ["--data_set", "cifar-10", "--conv", "4", "8", "--fc", "16", "--epochs", "1",
            "--batch_size", "20"]
    assert run([*conv, "--levels", "3", "--threshold", "0.02"], tiny_data_dir, tmp_path / "t") == 0
    _, model = runs.load_run(tmp_path / "t")
    assert set(np.unique(keras.ops.convert_to_numpy(model.get_layer("conv2").quantized_kernel()))) == {-1.0, 0.0, 1.0}
    assert model.get_layer("conv2_pool") is not None
    assert run([*conv, "--continuous"], tiny_data_dir, tmp_path / "c") == 0
    _, model = runs.load_run(tmp_path / "c")
    kernel = model.get_layer("conv1").kernel.numpy()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.get_layer("conv1").quantized_kernel()), kernel)


@pytest.mark.parametrize("argv, message", [
    (["--data_set", "imagenet"], "unknown data set 'imagenet'"),
    (["--levels", "4"], "argument --levels: expected an integer in [2, 3]"),
    (["--levels", "3", "--threshold", "1.5"], "argument --threshold: expected a number < 1"),
    (["--conv", "8", "8", "--max_pool", "1"], "--max_pool needs one 0/1 per conv layer"),
    ([*MLP, "--param_file", "nowhere.keras"], "--param_file nowhere.keras does not exist"),
    ([*MLP, "--levels", "3", "--threshold", "0.5"], "all its weights ternarize to 0"),
])
def test_bad_input_exits_2_with_one_line(tiny_data_dir, tmp_path, capsys, argv, message):
    assert run(argv, tiny_data_dir, tmp_path / "run") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_missing_and_corrupt_data_say_what_to_run(tmp_path, capsys):
    assert run(MLP, tmp_path / "empty", tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "python data/download_data.py --data_set MNIST" in err
    from fake_data import write_mnist
    write_mnist(tmp_path / "bad", n_train=20, n_test=10)
    images = tmp_path / "bad" / "mnist" / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:-100])  # truncated download
    assert run(MLP, tmp_path / "bad", tmp_path / "run2") == 2
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err


def test_existing_run_with_other_architecture_is_left_alone(tiny_data_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert run([*MLP, "--epochs", "1"], tiny_data_dir, run_dir) == 0
    before = snapshot(run_dir)
    capsys.readouterr()
    assert run(["--data_set", "MNIST", "--conv", "--fc", "64", "--epochs", "1"], tiny_data_dir, run_dir) == 2
    err = capsys.readouterr().err
    assert "another configuration" in err and "fc: [32] there, [64] now" in err
    assert snapshot(run_dir) == before
    # a foreign folder is not taken over either
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert run(MLP, tiny_data_dir, tmp_path / "mine") == 2
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_failed_start_does_not_lock_the_run_directory(tiny_data_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert run([*MLP, "--levels", "3", "--threshold", "0.5"], tiny_data_dir, run_dir) == 2
    assert run([*MLP, "--levels", "3", "--threshold", "0.01", "--epochs", "1"], tiny_data_dir, run_dir) == 0
    assert RunConfig.load(run_dir / runs.CONFIG).threshold == 0.01
    assert run(MLP, tmp_path / "no-data", tmp_path / "run2") == 2
    assert not (tmp_path / "run2").exists(), "a run directory was made before the data was found"


def test_param_file_starts_from_saved_weights(tiny_data_dir, tmp_path, capsys):
    assert run([*MLP, "--epochs", "1"], tiny_data_dir, tmp_path / "a") == 0
    assert run([*MLP, "--epochs", "1", "--param_file", str(tmp_path / "a")], tiny_data_dir, tmp_path / "b") == 0
    assert "starting from the weights of" in capsys.readouterr().out
    assert run(["--data_set", "MNIST", "--conv", "--fc", "16", "--epochs", "1", "--param_file",
                str(tmp_path / "a" / runs.FINAL)], tiny_data_dir, tmp_path / "c") == 2
    assert "has another architecture" in capsys.readouterr().err


def test_resume_after_kill(tiny_data_dir, tmp_path):
    """kill -9 mid-run, then the same command continues from the last complete checkpoint."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, str(REPO / "run_bnn.py"), *MLP, "--epochs", "30", "--ckpt_n", "1",
           "--keep_ckpts", "0", "--data_dir", str(tiny_data_dir), "--run_dir", str(run_dir)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = kill_after_checkpoint(cmd, env, run_dir, epoch=3, timeout=120)
    assert done < 30, "the run finished before it could be killed"
    # debris of a checkpoint write cut short must be ignored
    (run_dir / runs.CKPT_DIR / f".epoch-{done + 1:04d}.partial.keras").write_bytes(b"half a zip")

    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    resumed_at = int(out.stdout.split("after epoch ")[1].split()[0])
    assert resumed_at >= done
    rows = log_rows(run_dir)
    assert [int(r["epoch"]) for r in rows] == list(range(30)), "each epoch logged exactly once"
    config = RunConfig.load(run_dir / runs.CONFIG)
    np.testing.assert_allclose([float(r["learning_rate"]) for r in rows],
                               [learning_rate(config, e) for e in range(30)], rtol=1e-5)
    assert [e for e, _ in runs.checkpoints(run_dir)] == list(range(1, 31))
    assert (run_dir / runs.FINAL).exists() and (run_dir / runs.RESULTS).exists()


def test_softmax_loss_trains(tiny_data_dir, tmp_path):
    run_dir = tmp_path / "run"
    assert run([*MLP, "--epochs", "2", "--loss_mode", "softmax", "--lr_start", "0.01"], tiny_data_dir, run_dir) == 0
    _, model = runs.load_run(run_dir)
    assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy) and model.loss.from_logits
    # The test loss in results.json is the cross-entropy of the model's scores, computed here.
    from data.load_data import load_data
    d = load_data("MNIST", tiny_data_dir)
    scores = model.predict(d.x_test, verbose=0).astype(np.float64)
    log_p = scores - np.log(np.exp(scores - scores.max(1, keepdims=True)).sum(1, keepdims=True)) - scores.max(1, keepdims=True)
    results = json.loads((run_dir / runs.RESULTS).read_text())
    np.testing.assert_allclose(results["best_test_loss"], -log_p[np.arange(len(d.y_test)), d.y_test].mean(), rtol=1e-4)
    assert results["best_test_accuracy"] > 0.5


def test_checkpoint_pruning_keeps_the_newest_and_their_twins(tiny_data_dir, tmp_path):
    run_dir = tmp_path / "run"
    argv = [*MLP, "--epochs", "5", "--ckpt_n", "1", "--keep_ckpts", "2"]
    assert run(argv, tiny_data_dir, run_dir) == 0
    assert [e for e, _ in runs.checkpoints(run_dir)] == [4, 5]
    assert sorted(p.name for p in (run_dir / runs.CKPT_DIR).iterdir()) == [
        "epoch-0004.best.json", "epoch-0004.best.keras", "epoch-0004.keras",
        "epoch-0005.best.json", "epoch-0005.best.keras", "epoch-0005.keras"]
    # Killed after checkpoint 4: the pruned run resumes from it and prunes again.
    runs.checkpoint_path(run_dir, 5).unlink()
    for name in (runs.FINAL, runs.RESULTS):
        (run_dir / name).unlink()
    log = (run_dir / runs.LOG).read_text()
    assert run(argv, tiny_data_dir, run_dir) == 0
    assert [e for e, _ in runs.checkpoints(run_dir)] == [4, 5]
    assert (run_dir / runs.LOG).read_text() == log
    assert (run_dir / runs.FINAL).samefile(runs.checkpoint_path(run_dir, 5))


def test_debug_run_end_to_end(tiny_data_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert run(["--debug", "--data_set", "MNIST", "--fc", "16", "--conv"], tiny_data_dir, run_dir) == 0
    out = capsys.readouterr().out
    assert "for 2 epochs" in out and "epoch 2/2" in out and "test accuracy" in out
    config = RunConfig.load(run_dir / runs.CONFIG)
    assert config.debug and config.epochs == 2
    assert [int(r["epoch"]) for r in log_rows(run_dir)] == [0, 1]
    results = json.loads((run_dir / runs.RESULTS).read_text())
    assert (results["n_train"], results["n_val"], results["n_test"]) == (180, 20, 50)
