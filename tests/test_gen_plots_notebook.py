"""Run gen_plots.ipynb headless on tiny binary and ternary runs made here, and check what it writes.

The runs train for an epoch or two on the tiny data sets of ``fake_data.py`` (in the real file
formats); the notebook reads everything else from the run directories. The binary run has the
``geometry.csv`` training writes; the ternary one is trained with ``--no_geometry_log``, as a run
without the file. A second run of the notebook reads the analysis cache (`bnn.analysis_cache`).
"""

import json
import os
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

import run_bnn
from bnn import analysis_cache, report, runs, theory
from bnn.errors import BnnError
from fake_data import write_cifar10, write_mnist

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO_ROOT / "gen_plots.ipynb"
RUNS = {
    # binary: a small conv net on MNIST, so conv and dense layers are both covered
    "binary": ["--data_set", "MNIST", "--conv", "4", "8", "--fc", "16", "--epochs", "2"],
    "ternary": ["--data_set", "cifar-10", "--conv", "4", "8", "--fc", "16", "--epochs", "1",
                "--levels", "3", "--threshold", "0.02", "--no_geometry_log"],
}
N_TEST = {"binary": 50, "ternary": 20}  # test images of the tiny data sets
# The notebook writes PNG alone by default; the ternary run asks for PDF too.
FORMATS_ENV = {"binary": {}, "ternary": {"BNN_FIGURE_FORMATS": "png pdf"}}


def execute(env, nb=None):
    """Execute the notebook (``nb``, in place, or read afresh) with ``env`` added to the environment."""
    nb = nbformat.read(NOTEBOOK, as_version=4) if nb is None else nb
    client = NotebookClient(nb, kernel_name="python3", timeout=300,
                            resources={"metadata": {"path": str(REPO_ROOT)}})
    client.execute(env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env})
    return nb


def stdout(nb):
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                   if o.get("name") == "stdout")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    write_mnist(folder, n_train=200, n_test=N_TEST["binary"], seed=0)
    write_cifar10(folder, n_per_batch=20, n_test=N_TEST["ternary"], seed=0)
    return folder


