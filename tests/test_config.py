"""RunConfig: defaults of the original repository, per-layer lists, bad input, JSON round trip."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from bnn.config import RunConfig, config_from_args
from bnn.errors import BnnError

REPO = Path(__file__).resolve().parents[1]


def test_defaults_match_the_original_repository():
    c = config_from_args([])
    assert (c.data_set, c.batch_size, c.epochs, c.lr_start, c.lr_end, c.loss_mode) == (
        "cifar-10", 50, 500, 0.001, 3e-7, "hinge-loss")
    assert c.conv == [128, 128, 256, 256, 512, 512] and c.fc == [1024, 1024]
    assert c.max_pool == [0, 1, 0, 1, 0, 1] and c.filter_size == 3 and c.ckpt_n == 10
    assert (c.levels, c.threshold, c.continuous) == (2, 0.0, False)
    assert c.quantize_weights == [1] * 9 and c.quantize_activations == [1] * 8


def test_bare_conv_flag_gives_an_mlp():
    c = config_from_args(["--data_set", "mnist", "--conv", "--fc", "2048", "2048", "2048"])
    assert c.data_set == "MNIST" and c.conv == [] and c.max_pool == [] and c.fc == [2048] * 3
    assert c.layer_names() == ["fc1", "fc2", "fc3", "out"]


def test_continuous_turns_off_both_quantizers():
    c = config_from_args(["--continuous"])
    assert c.mode == "continuous" and not any(c.quantize_weights + c.quantize_activations)


def test_debug_shortens_the_run_unless_epochs_given():
    assert config_from_args(["--debug"]).epochs == 2
    assert config_from_args(["--debug", "--epochs", "3"]).epochs == 3


def test_per_layer_switches():
    c = config_from_args(["--conv", "8", "--fc", "4", "--quantize_weights", "0", "1", "1",
                          "--quantize_activations", "1", "0"])
    assert c.quantize_weights == [0, 1, 1] and c.quantize_activations == [1, 0]


@pytest.mark.parametrize("argv, match", [
    (["--data_set", "imagenet"], "unknown data set 'imagenet'"),
    (["--conv", "8", "8", "--max_pool", "1"], r"--max_pool needs one 0/1 per conv layer: got 1"),
    (["--loss_mode", "l2"], "--loss_mode must be one of"),
    (["--conv", "8", "--fc", "4", "--quantize_weights", "1"], "--quantize_weights needs 3 values"),
    (["--continuous", "--conv", "8", "--fc", "4", "--quantize_weights", "1", "1", "1"], "--continuous"),
    (["--lr_start", "1e-4", "--lr_end", "1e-3"], "lr_end"),
])
def test_bad_input_is_one_clear_line(argv, match):
    with pytest.raises(BnnError, match=match) as info:
        config_from_args(argv)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("argv, message", [
    (["--levels", "4"], "argument --levels: expected an integer in [2, 3], got '4'"),
    (["--levels", "3", "--threshold", "1.0"], "argument --threshold: expected a number < 1, got '1.0'"),
    (["--threshold", "-0.1"], "argument --threshold: expected a number >= 0, got '-0.1'"),
    (["--epochs", "0"], "argument --epochs: expected an integer >= 1, got '0'"),
    (["--lr_start", "inf"], "argument --lr_start: expected a finite number, got 'inf'"),
    (["--lr_start", "nan"], "argument --lr_start: expected a finite number, got 'nan'"),
    (["--lr_start", "0"], "argument --lr_start: expected a number > 0, got '0'"),
    (["--lr_end", "-1"], "argument --lr_end: expected a number > 0, got '-1'"),
    (["--seed", "-1"], "argument --seed: expected an integer in [0, 4294967295], got '-1'"),
    (["--seed", "99999999999"], "argument --seed: expected an integer in [0, 4294967295], got '99999999999'"),
    (["--seed", "x"], "argument --seed: expected an integer, got 'x'"),
    (["--conv", "8", "--fc", "4", "--quantize_activations", "2", "1"],
     "argument --quantize_activations: expected an integer in [0, 1], got '2'"),
    (["--conv", "8", "--max_pool", "3"], "argument --max_pool: expected an integer in [0, 1], got '3'"),
])
def test_bad_values_are_refused_while_parsing_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        config_from_args(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == f"error: {message} (see run_bnn.py --help)\n"


@pytest.mark.parametrize("field, value, match", [
    ("bn_epsilon", float("inf"), "--bn_epsilon: expected a finite number, got 'inf'"),
    ("bn_epsilon", None, r"--bn_epsilon has no value \(null\)"),
    ("lr_start", -1.0, "--lr_start: expected a number > 0, got '-1.0'"),
    ("levels", 4, r"--levels: expected an integer in \[2, 3\], got '4'"),
    ("conv", [8, -1], "--conv: expected an integer >= 1, got '-1'"),
    ("batch_size", True, "--batch_size has a value of the wrong kind: True"),
    ("param_file", "", "--param_file: expected a path, got an empty string"),
])
def test_a_config_built_in_python_is_held_to_the_flags_rules(field, value, match):
    with pytest.raises(BnnError, match=match):
        RunConfig(**{field: value}).resolve()


def test_json_round_trip_and_differences(tmp_path):
    c = config_from_args(["--data_set", "MNIST", "--conv", "--fc", "16", "--levels", "3",
                          "--threshold", "0.02", "--run_dir", "somewhere"])
    c.save(tmp_path / "config.json")
    loaded = RunConfig.load(tmp_path / "config.json")
    assert loaded == c
    other = config_from_args(["--data_set", "MNIST", "--conv", "--fc", "32", "--levels", "3",
                              "--threshold", "0.02", "--run_dir", "elsewhere"])
    assert c.differences(other) == {"fc": ([16], [32])}  # paths are not part of a run's identity


def test_unknown_keys_are_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"data_set": "MNIST", "wingspan": 3}')
    with pytest.raises(BnnError, match="unknown config keys"):
        RunConfig.load(tmp_path / "config.json")


def test_help_is_grouped_with_choices_and_defaults_without_tensorflow():
    code = ("import sys, run_bnn\n"
            "try:\n    run_bnn.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('TF' if 'tensorflow' in sys.modules or 'keras' in sys.modules else 'light')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         timeout=60).stdout
    assert out.rstrip().endswith("light"), "--help imported TensorFlow"
    for section in ("data:", "network:", "quantization:", "optimisation:", "run directory:"):
        assert f"\n{section}\n" in out
    assert "--data_set {MNIST,cifar-10}" in out and "--levels {2,3}" in out
    assert "--loss_mode {hinge-loss,softmax}" in out
    entries = {}
    for line in out.splitlines():
        if line.startswith("  --"):
            flag = line.split()[0]
            entries[flag] = line
        elif line.startswith("   ") and entries:
            entries[flag] += " " + line.strip()
    assert sorted(entries) == sorted(f"--{f.name}" for f in dataclasses.fields(RunConfig))
    for flag, entry in entries.items():
        assert "(default:" in entry, f"{flag} does not show its default"
