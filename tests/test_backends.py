"""Backends and speed settings: checkpoints cross between TensorFlow and JAX, the speed fields
never make a run refuse to resume, bfloat16 keeps float32 weights and scores, and a missing jax
is reported in one line."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import run_bnn
from bnn import accelerate, jit_auto
from bnn.config import RunConfig
from bnn.model import build_model
from bnn.runs import atomic_save
from bnn.train import compile_model

REPO = Path(__file__).resolve().parents[1]
OTHER = {"tensorflow": "jax", "jax": "tensorflow"}[keras.backend.backend()]
PREDICT = """
import sys
import numpy as np
from bnn.runs import load_model_file
x = np.load(sys.argv[1])
np.save(sys.argv[3], load_model_file(sys.argv[2]).predict(x, verbose=0))
"""


@pytest.mark.skipif(importlib.util.find_spec(OTHER) is None, reason=f"{OTHER} is not installed")
def test_checkpoint_predicts_the_same_on_the_other_backend(tmp_path):
    config = RunConfig(data_set="cifar-10", conv=[8, 16], fc=[16], epochs=1, batch_size=16).resolve()
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (32, 32, 32, 3)).astype("float32")
    model = compile_model(build_model(config), config)
    model.fit(x, rng.integers(0, 10, 32), batch_size=16, epochs=1, verbose=0)
    atomic_save(model, tmp_path / "model.keras")
    np.save(tmp_path / "x.npy", x)
    env = {**os.environ, "KERAS_BACKEND": OTHER, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", PREDICT, str(tmp_path / "x.npy"),
                          str(tmp_path / "model.keras"), str(tmp_path / "other.npy")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    here, there = model.predict(x, verbose=0), np.load(tmp_path / "other.npy")
    # Binary layers make the two backends agree exactly up to float rounding in the sums.
    np.testing.assert_allclose(there, here, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(there.argmax(1), here.argmax(1))


def test_old_config_loads_and_speed_fields_do_not_block_resume(tmp_path):
    old = RunConfig(data_set="MNIST", conv=[], fc=[16]).resolve().to_dict()
    for name in ("dtype_policy", "jit_compile", "steps_per_execution", "distribute"):
        del old[name]  # a config.json written before these fields existed
    (tmp_path / "config.json").write_text(json.dumps(old))
    loaded = RunConfig.load(tmp_path / "config.json")
    assert (loaded.dtype_policy, loaded.jit_compile, loaded.steps_per_execution, loaded.distribute) == (
        "float32", "auto", 0, False)
    faster = RunConfig(**{**loaded.to_dict(), "jit_compile": "off", "steps_per_execution": 8,
                          "distribute": True}).resolve()
    assert loaded.differences(faster) == {}
    bf16 = RunConfig(**{**loaded.to_dict(), "dtype_policy": "mixed_bfloat16"}).resolve()
    assert loaded.differences(bf16) == {"dtype_policy": ("float32", "mixed_bfloat16")}


@pytest.mark.parametrize("field, value", [("jit_compile", "maybe"), ("dtype_policy", "float16"),
                                          ("steps_per_execution", -1)])
def test_bad_speed_settings_are_refused(field, value):
    from bnn.errors import BnnError

    with pytest.raises(BnnError, match=f"--{field}"):
        RunConfig(**{field: value}).resolve()


def test_jit_compile_auto_outside_a_run_follows_the_rule():
    conv = RunConfig().resolve()
    mlp = RunConfig(data_set="MNIST", conv=[], fc=[64]).resolve()
    assert accelerate.jit_compile(conv) and accelerate.jit_compile(mlp)
    assert accelerate.jit_compile(RunConfig(jit_compile="off").resolve()) is False
    model = compile_model(build_model(mlp), mlp)
    assert model.jit_compile == accelerate.jit_compile(mlp)
    assert model.steps_per_execution == (1 if not accelerate.accelerators() else 32)


def test_mixed_bfloat16_keeps_latent_weights_and_scores_float32():
    config = RunConfig(data_set="MNIST", conv=[], fc=[32], dtype_policy="mixed_bfloat16").resolve()
    with accelerate.session(config):
        model = compile_model(build_model(config), config)
    assert keras.config.dtype_policy().name == "float32", "the policy leaked out of the session"
    assert model.get_layer("fc1").compute_dtype == "bfloat16"
    assert {w.dtype for w in model.weights} == {"float32"}
    x = np.random.default_rng(0).uniform(-1, 1, (20, 28, 28, 1)).astype("float32")
    model.fit(x, np.arange(20) % 10, batch_size=10, epochs=1, verbose=0)
    assert model.predict(x, verbose=0).dtype == np.float32
    assert np.abs(keras.ops.convert_to_numpy(model.get_layer("fc1").kernel)).max() <= 1.0


def test_missing_jax_is_one_line_with_the_install_command(monkeypatch, capsys):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert run_bnn.main(["--debug"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: KERAS_BACKEND=jax but jax is not installed: "
                   "pip install -r requirements-jax.txt")


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="TensorFlow's allocator")
def test_tensorflow_cpu_tensors_come_from_the_bfc_allocator():
    # tensorflow first, bnn second: the setting still counts, as no tensor exists yet. Only the
    # BFC allocator keeps the statistics that get_memory_info reads.
    code = ("import tensorflow as tf, bnn; tf.ones(4); "
            "print(tf.config.experimental.get_memory_info('CPU:0')['peak'] > 0)")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPU_ALLOCATOR_USE_BFC"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stderr[-2000:]


def test_a_users_allocator_setting_is_kept():
    code = "import os, bnn; print(os.environ['TF_CPU_ALLOCATOR_USE_BFC'])"
    env = {**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": "false"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip() == "false", out.stderr[-2000:]


class _FakeStep:
    """A model whose every step advances a fake clock by its form's cost."""

    def __init__(self, clock, cost, log):
        self.clock, self.cost, self.log = clock, cost, log

    def train_on_batch(self, x, y, return_dict=False):
        self.clock[0] += self.cost
        self.log.append(self.cost)
        return {"loss": 0.5}