@pytest.fixture(scope="module")
def run_dirs(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for mode, argv in RUNS.items():
        assert run_bnn.main([*argv, "--batch_size", "20", "--data_dir", str(data_dir),
                             "--run_dir", str(root / mode)]) == 0
    # both branches of the notebook's training-geometry section are taken
    assert (root / "binary" / report.TRAINING_GEOMETRY).is_file()
    assert not (root / "ternary" / report.TRAINING_GEOMETRY).exists()
    return {mode: root / mode for mode in RUNS}


@pytest.fixture(scope="module")
def executed(run_dirs, tmp_path_factory):
    """``executed(mode)``: (numbers in geometry.json, output folder, executed notebook) for a tiny run,
    the notebook executed once per mode."""
    done = {}

    def get(mode):
        if mode not in done:
            shutil.rmtree(run_dirs[mode] / analysis_cache.CACHE_DIR, ignore_errors=True)  # a first run
            out_dir = tmp_path_factory.mktemp(f"figures-{mode}")
            nb = execute({"BNN_RUN_DIR": str(run_dirs[mode]), "BNN_OUT_DIR": str(out_dir), "BNN_N_IMAGES": "500",
                          **FORMATS_ENV[mode]})
            done[mode] = json.loads((out_dir / report.NUMBERS_FILE).read_text()), out_dir, nb
        return done[mode]

    return get


def test_committed_notebook_has_no_outputs_and_a_parameters_cell():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert "BNN_RUN_DIR" in code[0].source and "BNN_N_IMAGES" in code[0].source
    assert all(c.outputs == [] and c.execution_count is None for c in code)


@pytest.mark.parametrize("mode", list(RUNS))
def test_every_layer_has_sensible_numbers(executed, run_dirs, mode):
    numbers, _, nb = executed(mode)
    config = runs.RunConfig.load(run_dirs[mode] / runs.CONFIG)
    assert list(numbers["layers"]) == config.layer_names()
    assert numbers["mode"] == mode and numbers["levels"] == config.levels
    for name, layer in numbers["layers"].items():
        for key in ("angle_mean", "angle_peak"):
            assert 0 < layer[key] < np.pi / 2, (name, key)
        assert 0 < layer["angle_std"] < np.pi / 2
        assert layer["angle_mean_deg"] == pytest.approx(np.degrees(layer["angle_mean"]))
        for fit in ("weights", "permuted", "activations"):
            if layer[fit] is not None:
                assert -1 <= layer[fit]["r"] <= 1, (name, fit)
        # dot products with binary and continuous weights correlate even in a tiny net, strongly once
        # the filters have a few dozen dimensions (MNIST's conv1 has d = 9)
        assert layer["weights"]["r"] > (0.5 if layer["d"] >= 16 else 0.2) and layer["weights"]["slope"] > 0, name
        assert (layer["activations"] is None) == (name == "conv1")
        assert sum(layer["value_fractions"].values()) == pytest.approx(1.0)
        if mode == "binary":
            assert layer["zero_fraction"] == 0
            assert layer["angle_theory"] == pytest.approx(theory.binary_limit_angle())
        else:
            t = 0.02 / layer["weight_std"]
            assert layer["threshold_in_std"] == pytest.approx(t)
            assert layer["angle_theory"] == pytest.approx(theory.ternary_angle(t))
    if mode == "ternary":
        assert all(layer["zero_fraction"] > 0 for layer in numbers["layers"].values())
        for name, layer in numbers["layers"].items():
            assert layer["weight_threshold_in_std"] == pytest.approx(0.02 / layer["weight_std"])
            if name != "out":  # batch-normed activations have a spread near 1: 0.02 is a small share of it
                assert layer["activation_threshold_in_std"] == pytest.approx(0.02 / layer["activation_std"])
                assert layer["activation_zero_fraction"] < layer["weight_zero_fraction"]
        assert "ternary thresholds in units of the spread" in stdout(nb)
    # the output layer has no quantizer: nothing counts as a changed quantized activation there
    assert numbers["layers"]["out"]["next_quantizer_differs"] is None
    assert all(0 <= layer["next_quantizer_differs"]["weights"] <= 1 for name, layer in numbers["layers"].items()
               if name != "out")
    # the first layer is always compared with its generalized binarization (binary weights)
    first = numbers["layers"]["conv1"]["rotation"]
    if mode == "binary":
        assert first["d"] == 9 and 0 < first["rotated"]["angle_mean_deg"] < 90 and -1 <= first["rotated"]["r"] <= 1
        assert first["plain"]["angle_mean_deg"] == pytest.approx(numbers["layers"]["conv1"]["angle_mean_deg"])
    else:
        assert first is None


@pytest.mark.parametrize("mode", list(RUNS))
def test_all_test_images_are_used_when_fewer_than_asked(executed, mode):
    numbers, _, nb = executed(mode)
    assert numbers["n_images_requested"] == 500 and numbers["n_images"] == N_TEST[mode]
    assert f"holds only {N_TEST[mode]}: using all {N_TEST[mode]}" in stdout(nb)


@pytest.mark.parametrize("mode", list(RUNS))
def test_accuracy_and_binarization_patterns(executed, mode):
    numbers, _, nb = executed(mode)
    assert 0 <= numbers["test_accuracy"] <= 1
    assert f"test accuracy {numbers['test_accuracy']:.4f} on {N_TEST[mode]} test images" in stdout(nb)
    patterns = numbers["binarization_patterns"]
    # all quantized, each of the 4 layers continuous, all weights continuous
    assert [p["pattern"] for p in patterns] == ["all quantized (trained)", "conv1 continuous", "conv2 continuous",
                                                "fc1 continuous", "out continuous", "all weights continuous"]
    assert patterns[0]["accuracy_before"] == numbers["test_accuracy"]  # the trained network itself
    assert patterns[-1]["quantize_weights"] == [0, 0, 0, 0]
    assert all(0 <= p[k] <= 1 for p in patterns for k in ("accuracy_before", "accuracy_after"))


@pytest.mark.parametrize("mode", list(RUNS))
def test_every_figure_is_written_in_the_formats_asked_for(executed, run_dirs, mode):
    _, out_dir, nb = executed(mode)
    figures = dict(report.FIGURES)
    if mode == "ternary":  # trained with --no_geometry_log
        del figures["training"]  # a run made before geometry.csv: that section prints a note instead
        assert "the run was made before training recorded it" in stdout(nb)
        assert not (out_dir / f"{report.FIGURES['training']}.png").exists()
    written = (".pdf", ".png") if FORMATS_ENV[mode] else (".png",)
    for name in figures.values():
        for suffix in written:
            path = out_dir / f"{name}{suffix}"
            assert path.is_file() and path.stat().st_size > 1000, path
    assert {p.suffix for p in out_dir.glob("*.p*")} == set(written)
    images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {}))
    assert images == len(figures)
    assert "peak of the angle density per layer" in stdout(nb)


