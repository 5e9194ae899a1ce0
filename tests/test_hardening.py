"""Hardening: a resumed run is the same run, failures are one line, nothing is lost."""

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from bnn import runs, train
from bnn.config import config_from_args
from conftest import REPO, run

# Dropout on input and hidden layer, so the test sees whether dropout's randomness repeats.
ARGV = ["--data_set", "MNIST", "--conv", "--fc", "16", "--batch_size", "25", "--epochs", "3",
        "--ckpt_n", "1", "--keep_ckpts", "0", "--dropout_in", "0.1", "--dropout_hidden", "0.2",
        "--seed", "7"]


def strict_json(path):
    def refuse(constant):
        raise ValueError(f"{path} holds {constant}")
    return json.loads(Path(path).read_text(), parse_constant=refuse)


def final_weights(run_dir):
    return runs.load_model_file(run_dir / runs.FINAL).get_weights()


def kill_after(run_dir, epoch):
    """Leave ``run_dir`` as a kill right after the checkpoint of ``epoch`` would (and worse:
    log rows, best model and TensorBoard events of later epochs stay behind)."""
    for e, path in runs.checkpoints(run_dir):
        if e > epoch:
            path.unlink()
            for snapshot in runs.best_snapshot_paths(run_dir, e):
                snapshot.unlink(missing_ok=True)
    (run_dir / runs.FINAL).unlink()
    (run_dir / runs.RESULTS).unlink()


def epoch_events(run_dir):
    """``{(writer, tag): [steps]}`` of the epoch summaries in a run's TensorBoard folder."""
    import tensorflow as tf

    found = {}
    for path in (run_dir / runs.TB_DIR).rglob("*tfevents*"):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for v in event.summary.value:
                found.setdefault((path.parent.name, v.tag), []).append(event.step)
    return {k: sorted(v) for k, v in found.items()}


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory):
    """A 3-epoch run that nobody stopped: (run_dir, log text, best.json, final weights, results)."""
    run_dir = tmp_path_factory.mktemp("runs") / "whole"
    assert run(ARGV, data_dir, run_dir) == 0
    return (run_dir, (run_dir / runs.LOG).read_text(), strict_json(run_dir / runs.BEST_INFO),
            final_weights(run_dir), strict_json(run_dir / runs.RESULTS))


def test_resumed_run_repeats_the_uninterrupted_one(uninterrupted, data_dir, tmp_path):
    _, log, best, weights, results = uninterrupted
    run_dir = tmp_path / "resumed"
    assert run(ARGV, data_dir, run_dir) == 0
    for stop in (1, 2):
        kill_after(run_dir, stop)
        assert run(ARGV, data_dir, run_dir) == 0
        assert (run_dir / runs.LOG).read_text() == log, f"log.csv differs after a stop at {stop}"
        assert strict_json(run_dir / runs.BEST_INFO) == best
        for a, b in zip(final_weights(run_dir), weights):
            np.testing.assert_array_equal(a, b)
        got = strict_json(run_dir / runs.RESULTS)
        assert {k: v for k, v in got.items() if "seconds" not in k} == {
            k: v for k, v in results.items() if "seconds" not in k}
        for (writer, tag), steps in epoch_events(run_dir).items():
            if tag.startswith("epoch_"):
                assert steps == [0, 1, 2], f"TensorBoard shows {writer}/{tag} at steps {steps}"


def test_best_model_of_epochs_after_the_checkpoint_is_rolled_back(uninterrupted, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted[0], run_dir)
    kill_after(run_dir, 1)
    runs.atomic_write_json({"epoch": 3, "val_accuracy": 2.0}, run_dir / runs.BEST_INFO)
    plan = runs.inspect_run(run_dir)
    assert plan.epoch == 1
    runs.rebuild_best(run_dir, plan)
    snapshot_model, snapshot_info = runs.best_snapshot_paths(run_dir, 1)
    assert strict_json(run_dir / runs.BEST_INFO) == strict_json(snapshot_info)
    assert strict_json(snapshot_info)["epoch"] == 1
    assert (run_dir / runs.BEST).read_bytes() == snapshot_model.read_bytes()


def test_killed_before_final_link_the_rerun_finishes(uninterrupted, data_dir):
    run_dir, results = uninterrupted[0], uninterrupted[4]
    (run_dir / runs.FINAL).unlink()
    (run_dir / runs.RESULTS).unlink()
    assert run(ARGV, data_dir, run_dir) == 0
    assert (run_dir / runs.FINAL).samefile(runs.checkpoint_path(run_dir, 3))
    got = strict_json(run_dir / runs.RESULTS)
    for key in ("final_test_accuracy", "final_test_loss", "best_test_accuracy", "best_epoch"):
        assert got[key] == results[key], key


