"""The command-line conventions (bnn.cli) on every entry point, and the flags that must be refused.

Usage errors are checked in subprocesses that must not load TensorFlow: each program runs under
a wrapper that reports whether ``tensorflow`` or ``keras`` was imported when it exited.
"""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import run_bnn
from bnn import cli
from bnn.config import RunConfig, check_training_memory, config_from_args, training_memory
from bnn.errors import BnnError

REPO = Path(__file__).resolve().parents[1]
# prog (as the usage line names it) -> how to run it: a script path or a module
PROGRAMS = {
    "run_bnn.py": ("path", "run_bnn.py"),
    "python -m bnn.report": ("module", "bnn.report"),
    "python -m bnn.pack": ("module", "bnn.pack"),
    "python -m bnn.summary": ("module", "bnn.summary"),
    "download_data.py": ("path", "data/download_data.py"),
}
MLP = ["--data_set", "MNIST", "--conv", "--fc", "8", "--epochs", "1"]
_WRAPPER = """
import runpy, sys
kind, target, *sys.argv[1:] = sys.argv[1:]
sys.argv[0] = target
try:
    if kind == "module":
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        runpy.run_path(target, run_name="__main__")
finally:
    loaded = sorted({"tensorflow", "keras"} & set(sys.modules))
    print("LOADED:" + ",".join(loaded), file=sys.stderr)
"""


def light(prog, *args, cwd=REPO):
    """Run ``prog`` with ``args``: ``(exit status, stdout, stderr without the wrapper's line)``,
    asserting that TensorFlow and Keras were not loaded."""
    kind, target = PROGRAMS[prog]
    target = str(REPO / target) if kind == "path" else target
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", _WRAPPER, kind, target, *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=120, env=env)
    err, _, loaded = done.stderr.rpartition("LOADED:")
    assert loaded.strip() == "", f"{prog} {' '.join(map(str, args))} loaded {loaded.strip()}"
    return done.returncode, done.stdout, err


def assert_one_line_error(status, err, expected_status=2, *phrases):
    assert status == expected_status, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for phrase in phrases:
        assert phrase in err, err