def _fake(costs):
    """``(make_model, timer, calls)``: forms cost ``costs[True]`` / ``costs[False]`` fake seconds."""
    clock, calls = [0.0], []
    return (lambda on: _FakeStep(clock, costs[on], calls)), (lambda: clock[0]), calls


def test_jit_auto_takes_the_faster_form_and_remembers_it(tmp_path, monkeypatch):
    monkeypatch.setenv("BNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(jit_auto, "times_both_forms", lambda: True)  # as on TensorFlow, on either backend
    config = RunConfig(data_set="MNIST", conv=[], fc=[16], batch_size=10).resolve()
    make, timer, calls = _fake({True: 3.0, False: 2.0})
    choice = jit_auto.choose(config, tmp_path / "run", make, (None, None), 1, timer=timer)
    assert choice == {"jit_compile": False, "seconds_per_step": {"on": 3.0, "off": 2.0},
                      "source": "measured"}
    assert len(calls) == 2 * (1 + jit_auto.ROUNDS)  # one untimed step per form, then the rounds
    # the same network on the same machine: the cache answers, nothing is timed
    make2, timer2, calls2 = _fake({True: 1.0, False: 9.0})
    again = jit_auto.choose(config, tmp_path / "run", make2, (None, None), 1, timer=timer2)
    assert again["jit_compile"] is False and again["source"] == "cache" and calls2 == []
    # another batch size is another key: measured again, and XLA wins this time
    bigger = RunConfig(data_set="MNIST", conv=[], fc=[16], batch_size=20).resolve()
    assert jit_auto.choose(bigger, tmp_path / "run", make2, (None, None), 1, timer=timer2)["jit_compile"]
    assert "XLA off (3000 ms per step with XLA, 2000 ms without)" in jit_auto.describe(choice)


def test_jit_auto_resumed_run_keeps_its_form(tmp_path, monkeypatch):
    monkeypatch.setenv("BNN_CACHE_DIR", str(tmp_path / "cache"))
    config = RunConfig(data_set="MNIST", conv=[], fc=[16]).resolve()
    run = tmp_path / "run"
    run.mkdir()
    jit_auto.remember(run, {"jit_compile": False, "source": "measured"})
    jit_auto.remember(run, {"jit_compile": True, "source": "measured"})  # the first one stays
    make, timer, calls = _fake({True: 1.0, False: 9.0})  # XLA would win a measurement now
    kept = jit_auto.choose(config, run, make, (None, None), 1, timer=timer, resuming=True)
    assert kept == {"jit_compile": False, "source": "run directory"} and calls == []
    # a run begun before forms were stored resumes with the old rule, not a measurement
    old = jit_auto.choose(config, tmp_path / "old", make, (None, None), 1, timer=timer,
                          resuming=True, rule=True)
    assert old == {"jit_compile": True, "source": "rule"} and calls == []


def test_jit_auto_on_jax_is_xla_on_without_timing(tmp_path, monkeypatch):
    monkeypatch.setenv("BNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(jit_auto, "times_both_forms", lambda: False)  # as on JAX, on either backend
    config = RunConfig(data_set="MNIST", conv=[], fc=[16]).resolve()
    make, timer, calls = _fake({True: 9.0, False: 1.0})
    choice = jit_auto.choose(config, tmp_path / "run", make, (None, None), 1, timer=timer)
    assert choice == {"jit_compile": True, "source": "jax"} and calls == []
    assert "XLA on: JAX's compiled form" in jit_auto.describe(choice)
    assert not (tmp_path / "cache").exists()  # nothing measured, nothing remembered


def test_jit_auto_in_a_run_is_logged_stored_and_kept_on_resume(tiny_data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(jit_auto, "times_both_forms", lambda: True)
    monkeypatch.setattr(jit_auto, "measure", lambda make, batch, timer=None: {"on": 0.2, "off": 0.1})
    argv = ["--data_set", "MNIST", "--conv", "--fc", "16", "--batch_size", "20", "--epochs", "2",
            "--ckpt_n", "1", "--data_dir", str(tiny_data_dir), "--run_dir", str(tmp_path / "run")]
    assert run_bnn.main(argv) == 0
    out = capsys.readouterr().out
    assert "--jit_compile auto: XLA off (200 ms per step with XLA, 100 ms without)" in out
    assert json.loads((tmp_path / "run" / jit_auto.RUN_FILE).read_text())["jit_compile"] is False

    def never(*args, **kwargs):
        raise AssertionError("a resumed run must not measure")

    monkeypatch.setattr(jit_auto, "measure", never)
    (tmp_path / "cache" / jit_auto.CACHE_FILE).unlink()
    assert run_bnn.main(argv) == 0  # the complete run is loaded and tested again
    assert "XLA off (200 ms per step with XLA, 100 ms without): the form this run began with" in (
        capsys.readouterr().out)


# TensorFlow made unimportable, as on a GPU machine that has only JAX: ``import tensorflow`` fails
# and ``find_spec`` finds nothing.
WITHOUT_TENSORFLOW = """
import importlib.abc, importlib.util, sys
class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoTensorFlow())
find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name.split(".")[0] == "tensorflow" else find_spec(name, *a)
import run_bnn
from bnn.report import make_report
run_dir, data_dir = sys.argv[1:3]
assert run_bnn.main(["--data_set", "MNIST", "--conv", "--fc", "16", "--epochs", "1", "--batch_size", "50",
                     "--data_dir", data_dir, "--run_dir", run_dir]) == 0
make_report(run_dir, 20, out_dir=run_dir + "/report", bn_images=50, print_fn=lambda *a, **k: None)
assert "tensorflow" not in sys.modules
"""


# Run in the JAX pass of the suite only: once is enough, whatever the backend of this process.
@pytest.mark.skipif(keras.backend.backend() != "jax", reason="runs in the JAX pass of the suite")
def test_jax_trains_and_reports_without_tensorflow(tiny_data_dir, tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, str(tmp_path / "run"), str(tiny_data_dir)],
                         env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "run" / "report" / "geometry.json").exists()
