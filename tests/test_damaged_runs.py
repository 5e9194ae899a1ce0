"""Damaged run directories: found before anything changes, rebuilt from intact files where they
can be, refused in one line where not; no temporary file survives a resume."""

import json
import subprocess
from pathlib import Path

import keras
import numpy as np
import pytest

from bnn import runs
from bnn.files import atomic_write
from conftest import run

# Best validation epoch 2 of 4 (accuracy 1.0 from then on, ties keep the first), one checkpoint
# per epoch: best.keras is a hard link of the twins of checkpoints 2, 3 and 4, not of 1's.
ARGV = ["--data_set", "MNIST", "--conv", "--fc", "16", "--batch_size", "25", "--epochs", "4",
        "--ckpt_n", "1", "--keep_ckpts", "0", "--seed", "7", "--lr_start", "0.003"]
RANDOM = np.random.default_rng(5).bytes(300)


@pytest.fixture(scope="module")
def finished(data_dir, tmp_path_factory):
    """A finished run: (run_dir, its results.json)."""
    run_dir = tmp_path_factory.mktemp("runs") / "whole"
    assert run(ARGV, data_dir, run_dir) == 0
    results = json.loads((run_dir / runs.RESULTS).read_text())
    assert results["best_epoch"] == 2
    return run_dir, results


def copy_run(finished, tmp_path, killed_after=None):
    """A copy of the finished run (hard links kept, as a real run has them), optionally as a
    kill right after the checkpoint of ``killed_after`` leaves it."""
    run_dir = tmp_path / "run"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", str(finished[0]), str(run_dir)], check=True)
    if killed_after is not None:
        for epoch, path in runs.checkpoints(run_dir):
            if epoch > killed_after:
                path.unlink()
                for twin in runs.best_snapshot_paths(run_dir, epoch):
                    twin.unlink()
        (run_dir / runs.FINAL).unlink()
        (run_dir / runs.RESULTS).unlink()
    return run_dir


def replace(path, data):
    """Give ``path`` new contents as a new file (its hard links keep the old ones)."""
    path.unlink()
    path.write_bytes(data)


def same_results(run_dir, results):
    got = json.loads((run_dir / runs.RESULTS).read_text())
    keys = [k for k in results if "seconds" not in k]
    return {k: got.get(k) for k in keys} == {k: results[k] for k in keys}


def state(folder):
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in Path(folder).rglob("*")
            if p.is_file() and p.name != runs.LOCK}


def partials(run_dir):
    return [p for p in Path(run_dir).rglob("*") if ".partial" in p.name]


def test_a_resume_leaves_no_temporary_file(finished, data_dir, tmp_path):
    # A kill during the last checkpoint write: the twins are written, the checkpoint is not.
    run_dir = copy_run(finished, tmp_path)
    for name in (runs.FINAL, runs.RESULTS):
        (run_dir / name).unlink()
    runs.checkpoint_path(run_dir, 4).unlink()
    stale = [run_dir / ".best.partial.json", run_dir / runs.CKPT_DIR / ".epoch-0004.partial.keras",
             next((run_dir / runs.TB_DIR).iterdir()) / ".events.partial"]
    for path in stale:
        path.write_bytes(b"debris of a kill")
    assert run(ARGV, data_dir, run_dir) == 0
    assert partials(run_dir) == []
    assert same_results(run_dir, finished[1])


