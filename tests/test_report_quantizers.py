"""The report's reference lines come from each layer's quantizer, never from the run's ``levels``:
checked on the small binary and ternary runs of tests/fixtures/legacy_runs."""

from pathlib import Path

import matplotlib

matplotlib.use("agg")

import numpy as np
import pytest

from bnn import report, theory

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "legacy_runs"


def analysed(name, data_dir, out_dir):
    r = report.open_run(FIXTURES / name, 20, out_dir=out_dir, data_dir=data_dir, print_fn=lambda *a: None)
    report.analyse(r, cache=False, print_fn=lambda *a: None)  # the fixture folder stays untouched
    return r


def vertical_lines(ax, style):
    return sorted(float(l.get_xdata()[0]) for l in ax.get_lines()
                  if l.get_linestyle() == style and len(set(l.get_xdata())) == 1)


def test_sign_layers_share_one_line_at_the_gaussian_angle(tiny_data_dir, tmp_path):
    r = analysed("binary-mlp", tiny_data_dir, tmp_path)
    fig, axes = report.figure_angles(r)
    assert vertical_lines(axes[0], "--") == [pytest.approx(37.0722, abs=1e-3)]
    assert vertical_lines(axes[0], ":") == [pytest.approx(30.0, abs=1e-3)]
    assert "Gaussian theory of sign" in axes[1].get_legend_handles_labels()[1][-2]
    fig, ax = report.figure_angle_spread(r)
    coefficient_line = [l for l in ax.get_lines() if l.get_linestyle() == "--"][0]
    d = coefficient_line.get_xdata()
    np.testing.assert_allclose(coefficient_line.get_ydata(),
                               np.degrees(theory.BINARY_ANGLE_STD_COEFFICIENT / np.sqrt(d)), rtol=1e-6)


def test_ternary_layers_get_a_line_each_at_their_own_threshold(tiny_data_dir, tmp_path):
    r = analysed("ternary-conv-rotated", tiny_data_dir, tmp_path)
    layers = report._quantized_layers(r)
    expected = [l.theory_angle() for l in layers]
    fig, axes = report.figure_angles(r)
    assert len(set(np.round(expected, 9))) > 1  # absolute thresholds: the angle depends on each layer's spread
    np.testing.assert_allclose(vertical_lines(axes[0], "--"), sorted(np.degrees(expected)), atol=1e-6)


def test_no_theory_draws_no_line():
    assert report._reference([0.5, None]) is None
    assert report._reference([0.5, 0.5]) == 0.5
    assert report._reference([0.5, 0.6]) == [0.5, 0.6]