@pytest.fixture
def fake_run(tmp_path):
    """A directory that passes the command lines' check (a config.json), never loaded."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    return run_dir


# -- every entry point: --help, a missing argument, a bad value, an unwritable output ---------

@pytest.mark.parametrize("prog", PROGRAMS)
def test_help_names_the_program_without_loading_tensorflow(prog):
    status, out, err = light(prog, "--help")
    assert status == 0 and err == ""
    assert out.startswith(f"usage: {prog} "), out.splitlines()[0]


@pytest.mark.parametrize("prog, args, phrase", [
    ("run_bnn.py", ["--data_set"], "argument --data_set: expected one argument"),
    ("python -m bnn.report", [], "the following arguments are required: --run_dir"),
    ("python -m bnn.pack", ["--which", "final"], "the following arguments are required: --run_dir"),
    ("python -m bnn.summary", [], "the following arguments are required: --run_dir"),
    ("download_data.py", [], "--data_set"),
])
def test_a_missing_argument_is_one_line(prog, args, phrase):
    assert_one_line_error(*light(prog, *args)[::2], 2, phrase)


@pytest.mark.parametrize("prog, args, phrase", [
    ("run_bnn.py", ["--bn_epsilon", "nan"], "argument --bn_epsilon: expected a finite number, got 'nan'"),
    ("python -m bnn.report", ["--run_dir", "RUN", "--n_images", "0"],
     "argument --n_images: expected an integer >= 1"),
    ("python -m bnn.pack", ["--run_dir", "RUN", "--which", "latest"], "argument --which: expected best, final"),
    ("python -m bnn.summary", ["--run_dir", "RUN", "--which", "0"], "argument --which"),
])
def test_a_bad_value_is_one_line(prog, args, phrase, fake_run):
    status, _, err = light(prog, *[fake_run if a == "RUN" else a for a in args])
    assert_one_line_error(status, err, 2, phrase, f"(see {prog} --help)")


def test_the_older_positional_run_dir_still_works_and_a_missing_one_is_one_line(tmp_path, fake_run):
    status, _, err = light("python -m bnn.summary", tmp_path / "nowhere")
    assert_one_line_error(status, err, 2, f"run directory {tmp_path / 'nowhere'} does not exist")
    status, _, err = light("python -m bnn.summary", fake_run, "--run_dir", tmp_path / "other")
    assert_one_line_error(status, err, 2, "two run directories given")
    status, _, err = light("python -m bnn.pack", "--run_dir", tmp_path)
    assert_one_line_error(status, err, 2, "is not a run directory (no config.json)")


def test_run_bnn_refuses_an_unwritable_run_dir_before_loading_tensorflow(tmp_path):
    (tmp_path / "file").write_text("x")
    status, _, err = light("run_bnn.py", *MLP, "--run_dir", tmp_path / "file" / "run")
    assert_one_line_error(status, err, 2, "--run_dir", "is a file")


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_report_out_dir_that_cannot_be_a_directory_is_one_line(where, tmp_path, fake_run):
    (tmp_path / "file").write_text("x")
    out_dir = tmp_path / "file" if where == "a file" else tmp_path / "file" / "figures"
    status, _, err = light("python -m bnn.report", "--run_dir", fake_run, "--out_dir", out_dir)
    assert_one_line_error(status, err, 2, "--out_dir", str(tmp_path / "file"))
    assert (tmp_path / "file").read_text() == "x"


def test_pack_out_that_cannot_be_written_is_one_line(tmp_path, fake_run):
    (tmp_path / "file").write_text("x")
    status, _, err = light("python -m bnn.pack", "--run_dir", fake_run, "--out", tmp_path / "file" / "p.npz")
    assert_one_line_error(status, err, 2, "--out", "is a file")
    status, _, err = light("python -m bnn.pack", "--run_dir", fake_run, "--out", tmp_path)
    assert_one_line_error(status, err, 2, "--out", "is a directory")


@pytest.mark.parametrize("args, phrase", [
    (["--seed", "-1"], "argument --seed: expected an integer in [0, 4294967295], got '-1'"),
    (["--bn_images", "0"], "argument --bn_images: expected an integer >= 1, got '0'"),
    (["--rotation_max_d", "-5"], "argument --rotation_max_d: expected an integer >= 0, got '-5'"),
])
def test_report_refuses_bad_values_before_any_work_and_creates_nothing(args, phrase, tmp_path, fake_run):
    out_dir = tmp_path / "figures"
    status, _, err = light("python -m bnn.report", "--run_dir", fake_run, "--out_dir", out_dir, *args)
    assert_one_line_error(status, err, 2, phrase)
    assert not out_dir.exists()


def test_report_and_pack_name_the_library_defaults():
    from bnn import network_geometry, pack, report

    _, out, _ = light("python -m bnn.report", "--help")
    assert f"bnn.network_geometry.ROTATION_MAX_D, {network_geometry.ROTATION_MAX_D};" in " ".join(out.split())
    assert (report.DEFAULT_N_IMAGES, pack.PACKED) == (500, "packed.npz")


# -- run_bnn.py: flags that would poison a run directory ---------------------------------------

@pytest.mark.parametrize("flag, value, phrase", [
    ("--bn_epsilon", "1e400", "expected a finite number"),
    ("--bn_epsilon", "nan", "expected a finite number"),
    ("--bn_epsilon", "0", "expected a number > 0"),
    ("--bn_momentum", "1", "expected a number < 1"),
    ("--bn_momentum", "-0.1", "expected a number >= 0"),
    ("--bn_momentum", "inf", "expected a finite number"),
    ("--lr_start", "inf", "expected a finite number"),
    ("--lr_start", "0", "expected a number > 0"),
    ("--lr_end", "nan", "expected a finite number"),
    ("--threshold", "1", "expected a number < 1"),
    ("--threshold_weights", "inf", "expected a finite number"),
    ("--threshold_activations", "-0.5", "expected a number >= 0"),
    ("--dropout_in", "1", "expected a number < 1"),
    ("--dropout_hidden", "nan", "expected a finite number"),
    ("--val_fraction", "1", "expected a number < 1"),
    ("--val_fraction", "inf", "expected a finite number"),
    ("--batch_size", "0", "expected an integer >= 1"),
    ("--keep_ckpts", "-1", "expected an integer >= 0"),
    ("--steps_per_execution", "-2", "expected an integer >= 0"),
    ("--bn_scale", "2", "expected an integer in [0, 1]"),
    ("--run_dir", "", "expected a path, got an empty string"),
    ("--param_file", "", "expected a path, got an empty string"),
    ("--data_dir", "", "expected a path, got an empty string"),
    ("--data_dir", "d" * 5000, "path is 5000 characters long"),
    ("--run_dir", "runs/" + "r" * 300, "a name in the path is 300 characters long"),
])
def test_run_bnn_refuses_poisonous_flags_in_one_line(flag, value, phrase, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default run directory would land here
    argv = [*MLP, "--data_dir", str(tmp_path / "data"), "--run_dir", str(tmp_path / "run"), flag, value]
    assert run_bnn.main(argv) == 2
    err = capsys.readouterr().err
    assert_one_line_error(2, err, 2, f"argument {flag}: {phrase}")
    assert not (tmp_path / "run").exists() and list(tmp_path.iterdir()) == []


def test_a_poisoned_config_json_is_one_line(tmp_path):
    """A config.json from before parse-time checks, with null (an infinite epsilon) or NaN."""
    config = config_from_args(MLP).to_dict()
    for key, value, phrase in (("bn_epsilon", None, "--bn_epsilon has no value (null)"),
                               ("bn_epsilon", float("inf"), "--bn_epsilon: expected a finite number"),
                               ("bn_momentum", float("nan"), "--bn_momentum: expected a finite number"),
                               ("fc", [8, 0], "--fc: expected an integer >= 1, got '0'"),
                               ("seed", 1.5, "--seed: expected an integer, got '1.5'"),
                               ("run_dir", "", "--run_dir: expected a path")):
        path = tmp_path / "config.json"
        path.write_text(json.dumps({**config, key: value}))
        with pytest.raises(BnnError, match="^" + phrase.replace("(", r"\(").replace(")", r"\)")) as info:
            RunConfig.load(path)
        assert "\n" not in str(info.value)


def test_a_huge_layer_is_refused_before_it_is_built(tmp_path, capsys):
    assert run_bnn.main([*MLP, "--fc", "100000000", "--data_dir", str(tmp_path / "data"),
                         "--run_dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(2, err, 2, "has 79,800,000,040 parameters", "make the layers smaller")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kwargs", [
    dict(data_set="MNIST", conv=[], fc=[100, 30]),
    dict(data_set="cifar-10", conv=[8, 8, 16], fc=[20], bn_scale=0),
    dict(data_set="cifar-10", conv=[4, 6], fc=[], max_pool=[1, 1], filter_size=5, rotate_first_layer=True),
    dict(data_set="MNIST", conv=[3], fc=[7], max_pool=[1], rotate_first_layer=True),
])
def test_the_memory_estimate_counts_the_parameters_of_the_built_network(kwargs):
    from bnn.model import build_model

    config = RunConfig(**kwargs).resolve()
    params, needed = training_memory(config)
    assert params == build_model(config).count_params()
    assert needed > 16 * params
    check_training_memory(config, available=needed)
    with pytest.raises(BnnError, match="make the layers smaller"):
        check_training_memory(config, available=needed - 1)


def test_the_default_networks_fit_in_a_few_gigabytes():
    for argv in ([], ["--data_set", "MNIST", "--conv", "--fc", "2048", "2048", "2048"]):
        assert training_memory(config_from_args(argv))[1] < 2 * 2**30


def test_an_unknown_class_in_a_param_file_is_one_line(tiny_data_dir, tmp_path, capsys):
    from tiny_networks import tiny_network

    _, model = tiny_network(data_set="MNIST", conv=[], fc=[8])
    model.save(tmp_path / "good.keras")
    with zipfile.ZipFile(tmp_path / "good.keras") as z:
        files = {name: z.read(name) for name in z.namelist()}
    with zipfile.ZipFile(tmp_path / "bad.keras", "w") as z:
        for name, data in files.items():
            z.writestr(name, data.replace(b"QuantDense", b"NoSuchLayer") if name == "config.json" else data)
    assert run_bnn.main([*MLP, "--data_dir", str(tiny_data_dir), "--run_dir", str(tmp_path / "run"),
                         "--param_file", str(tmp_path / "bad.keras")]) == 2
    assert_one_line_error(2, capsys.readouterr().err, 2, "it uses 'NoSuchLayer'", "bad.keras")
    assert not (tmp_path / "run").exists()


# -- training output, import side effects, the start-up filter ----------------------------------

def test_training_prints_one_epoch_numbering(tiny_data_dir, tmp_path, capsys):
    """Keras's own "Epoch i/i" header (one fit call per epoch) is gone; the summary numbers epochs."""
    from bnn.train import train_and_evaluate

    config = config_from_args([*MLP, "--epochs", "3", "--batch_size", "50", "--data_dir", str(tiny_data_dir),
                               "--run_dir", str(tmp_path / "run")])
    train_and_evaluate(config, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch" not in out
    assert [line.split()[1] for line in out.splitlines() if line.startswith("epoch ")] == ["1/3", "2/3", "3/3"]
    assert "━" in out  # the progress bar itself is still there


def test_import_bnn_changes_nothing_outside_the_package():
    code = ("import os, sys\n"
            "hooks, fd2 = list(sys.meta_path), os.fstat(2)\n"
            "import bnn, bnn.config, bnn.cli, bnn.geometry\n"
            "assert sys.meta_path == hooks, sys.meta_path\n"
            "assert (os.fstat(2).st_ino, os.fstat(2).st_dev) == (fd2.st_ino, fd2.st_dev)\n"
            "assert not {'keras', 'tensorflow'} & set(sys.modules)\n"
            "print(os.environ['TF_CPU_ALLOCATOR_USE_BFC'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "TF_CPU_ALLOCATOR_USE_BFC"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["true"]


def test_quiet_startup_holds_back_only_known_startup_noise(capfd, monkeypatch):
    monkeypatch.delenv("BNN_TF_LOGS", raising=False)
    noise = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
             "I0000 00:00:1796106739.847030   10798 port.cc:153] oneDNN custom operations are on.\n"
             "E0000 00:00:1796106748.343774   10798 cuda_platform.cc:52] failed call to cuInit: 303\n"
             "To enable the following instructions: AVX2 AVX512F, in other operations, rebuild.\n")
    kept = "F0000 00:00:1.0   1 lib.cc:9] a fatal message\nsomething else\n"
    with cli.quiet_startup():
        os.write(2, (noise + kept).encode())
    assert capfd.readouterr().err == kept


def test_run_maps_failures_to_their_exit_status(capsys):
    def fail(error):
        def main(argv):
            raise error
        return main

    assert cli.run(fail(BnnError("bad\n  input"))) == 2
    assert cli.run(fail(OSError(28, "No space left on device", "/x"))) == 1
    assert cli.run(fail(OSError(13, "Permission denied", "/y"))) == 2
    assert cli.run(fail(KeyboardInterrupt()), interrupted="stopped") == 130
    assert capsys.readouterr().err.splitlines() == [
        "error: bad input", "error: No space left on device: /x", "error: Permission denied: /y", "stopped"]
    with pytest.raises(ZeroDivisionError):  # a bug is not hidden behind one line
        cli.run(fail(ZeroDivisionError()))