def test_an_interrupted_write_removes_its_temporary_file(tmp_path):
    def interrupted(tmp):
        Path(tmp).write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "x.keras", interrupted)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_a_checkpoint_write_leaves_no_temporary_file(data_dir, tmp_path, monkeypatch, capsys):
    save = keras.Model.save

    def interrupted_save(self, path, *args, **kwargs):
        if "epoch-0002" in str(path):
            Path(path).write_bytes(b"half a checkpoint")
            raise KeyboardInterrupt
        return save(self, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", interrupted_save)
    run_dir = tmp_path / "run"
    assert run(ARGV, data_dir, run_dir) == 130
    assert partials(run_dir) == []
    assert [e for e, _ in runs.checkpoints(run_dir)] == [1]


@pytest.mark.parametrize("name, damage, message", [
    (runs.CONFIG, RANDOM, "config.json is damaged (not text)"),
    (runs.CONFIG, b"[]", "config.json is damaged (a JSON list, not an object of flags)"),
    (runs.CONFIG, b'{"fc": [16]', "config.json is damaged (not valid JSON)"),
    (runs.LOG, RANDOM, "log.csv is damaged (not text)"),
    (runs.LOG, b"epoch,accuracy\n0,0.5\n1,zz\n", "log.csv is damaged (line 3 is not a row of it)"),
    ("geometry.csv", RANDOM, "geometry.csv is damaged (not text)"),
    ("geometry.csv", b"epoch,layer\n", "geometry.csv is damaged (line 1 is not its header)"),
], ids=["config-random", "config-list", "config-cut", "log-random", "log-bad-row", "geometry-random",
        "geometry-header"])
def test_damaged_files_are_refused_before_anything_changes(finished, data_dir, tmp_path, capsys,
                                                           name, damage, message):
    run_dir = copy_run(finished, tmp_path, killed_after=2)
    replace(run_dir / name, damage)
    before = state(run_dir)
    assert run(ARGV, data_dir, run_dir) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert "restore it" in err
    assert state(run_dir) == before, "the refused run changed files"


def test_every_damaged_file_is_named_in_the_one_line(finished, data_dir, tmp_path, capsys):
    run_dir = copy_run(finished, tmp_path, killed_after=2)
    replace(run_dir / runs.CONFIG, b"[]")
    replace(run_dir / runs.LOG, RANDOM)
    assert run(ARGV, data_dir, run_dir) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config.json is damaged" in err and "log.csv is damaged" in err


def test_a_log_cut_mid_row_keeps_no_broken_row(finished, data_dir, tmp_path, capsys):
    run_dir = copy_run(finished, tmp_path, killed_after=2)
    full = (run_dir / runs.LOG).read_bytes()
    lines = full.splitlines(keepends=True)
    # A kill while the row of epoch 3 (0-based 2) was written: the broken row is dropped.
    (run_dir / runs.LOG).write_bytes(b"".join(lines[:3]) + lines[3][:7])
    assert run(ARGV, data_dir, run_dir) == 0
    assert (run_dir / runs.LOG).read_bytes() == (finished[0] / runs.LOG).read_bytes()
    # Cut inside a row the checkpoint needs (epoch 2 of 2): rows are lost, so it is refused.
    run_dir = copy_run(finished, tmp_path / "again", killed_after=2)
    (run_dir / runs.LOG).write_bytes(b"".join(lines[:2]) + lines[2][:7])
    before = state(run_dir)
    capsys.readouterr()
    assert run(ARGV, data_dir, run_dir) == 2
    err = capsys.readouterr().err
    assert "log.csv is damaged (it ends at epoch 0, before the checkpoint of epoch 2)" in err
    assert state(run_dir) == before


@pytest.mark.parametrize("damage", ["deleted", "empty", "truncated", "list"])
def test_damaged_best_json_is_rebuilt_from_the_checkpoints_twin(finished, data_dir, tmp_path, capsys, damage):
    run_dir = copy_run(finished, tmp_path)
    path = run_dir / runs.BEST_INFO
    text = path.read_bytes()
    if damage == "deleted":
        path.unlink()
    else:
        replace(path, {"empty": b"", "truncated": text[:9], "list": b"[]"}[damage])
    assert run(ARGV, data_dir, run_dir) == 0
    out = capsys.readouterr().out
    assert f"best.json is {'missing' if damage == 'deleted' else 'damaged'}" in out
    assert "rebuilt from checkpoints/epoch-0004.best.json" in out
    assert path.read_bytes() == text
    assert same_results(run_dir, finished[1]), "results.json names another best epoch or model"


def test_deleted_best_keras_is_rebuilt_not_replaced_by_the_final_model(finished, data_dir, tmp_path, capsys):
    run_dir = copy_run(finished, tmp_path)
    (run_dir / runs.BEST).unlink()
    with pytest.raises(runs.BnnError, match="has best.json but no best.keras"):
        runs.load_run(run_dir, "best")
    assert run(ARGV, data_dir, run_dir) == 0
    assert "best.keras is missing: rebuilt from checkpoints/epoch-0004.best.keras" in capsys.readouterr().out
    results = json.loads((run_dir / runs.RESULTS).read_text())
    assert results["best_test_loss"] == finished[1]["best_test_loss"] != finished[1]["final_test_loss"]


def test_garbage_best_keras_is_found_before_training(finished, data_dir, tmp_path, capsys):
    run_dir = copy_run(finished, tmp_path, killed_after=2)
    replace(run_dir / runs.BEST, RANDOM)
    assert run(ARGV, data_dir, run_dir) == 0
    out = capsys.readouterr().out
    note = out.index("best.keras is damaged (not a complete .keras archive")
    assert note < out.index("resuming") < out.index("epoch 3/4")
    assert same_results(run_dir, finished[1])


def test_best_files_damaged_through_their_links_fall_back_to_an_older_checkpoint(
        finished, data_dir, tmp_path, capsys):
    """Written in place, the damage reaches the twins of checkpoints 2-4 (the same file): the
    run goes back to checkpoint 1, whose twins are another file, and repeats epochs 2-4."""
    run_dir = copy_run(finished, tmp_path)
    (run_dir / runs.BEST_INFO).write_bytes(b"[]")
    assert run(ARGV, data_dir, run_dir) == 0
    out = capsys.readouterr().out
    assert ("checkpoints/epoch-0004.best.json is damaged (not {\"epoch\": N, \"val_accuracy\": A}); "
            "checkpoints/epoch-0003.best.json is damaged") in out
    assert "resuming from the checkpoint of epoch 1 instead" in out
    assert same_results(run_dir, finished[1])
    assert json.loads((run_dir / runs.BEST_INFO).read_text()) == {"epoch": 2, "val_accuracy": 1.0}


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_checkpoint_falls_back_to_the_previous_one(finished, data_dir, tmp_path, capsys, damage):
    run_dir = copy_run(finished, tmp_path)
    path = runs.checkpoint_path(run_dir, 4)
    replace(path, path.read_bytes()[:5000] if damage == "truncated" else RANDOM)
    (run_dir / runs.FINAL).unlink()  # final.keras is the same file as the checkpoint
    assert run(ARGV, data_dir, run_dir) == 0
    out = capsys.readouterr().out
    assert ("checkpoints/epoch-0004.keras is damaged (not a complete .keras archive: truncated or "
            "overwritten): resuming from the checkpoint of epoch 3 instead") in out
    assert "resuming " + str(run_dir) + " after epoch 3" in out
    assert same_results(run_dir, finished[1])
    runs.load_model_file(path)


def test_no_intact_checkpoint_is_one_line(finished, data_dir, tmp_path, capsys):
    run_dir = copy_run(finished, tmp_path)
    for _, path in runs.checkpoints(run_dir):
        replace(path, RANDOM)
    before = state(run_dir)
    assert run(ARGV, data_dir, run_dir) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no checkpoint is left intact with its best-model copies" in err
    assert "checkpoints/epoch-0001.keras is damaged" in err
    assert state(run_dir) == before


def test_damaged_final_keras_of_a_finished_run_is_rebuilt(finished, data_dir, tmp_path, capsys):
    run_dir = copy_run(finished, tmp_path)
    replace(run_dir / runs.FINAL, RANDOM)
    assert run(ARGV, data_dir, run_dir) == 0
    assert "final.keras is damaged" in capsys.readouterr().out
    assert (run_dir / runs.FINAL).samefile(runs.checkpoint_path(run_dir, 4))
    assert same_results(run_dir, finished[1])


def test_reading_a_damaged_run_is_one_line(finished, tmp_path):
    run_dir = copy_run(finished, tmp_path)
    replace(run_dir / runs.CONFIG, RANDOM)
    with pytest.raises(runs.DamagedRunError, match=r"config.json is damaged \(not text\)"):
        runs.load_run(run_dir)


@pytest.mark.parametrize("name", [runs.LOG, "geometry.csv"])
def test_a_log_cut_inside_its_header_is_refused(finished, data_dir, tmp_path, capsys, name):
    run_dir = copy_run(finished, tmp_path, killed_after=2)
    replace(run_dir / name, (run_dir / name).read_bytes()[:4])
    assert run(ARGV, data_dir, run_dir) == 2
    assert f"{name} is damaged (it has no rows, before the checkpoint of epoch 2)" in capsys.readouterr().err


def test_a_deleted_log_is_said_lost_in_one_line(finished, data_dir, tmp_path, capsys):
    run_dir = copy_run(finished, tmp_path, killed_after=2)
    (run_dir / runs.LOG).unlink()
    assert run(ARGV, data_dir, run_dir) == 0
    assert "log.csv is missing: the run goes on without the rows of its first 2 epochs" in capsys.readouterr().out
    assert [line.split(",")[0] for line in (run_dir / runs.LOG).read_text().splitlines()] == ["epoch", "2", "3"]


@pytest.mark.parametrize("damage", ["deleted", "garbage"])
def test_damaged_twins_of_the_newest_checkpoint_are_rebuilt_from_the_best_model(
        finished, data_dir, tmp_path, capsys, damage):
    run_dir = copy_run(finished, tmp_path, killed_after=2)
    twin_model, twin_info = runs.best_snapshot_paths(run_dir, 2)
    if damage == "deleted":
        twin_model.unlink()
        twin_info.unlink()
    else:
        replace(twin_info, RANDOM)
    assert run(ARGV, data_dir, run_dir) == 0
    out = capsys.readouterr().out
    assert "checkpoints/epoch-0002.best" in out and "rebuilt from best.keras and best.json" in out
    assert "resuming " + str(run_dir) + " after epoch 2" in out
    assert same_results(run_dir, finished[1])
    assert twin_info.samefile(run_dir / runs.BEST_INFO) or twin_info.read_bytes() == (
        finished[0] / runs.BEST_INFO).read_bytes()


def test_an_epochs_geometry_rows_are_written_before_its_checkpoint(tmp_path):
    # A kill between the two writes then loses nothing: the resume rolls both logs back to the
    # previous checkpoint and runs the epoch again. The other order lost the epoch's rows for good.
    from bnn.config import config_from_args
    from bnn.train import GeometryLog
    from bnn.train import RunCheckpoint, _fit_callbacks

    config = config_from_args(["--data_set", "MNIST", "--conv", "--fc", "8", "--epochs", "2"])
    kinds = [type(c) for c in _fit_callbacks(config, tmp_path, None, 0, False, print)]
    assert kinds.index(GeometryLog) < kinds.index(RunCheckpoint)
