"""A run over several processes (bnn.cluster, bnn.launch): 2 processes x 1 CPU device train
exactly like 1 process x 2 virtual devices; a process killed with -9 stops the other with one
line, and the same commands again finish with the numbers of an uninterrupted run.

The process tests need KERAS_BACKEND=jax (CI runs this file on JAX)."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

import run_bnn
from bnn import cluster, launch, runs
from bnn.config import RunConfig
from bnn.errors import BnnError

REPO = Path(__file__).resolve().parents[1]
RUN = ["--data_set", "MNIST", "--conv", "--fc", "32", "--batch_size", "20", "--epochs", "3",
       "--ckpt_n", "1", "--keep_ckpts", "0", "--lr_start", "0.01", "--lr_end", "0.001"]
on_jax = pytest.mark.skipif(keras.backend.backend() != "jax",
                            reason="runs over several processes are JAX only")


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERAS_DISTRIBUTION_")}
    return {**env, "PYTHONPATH": str(REPO), "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2",
            **extra}


def _two_process_cmds(argv, port):
    """The two commands and environments of a 2-process run on 127.0.0.1:``port``."""
    address = f"127.0.0.1:{port}"
    return [([sys.executable, str(REPO / "run_bnn.py"), *argv],
             launch.process_env(i, 2, address, base=_env())) for i in range(2)]


def _start(cmds):
    return [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for cmd, env in cmds]


def _finish(procs, timeout=300):
    outs = [p.communicate(timeout=timeout) for p in procs]
    return [p.returncode for p in procs], outs


def _log(run_dir):
    with open(run_dir / runs.LOG, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def _assert_same_log(a, b):
    la, lb = _log(a), _log(b)
    assert la.keys() == lb.keys() and len(la["epoch"]) == len(lb["epoch"]) == 3
    for key in la:
        np.testing.assert_allclose(la[key], lb[key], rtol=1e-5, atol=1e-6, err_msg=key)


def _checkpoint_shapes(run_dir, epoch):
    model = runs.load_model_file(runs.checkpoint_path(run_dir, epoch))
    return [(w.path, tuple(w.shape)) for w in model.weights]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One process over two virtual CPU devices: the run the 2-process runs must reproduce."""
    from fake_data import write_mnist

    root = tmp_path_factory.mktemp("multihost")
    write_mnist(root / "data", n_train=200, n_test=50, seed=0)
    run_dir = root / "one-process"
    out = subprocess.run([sys.executable, str(REPO / "run_bnn.py"), *RUN, "--distribute",
                          "--data_dir", str(root / "data"), "--run_dir", str(run_dir)],
                         env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=2"),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return root / "data", run_dir


@on_jax
def test_two_processes_train_like_one_process_over_two_devices(reference, tmp_path):
    data, one = reference
    two = tmp_path / "two"
    out = subprocess.run([sys.executable, "-m", "bnn.launch", "-n", "2", "--", "run_bnn.py", *RUN,
                          "--data_dir", str(data), "--run_dir", str(two)],
                         cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any(l.startswith("[0] process 0 of 2 joined") for l in lines), out.stdout
    assert any(l.startswith("[1] process 1 of 2 joined") for l in lines), out.stdout
    _assert_same_log(one, two)
    assert _checkpoint_shapes(one, 3) == _checkpoint_shapes(two, 3)
    assert [e for e, _ in runs.checkpoints(two)] == [1, 2, 3]
    # process 0 alone wrote: one results.json, the run's config says so too
    assert RunConfig.load(two / runs.CONFIG).process_id in (None, 0)
    assert (two / runs.RESULTS).exists()


@on_jax
def test_kill_one_process_then_same_commands_finish_like_uninterrupted(reference, tmp_path):
    data, one = reference
    two = tmp_path / "two"
    argv = [*RUN, "--data_dir", str(data), "--run_dir", str(two)]
    procs = _start(_two_process_cmds(argv, launch.free_port()))
    deadline = time.time() + 300
    while not runs.checkpoints(two):
        assert all(p.poll() is None for p in procs), _finish(procs)
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    procs[1].send_signal(signal.SIGKILL)
    start = time.time()
    codes, outs = _finish(procs, timeout=120)
    assert codes[1] == -signal.SIGKILL
    # the survivor stops within seconds, with one line and status 1, not at JAX's 100 s heartbeat
    assert codes[0] == 1 and time.time() - start < 60, outs[0]
    errors = [l for l in outs[0][1].splitlines() if l.startswith("error:")]
    assert errors == ["error: process 0: process 1 ended without finishing (killed, crashed, or "
                      "its machine or network is gone): stopping; run the same commands again to "
                      "resume from the last checkpoint"], outs[0][1]
    killed_after = runs.checkpoints(two)[-1][0]

    codes, outs = _finish(_start(_two_process_cmds(argv, launch.free_port())))
    assert codes == [0, 0], outs
    if killed_after < 3:
        assert f"resuming {two} after epoch {killed_after}" in outs[0][0]
    _assert_same_log(one, two)
    assert [e for e, _ in runs.checkpoints(two)] == [1, 2, 3]


@on_jax
def test_unreachable_coordinator_ends_in_one_line(tmp_path):
    argv = [*RUN, "--data_dir", str(tmp_path), "--run_dir", str(tmp_path / "run"),
            "--coordinator_address", f"127.0.0.1:{launch.free_port()}", "--num_processes", "2",
            "--process_id", "1", "--cluster_timeout", "2"]
    out = subprocess.run([sys.executable, str(REPO / "run_bnn.py"), *argv], env=_env(),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    errors = [l for l in out.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "did not form within --cluster_timeout 2s" in errors[0], out.stderr


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the TensorFlow message")
def test_tensorflow_says_multi_process_is_jax_only(tiny_data_dir, tmp_path, capsys):
    argv = [*RUN, "--data_dir", str(tiny_data_dir), "--run_dir", str(tmp_path / "run"),
            "--coordinator_address", "127.0.0.1:1234", "--num_processes", "2", "--process_id", "0"]
    assert run_bnn.main(argv) == 2
    assert "needs KERAS_BACKEND=jax" in capsys.readouterr().err


# -- the pieces, without processes ------------------------------------------------------------

def test_local_shares_of_all_processes_make_up_each_batch(monkeypatch):
    x = np.arange(26)  # batches of 8: 8, 8, 8 and a last one of 2
    shares = []
    for i in range(2):
        monkeypatch.setattr(cluster._state, "count", 2)
        monkeypatch.setattr(cluster._state, "index", i)
        shares.append(cluster.local_share(x, 8))
    np.testing.assert_array_equal(shares[0], [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24])
    np.testing.assert_array_equal(shares[1], [4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 25])


def test_one_process_feeds_everything():
    x = np.arange(10)
    assert cluster.count() == 1 and cluster.is_writer()
    assert cluster.local_share(x, 4) is x and cluster.agree("x", 5) == 5


def test_cluster_flags_and_keras_variables(monkeypatch):
    for name in (cluster.ENV_ADDRESS, cluster.ENV_COUNT, cluster.ENV_INDEX):
        monkeypatch.delenv(name, raising=False)
    assert cluster.requested(RunConfig()) is None
    config = RunConfig(coordinator_address="10.0.0.1:1234", num_processes=2, process_id=1)
    assert cluster.requested(config) == ("10.0.0.1:1234", 2, 1)
    monkeypatch.setenv(cluster.ENV_ADDRESS, "10.0.0.1:1234,10.0.0.2:2345")
    monkeypatch.setenv(cluster.ENV_COUNT, "2")
    monkeypatch.setenv(cluster.ENV_INDEX, "0")
    assert cluster.requested(RunConfig()) == ("10.0.0.1:1234", 2, 0)
    assert cluster.requested(RunConfig(process_id=1)) == ("10.0.0.1:1234", 2, 1)
    for bad, words in ((RunConfig(process_id=2), "0 <= --process_id"),
                       (RunConfig(coordinator_address="nohost"), "HOST:PORT"),
                       (RunConfig(cluster_timeout=0), "--cluster_timeout")):
        with pytest.raises(BnnError, match=words):
            cluster.requested(bad)
    monkeypatch.delenv(cluster.ENV_INDEX)
    with pytest.raises(BnnError, match="needs all of"):
        cluster.requested(RunConfig())


def test_launcher_prefixes_lines_and_gives_each_process_its_id():
    lines = []
    code = "import os; print(os.environ['KERAS_DISTRIBUTION_PROCESS_ID'], os.environ['KERAS_DISTRIBUTION_NUM_PROCESSES'])"
    assert launch.launch(3, [sys.executable, "-c", code], print_fn=lines.append) == 0
    assert sorted(lines) == ["[0] 0 3", "[1] 1 3", "[2] 2 3"]


def test_launcher_stops_the_others_when_one_fails():
    code = ("import os, sys, time\n"
            "if os.environ['KERAS_DISTRIBUTION_PROCESS_ID'] == '1': sys.exit(3)\n"
            "time.sleep(120)\n")
    start = time.time()
    assert launch.launch(2, [sys.executable, "-c", code], print_fn=lambda line: None, grace=0.5) == 3
    assert time.time() - start < 30


def test_launcher_ctrl_c_stops_every_process():
    child = "import time; print('up', flush=True); time.sleep(120)"
    proc = subprocess.Popen([sys.executable, "-m", "bnn.launch", "-n", "2", "--", sys.executable, "-c",
                             child], cwd=REPO, env=_env(), stdout=subprocess.PIPE, text=True)
    assert sorted(proc.stdout.readline().strip() for _ in range(2)) == ["[0] up", "[1] up"]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    proc.stdout.close()
