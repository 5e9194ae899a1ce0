"""Comparing the quantization angle through training across runs (bnn.trajectory), on geometry.csv
files written here in the training callback's format."""

import csv
import subprocess
import sys

import numpy as np
import pytest

from bnn import trajectory
from bnn.report import TRAINING_COLUMNS, TRAINING_GEOMETRY

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def write_run(run_dir, angles):
    """A run directory whose geometry.csv holds ``angles[layer][epoch]`` (deg) for layers of d 27 and 1024."""
    run_dir.mkdir()
    dims = {"conv1": 27, "fc1": 1024}
    with open(run_dir / TRAINING_GEOMETRY, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=TRAINING_COLUMNS)
        writer.writeheader()
        for layer, values in angles.items():
            for epoch, a in enumerate(values):
                writer.writerow({"epoch": epoch, "layer": layer, "d": dims[layer], "angle_mean_deg": a,
                                 "angle_std_deg": 1.0, "flip_ratio": "" if epoch == 0 else 0.01,
                                 "weight_std": 0.05, "clipped_fraction": 0.0})
    return run_dir


@pytest.fixture
def runs(tmp_path):
    long = write_run(tmp_path / "long", {"conv1": [30, 33, 36, 37.5, 38, 39], "fc1": [30, 31, 32, 33, 34, 35]})
    short = write_run(tmp_path / "short", {"conv1": [30, 31, 31.5], "fc1": [30, 30.5, 30.6]})
    return long, short


def test_first_epoch_at_the_gaussian_angle(runs):
    history = trajectory.load_histories([runs[0]])["long"]
    assert trajectory.first_epoch_at(history, 37.07) == {"conv1": 3, "fc1": None}


def test_table_shows_the_chosen_epochs_each_runs_last_and_when_it_reached_the_limit(runs):
    table = trajectory.trajectory_table(trajectory.load_histories(runs, ["paper", "compressed"]), epochs=[0, 1, 4])
    lines = table.splitlines()
    assert lines[0] == ("| layer (d) | paper: epoch 0 | paper: epoch 1 | paper: epoch 4 | paper: epoch 5 | "
                        "paper: reaches 37.07° | compressed: epoch 0 | compressed: epoch 1 | compressed: epoch 2 | "
                        "compressed: reaches 37.07° |")
    assert lines[2] == "| conv1 (27) | 30.00 | 33.00 | 38.00 | 39.00 | epoch 3 | 30.00 | 31.00 | 31.50 | no (max 31.50) |"
    assert lines[3].startswith("| fc1 (1024) | 30.00 | 31.00 | 34.00 | 35.00 | no (max 35.00) |")


def test_figure_has_a_panel_per_layer_and_a_line_per_run(runs, tmp_path):
    import matplotlib

    matplotlib.use("agg")
    fig, axes = trajectory.plot_angle_trajectories(trajectory.load_histories(runs), save_path=tmp_path / "t")
    panels = [ax for ax in axes.flat if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["conv1 (d = 27)", "fc1 (d = 1024)"]
    data_lines = [l for l in panels[0].get_lines() if len(set(l.get_ydata())) > 1]
    np.testing.assert_allclose(data_lines[1].get_ydata(), [30, 31, 31.5])
    assert (tmp_path / "t.png").stat().st_size > 1000


def test_cli_writes_table_and_figure_and_refuses_a_run_without_log(runs, tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "bnn.trajectory", *map(str, runs), "--out_dir", str(out)],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (out / "trajectory.md").read_text().startswith("| layer (d) | long: epoch 0")
    assert (out / "trajectory.png").exists()
    (tmp_path / "empty").mkdir()
    done = subprocess.run([sys.executable, "-m", "bnn.trajectory", str(tmp_path / "empty")],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: ") and "no geometry.csv" in done.stderr
