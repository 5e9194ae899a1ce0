"""The figure of the weights' geometry through training, from a geometry.csv written here in the
training callback's format (one row per epoch and weight layer, epoch 0 the initialization)."""

import csv

import matplotlib

matplotlib.use("agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from bnn import plotting, report
from bnn.errors import BnnError

LAYERS = {"conv1": 27, "conv2": 36, "fc1": 1024, "out": 16}


def write_geometry_csv(run_dir, n_epochs=3):
    rows = []
    for epoch in range(n_epochs + 1):
        for i, (layer, d) in enumerate(LAYERS.items()):
            rows.append({"epoch": epoch, "layer": layer, "d": d, "angle_mean_deg": 30 + 2 * epoch + i,
                         "angle_std_deg": 1.0 + 0.1 * i, "flip_ratio": "" if epoch == 0 else 0.1 / epoch,
                         "weight_std": 0.05 + 0.01 * epoch, "clipped_fraction": 0.01 * epoch})
    rows.reverse()  # the reader must not rely on the file's order
    with open(run_dir / report.TRAINING_GEOMETRY, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=report.TRAINING_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def test_reader_gives_each_layer_its_epochs_in_order(tmp_path):
    assert report.read_training_geometry(tmp_path) is None  # a run made before geometry.csv
    write_geometry_csv(tmp_path, n_epochs=3)
    history = report.read_training_geometry(tmp_path)
    assert set(history) == set(LAYERS)
    fc1 = history["fc1"]
    np.testing.assert_array_equal(fc1["epoch"], [0, 1, 2, 3])
    np.testing.assert_allclose(fc1["angle_mean_deg"], [32, 34, 36, 38])
    np.testing.assert_allclose(fc1["flip_ratio"], [np.nan, 0.1, 0.05, 0.1 / 3])  # none before epoch 0
    assert fc1["d"][0] == 1024 and "layer" not in fc1


def test_reader_names_missing_columns(tmp_path):
    (tmp_path / report.TRAINING_GEOMETRY).write_text("epoch,layer,d\n0,conv1,27\n")
    with pytest.raises(BnnError, match="lacks the columns angle_mean_deg"):
        report.read_training_geometry(tmp_path)


def test_training_figure_has_the_reference_lines_and_every_layer(tmp_path):
    write_geometry_csv(tmp_path, n_epochs=2)
    history = report.read_training_geometry(tmp_path)
    fig, axes = plotting.plot_training_geometry(history, np.arccos(np.sqrt(2 / np.pi)), np.radians(30.0),
                                                save_path=tmp_path / "training")
    assert len(axes) == 4 and (tmp_path / "training.png").stat().st_size > 1000
    assert len(axes[1].get_lines()) == len(LAYERS)
    levels = sorted(round(l.get_ydata()[0], 2) for l in axes[0].get_lines() if len(set(l.get_ydata())) == 1)
    assert levels == [30.0, 37.07]
    fc1 = next(l for l in axes[0].get_lines() if l.get_label() == "fc1 (d = 1024)")
    np.testing.assert_allclose(fc1.get_ydata(), [32, 34, 36])  # fc1's angle, by epoch
    plt.close(fig)
