"""A quantizer written outside the repository trains, logs, reports, summarises and reloads.

The quantizer lives in a package made in a temporary folder (on PYTHONPATH only), registered with
Keras under its own name: no file of bnn knows about it.
"""

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

USER_MODULE = '''
import keras
from keras import ops

from bnn.quantizers import Quantizer


@keras.saving.register_keras_serializable(package="mylab")
class DeadZoneSign(Quantizer):
    """sign(x) * 1[|x| > width * std(x)]: a ternary quantizer whose threshold follows the tensor."""

    precision = 2

    def __init__(self, width=0.5):
        self.width = float(width)

    def quantize(self, x):
        t = self.width * ops.std(x)
        return ops.cast(x > t, x.dtype) - ops.cast(x < -t, x.dtype)

    def gaussian_pieces(self, std=1.0):
        return [-self.width, self.width], [-1.0, 0.0, 1.0]

    def get_config(self):
        return {"width": self.width}
'''

CHECK = '''
import json, sys
import numpy as np
import pytest
import bnn.summary
from bnn.geometry_log import read_geometry_log
from bnn.layer_statistics import filter_angles
from bnn.runs import load_run
from mylab.quant import DeadZoneSign

config, model = load_run(sys.argv[1], "final")
fc1 = model.get_layer("fc1")
assert isinstance(fc1.kernel_quantizer, DeadZoneSign) and fc1.kernel_quantizer.width == 0.7
assert isinstance(model.get_layer("fc1_act").quantizer, DeadZoneSign)
kernel = fc1.kernel.numpy()
angles = np.degrees(filter_angles(kernel, fc1.kernel_quantizer.numpy(kernel)))
log = read_geometry_log(sys.argv[1])
last = (log["layer"] == "fc1") & (log["epoch"] == log["epoch"].max())
lines = []
numbers = bnn.summary(model, print_fn=lines.append)
print(json.dumps({"angle_mean_deg": float(angles.mean()), "logged": float(log["angle_mean_deg"][last][0]),
                  "fc1_bits": next(r for r in numbers["layers"] if r["name"] == "fc1")["params"], "weight_quantizer": config.weight_quantizer}))
'''


def test_quantizer_from_outside_the_repository(tiny_data_dir, tmp_path):
    package = tmp_path / "user" / "mylab"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "quant.py").write_text(textwrap.dedent(USER_MODULE))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "user"), str(REPO)])}
    run_dir = tmp_path / "run"
    spec = "mylab.quant.DeadZoneSign:width=0.7"
    train = subprocess.run(
        [sys.executable, str(REPO / "run_bnn.py"), "--data_set", "MNIST", "--conv", "--fc", "16", "--debug",
         "--weight_quantizer", spec, "--activation_quantizer", spec,
         "--data_dir", str(tiny_data_dir), "--run_dir", str(run_dir)],
        env=env, capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stdout + train.stderr
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["weight_quantizer"] == saved["activation_quantizer"] == spec

    check = subprocess.run([sys.executable, "-c", CHECK, str(run_dir)], env=env, capture_output=True,
                           text=True, timeout=600, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    out = json.loads(check.stdout.strip().splitlines()[-1])
    # geometry.csv holds the angles the user's quantizer makes with the final weights
    assert out["logged"] == pytest.approx(out["angle_mean_deg"], rel=1e-5)
    assert out["fc1_bits"]["2"] == 784 * 16  # its declared precision

    report = subprocess.run([sys.executable, "-m", "bnn.report", str(run_dir), "--n_images", "20",
                             "--skip_bn_experiment", "--out_dir", str(tmp_path / "figures"),
                             "--data_dir", str(tiny_data_dir)],
                            env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert report.returncode == 0, report.stdout + report.stderr
    layers = json.loads((tmp_path / "figures" / "geometry.json").read_text())["layers"]
    fc1 = layers["fc1"] if isinstance(layers, dict) else next(l for l in layers if l["name"] == "fc1")
    from bnn import theory

    expected = theory.step_quantizer_theory([-0.7, 0.7], [-1.0, 0.0, 1.0])["angle"]
    assert np.degrees(expected) == pytest.approx(fc1["angle_theory_deg"], rel=1e-9)