def test_command_line_report_gives_the_notebooks_numbers(executed, run_dirs, tmp_path, capsys):
    numbers, _, _ = executed("binary")
    assert report.main([str(run_dirs["binary"]), "--out_dir", str(tmp_path), "--skip_bn_experiment"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    cli = json.loads((tmp_path / report.NUMBERS_FILE).read_text())
    assert cli["layers"] == numbers["layers"] and cli["test_accuracy"] == numbers["test_accuracy"]
    assert cli["binarization_patterns"] is None
    assert not (tmp_path / "binarization_patterns.png").exists()


def test_missing_run_dir_fails_the_first_cell_with_one_sentence(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    with pytest.raises(CellExecutionError) as info:
        execute({"BNN_RUN_DIR": str(tmp_path / "nowhere"), "BNN_OUT_DIR": str(tmp_path / "out")}, nb)
    assert info.value.ename == "BnnError"
    message = info.value.evalue
    assert "nowhere does not exist" in message and "python run_bnn.py --run_dir" in message and "\n" not in message
    code = [c for c in nb.cells if c.cell_type == "code"]
    failed = [i for i, c in enumerate(code) if any(o.output_type == "error" for o in c.outputs)]
    assert failed == [1]  # the first cell after the parameters
    (error,) = [o for o in code[1].outputs if o.output_type == "error"]
    assert error["traceback"] == [f"error: {message}"]  # one line, no traceback


def test_bad_input_says_what_to_run(run_dirs, tmp_path, capsys):
    # a run directory whose training never wrote a model
    no_model = tmp_path / "no_model"
    no_model.mkdir()
    shutil.copy(run_dirs["binary"] / runs.CONFIG, no_model / runs.CONFIG)
    with pytest.raises(BnnError, match="python run_bnn.py"):
        report.open_run(no_model)
    # a data set that is not downloaded
    with pytest.raises(BnnError, match="python data/download_data.py --data_set MNIST"):
        report.open_run(run_dirs["binary"], data_dir=tmp_path / "empty", out_dir=tmp_path / "out")
    # the command line prints one line and exits 2
    assert report.main([str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "python run_bnn.py" in err
    with pytest.raises(BnnError, match="n_images must be a positive integer"):
        report.open_run(run_dirs["binary"], n_images=0)


# --------------------------------------------------------------------------------------------------
# The analysis cache in the run directory
# --------------------------------------------------------------------------------------------------

CACHE_HIT = "read from the analysis cache"


def test_second_run_reads_the_cache_and_gives_the_same_numbers(executed, run_dirs, tmp_path):
    numbers, _, first = executed("binary")
    out = stdout(first)
    assert CACHE_HIT not in out
    assert f"{N_TEST['binary']}/{N_TEST['binary']}" in out  # the progress bar of the first run's pass
    assert "batch-norm statistics re-estimated" in out
    cache = run_dirs["binary"] / analysis_cache.CACHE_DIR
    assert sorted(p.name for p in cache.iterdir()) == ["geometry-best.npz", "patterns-best.npz"]
    nb = execute({"BNN_RUN_DIR": str(run_dirs["binary"]), "BNN_OUT_DIR": str(tmp_path), "BNN_N_IMAGES": "500"})
    out = stdout(nb)
    assert out.count(CACHE_HIT) == 2  # the pass over the test images and the pattern experiment
    assert "batch-norm statistics re-estimated" not in out
    again = json.loads((tmp_path / report.NUMBERS_FILE).read_text())
    for key in ("layers", "test_accuracy", "binarization_patterns"):
        assert again[key] == numbers[key], key
    assert all((tmp_path / f"{name}.png").is_file() for name in report.FIGURES.values())


@pytest.fixture
def run_copy(run_dirs, tmp_path):
    """A copy of the binary run without its analysis cache."""
    run = tmp_path / "run"
    shutil.copytree(run_dirs["binary"], run, ignore=shutil.ignore_patterns(analysis_cache.CACHE_DIR))
    return run


def analysed(run, lines, **kwargs):
    """`report.analyse` on ``run`` (its printed lines appended to ``lines``); the Report."""
    r = report.open_run(run, 500, out_dir=run.parent / "out", print_fn=lines.append)
    report.analyse(r, print_fn=lines.append, **kwargs)
    return r


def hits(lines):
    return sum(CACHE_HIT in line for line in lines)


def test_a_changed_parameter_or_model_recomputes(run_copy, monkeypatch):
    lines = []
    first = analysed(run_copy, lines)
    assert hits(lines) == 0
    lines.clear()
    with monkeypatch.context() as m:  # read from the cache, the network is never loaded
        m.setattr(runs, "load_model_file", lambda path: pytest.fail(f"loaded {path}"))
        again = analysed(run_copy, lines)
    assert hits(lines) == 1 and again.summaries == first.summaries and again.accuracy == first.accuracy
    for a, b in zip(again.layers, first.layers):
        np.testing.assert_array_equal(a.weights_quantized, b.weights_quantized)
        assert a.weights_quantized.dtype == b.weights_quantized.dtype
        assert all(np.array_equal(a.dots[k], b.dots[k]) for k in b.dots) and a.dots.keys() == b.dots.keys()
    # another seed draws other dot products: recomputed, then cached under the new key
    lines.clear()
    other = analysed(run_copy, lines, seed=1)
    assert hits(lines) == 0 and any("made for another seed: recomputing" in line for line in lines)
    assert other.summaries["conv2"]["weights"]["r"] != first.summaries["conv2"]["weights"]["r"]
    lines.clear()
    analysed(run_copy, lines, seed=1)
    assert hits(lines) == 1
    # another model under the same name (e.g. a resumed run's new best.keras)
    config, model = runs.load_run(run_copy)
    rng = np.random.default_rng(0)
    model.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in model.get_weights()])
    runs.atomic_save(model, runs.resolve_model_path(run_copy, "best"))
    lines.clear()
    changed = analysed(run_copy, lines, seed=1)
    assert hits(lines) == 0 and any("made for another model: recomputing" in line for line in lines)
    assert changed.summaries["conv1"]["weight_std"] != other.summaries["conv1"]["weight_std"]


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_cache_file_is_ignored_with_one_line_and_rewritten(run_copy, damage):
    lines = []
    first = analysed(run_copy, lines)
    path = analysis_cache.cache_path(run_copy, "geometry", "best")
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2] if damage == "truncated" else b"not a cache file" * 100)
    lines.clear()
    again = analysed(run_copy, lines)
    damaged = [line for line in lines if "ignoring the damaged" in line]
    assert len(damaged) == 1 and str(path) in damaged[0] and damaged[0].endswith(": recomputing")
    assert "\n" not in damaged[0] and hits(lines) == 0
    assert again.summaries == first.summaries
    lines.clear()
    analysed(run_copy, lines)
    assert hits(lines) == 1  # rewritten whole


def test_command_line_report_reuses_the_cache(run_copy, tmp_path, capsys):
    argv = [str(run_copy), "--out_dir", str(tmp_path / "out"), "--skip_bn_experiment"]
    assert report.main(argv) == 0
    assert CACHE_HIT not in capsys.readouterr().out
    assert report.main(argv) == 0
    assert capsys.readouterr().out.count(CACHE_HIT) == 1
