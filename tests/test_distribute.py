"""--distribute on two virtual CPU devices: it trains, resumes after kill -9, and learns as well
as one device does. Runs on whichever backend KERAS_BACKEND selects (CI runs both)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras

import run_bnn
from bnn import runs
from processes import kill_after_checkpoint

REPO = Path(__file__).resolve().parents[1]
MLP = ["--data_set", "MNIST", "--conv", "--fc", "32", "--batch_size", "20", "--epochs", "6",
       "--ckpt_n", "1", "--keep_ckpts", "0", "--lr_start", "0.01", "--lr_end", "0.001"]
# Two devices must exist before the backend starts: JAX reads XLA_FLAGS when it is imported,
# TensorFlow takes logical devices before its first use.
TWO_DEVICES = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
""" if keras.backend.backend() == "tensorflow" else "import sys\n"


def two_device_command(argv):
    code = TWO_DEVICES + "import run_bnn\nsys.exit(run_bnn.main(sys.argv[1:]))\n"
    env = {**os.environ, "PYTHONPATH": str(REPO), "KERAS_BACKEND": keras.backend.backend(),
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    return [sys.executable, "-c", code, *argv], env


def test_two_devices_train_resume_and_match_one(tiny_data_dir, tmp_path, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    assert run_bnn.main([*MLP, "--data_dir", str(tiny_data_dir), "--run_dir", str(one)]) == 0
    capsys.readouterr()

    cmd, env = two_device_command([*MLP, "--distribute", "--data_dir", str(tiny_data_dir),
                                   "--run_dir", str(two)])
    killed_after = kill_after_checkpoint(cmd, env, two, epoch=1, timeout=600)
    assert killed_after < 6, "the run finished before it could be killed"

    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "data-parallel over 2 devices" in out.stdout
    assert int(out.stdout.split("after epoch ")[1].split()[0]) >= killed_after
    assert [e for e, _ in runs.checkpoints(two)] == list(range(1, 7))
    results = [json.loads((d / runs.RESULTS).read_text()) for d in (one, two)]
    # The fake classes are bright squares: both learn them far above chance (0.1), and two
    # devices (batch norm statistics per device on TensorFlow) stay within noise of one.
    assert min(r["best_test_accuracy"] for r in results) > 0.5, results
    assert abs(results[0]["best_test_accuracy"] - results[1]["best_test_accuracy"]) <= 0.2, results
    # the run directory reads back as usual
    config, model = runs.load_run(two)
    assert config.distribute and model.predict(
        keras.ops.zeros((2, 28, 28, 1)), verbose=0).shape == (2, 10)


def test_distribute_on_one_device_says_so_and_trains(tiny_data_dir, tmp_path, capsys):
    argv = [*MLP, "--epochs", "1", "--distribute", "--data_dir", str(tiny_data_dir),
            "--run_dir", str(tmp_path / "run")]
    assert run_bnn.main(argv) == 0
    assert "--distribute: only one device" in capsys.readouterr().out