def test_non_finite_loss_stops_with_exit_3_and_keeps_the_last_checkpoint(
        data_dir, tmp_path, capsys, monkeypatch):
    seed_epoch = train._seed_epoch

    def poison_second_epoch(model, seed, epoch):
        if epoch == 1:
            gamma = model.get_layer("out_bn").gamma
            gamma.assign(np.full(gamma.shape, np.nan, "float32"))
        return seed_epoch(model, seed, epoch)

    monkeypatch.setattr(train, "_seed_epoch", poison_second_epoch)
    run_dir = tmp_path / "run"
    assert run(ARGV, data_dir, run_dir) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the loss became nan in epoch 2") and "\n" not in err
    assert [e for e, _ in runs.checkpoints(run_dir)] == [1]
    assert strict_json(run_dir / runs.BEST_INFO)["epoch"] == 1
    assert np.all(np.isfinite(runs.load_model_file(run_dir / runs.BEST).get_layer("out_bn").gamma))
    assert not (run_dir / runs.RESULTS).exists() and not (run_dir / runs.FINAL).exists()
    assert len((run_dir / runs.LOG).read_text().splitlines()) == 2  # header and epoch 1
    for path in run_dir.rglob("*.json"):
        strict_json(path)


def test_results_json_is_strict_json(tmp_path):
    runs.atomic_write_json({"a": float("nan"), "b": [float("inf"), 1.5]}, tmp_path / "r.json")
    assert strict_json(tmp_path / "r.json") == {"a": None, "b": [None, 1.5]}


def test_second_process_is_refused_and_a_dead_ones_lock_is_not(data_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; os.makedirs(sys.argv[1]); "
         "fd = os.open(os.path.join(sys.argv[1], '.lock'), os.O_RDWR | os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'%d' % os.getpid()); "
         "print('locked', flush=True); time.sleep(120)", str(run_dir)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run([*ARGV, "--epochs", "1"], data_dir, run_dir) == 2
        err = capsys.readouterr().err.strip()
        assert f"run directory {run_dir} in use by process {holder.pid}" in err and "\n" not in err
        assert sorted(p.name for p in run_dir.iterdir()) == [runs.LOCK], "the refused run wrote files"
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    config = config_from_args([*ARGV, "--run_dir", str(run_dir)])
    assert runs.prepare_run_dir(config) == run_dir  # the lock died with its process
    runs.release_run_dir(run_dir)


@pytest.mark.parametrize("argv", [
    ["--param_file", "nowhere.keras"],
    ["--conv", "--fc", "8", "--param_file", "MISMATCHED"],
])
def test_failed_start_creates_nothing(uninterrupted, data_dir, tmp_path, capsys, argv):
    argv = [str(uninterrupted[0] / runs.FINAL) if a == "MISMATCHED" else a for a in argv]
    assert run([*ARGV, *argv], data_dir, tmp_path / "run") == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_impossible_run_directories_are_one_line(data_dir, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    for run_dir in (tmp_path / "file", tmp_path / "file" / "under", Path("/proc/bnn-x")):
        assert run(ARGV, data_dir, run_dir) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "--run_dir" in err
    assert (tmp_path / "file").read_text() == "not a folder"


def test_full_disk_mid_run_exits_1_and_keeps_the_previous_checkpoint(
        data_dir, tmp_path, capsys, monkeypatch):
    save = keras.Model.save
    calls = []

    def save_until_disk_full(self, path, *args, **kwargs):
        calls.append(path)
        if "epoch-0002" in str(path):
            Path(path).write_bytes(b"half a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return save(self, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", save_until_disk_full)
    run_dir = tmp_path / "run"
    assert run(ARGV, data_dir, run_dir) == 1
    err = capsys.readouterr().err.strip()
    assert "no space left" in err and "\n" not in err
    assert not [p for p in run_dir.rglob("*") if ".partial" in p.name], "a temporary file was left"
    assert [e for e, _ in runs.checkpoints(run_dir)] == [1]
    runs.load_model_file(runs.checkpoint_path(run_dir, 1))
    monkeypatch.undo()
    assert run(ARGV, data_dir, run_dir) == 0  # room again: the same command finishes the run
    assert [e for e, _ in runs.checkpoints(run_dir)] == [1, 2, 3]


def test_plain_keras_loads_our_checkpoints_after_import_bnn_layers(uninterrupted):
    """``import bnn`` stays light; ``import bnn.layers`` registers every custom object with Keras."""
    code = ("import sys, bnn, bnn.geometry, bnn.theory\n"
            "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules\n"
            "import keras, bnn.layers\n"
            "model = keras.saving.load_model(sys.argv[1])\n"
            "print(model.name, model.loss.__name__)")
    out = subprocess.run([sys.executable, "-c", code, str(uninterrupted[0] / runs.FINAL)],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["bnn_binary", "squared_hinge"]


@pytest.mark.parametrize("first", ["quantizers", "constraints", "layers", "losses"])
def test_any_bnn_module_may_be_the_first_to_load_keras(first):
    """Keras first loaded from inside a module that bnn.layers needs: no circular import, and
    every custom object is registered once bnn.layers is imported."""
    code = (f"import bnn.{first}, bnn.layers, keras\n"
            "print(*(keras.saving.get_registered_object(f'bnn>{n}') is not None\n"
            "        for n in ('QuantDense', 'QuantConv2D', 'QuantActivation', 'Clip', 'squared_hinge')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True"] * 5


def test_output_starts_with_the_programs_own_line(tmp_path):
    """No TensorFlow start-up logging before (or instead of) the one-line error."""
    out = subprocess.run([sys.executable, "run_bnn.py", "--data_set", "MNIST", "--data_dir",
                          str(tmp_path / "no-data"), "--run_dir", str(tmp_path / "run")],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, out.stderr
