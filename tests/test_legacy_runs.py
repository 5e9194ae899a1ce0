"""Run directories written before quantizers were objects load and report exactly as they did.

Each folder under tests/fixtures/legacy_runs is a tiny run (fake MNIST, ``--debug``) written by that
earlier code, with ``expected.npz`` / ``expected.json`` recorded by it
(tests/fixtures/legacy_runs/record_expected.py): predictions on fixed images, the summary table and
the per-layer geometry numbers.
"""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "legacy_runs"
sys.path.insert(0, str(FIXTURES))
from record_expected import reported  # noqa: E402

RUNS = sorted(p.name for p in FIXTURES.iterdir() if (p / "config.json").exists())


def _close(a, b, path=""):
    """Assert nested JSON values equal, floats to 1e-5 relative."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, (int, float)):
        assert (math.isnan(a) and math.isnan(b)) or b == pytest.approx(a, rel=1e-5, abs=1e-7), path
    else:
        assert a == b, path


@pytest.mark.parametrize("name", RUNS)
def test_legacy_run_loads_and_reports_identically(name):
    run_dir = FIXTURES / name
    scores, table, layers = reported(run_dir)
    np.testing.assert_allclose(scores, np.load(run_dir / "expected.npz")["scores"], rtol=1e-5, atol=1e-5)
    expected = json.loads((run_dir / "expected.json").read_text())
    assert table == expected["summary"]
    _close(expected["geometry"], json.loads(json.dumps(layers, default=float)))


@pytest.mark.parametrize("name", RUNS)
def test_legacy_config_still_resolves(name):
    from bnn.config import RunConfig

    config = RunConfig.load(FIXTURES / name / "config.json")
    saved = json.loads((FIXTURES / name / "config.json").read_text())
    assert config.levels == saved["levels"]
    assert config.threshold_weights == saved["threshold_weights"]
    assert config.rotate_first_layer == saved["rotate_first_layer"]


@pytest.mark.parametrize("name", RUNS)
def test_network_built_today_from_the_saved_config_computes_the_same(name):
    """The saved config builds a network (quantizers from --levels and the thresholds) that, given the
    saved weights, predicts what the saved network did."""
    from bnn.config import RunConfig
    from bnn.model import build_model
    from bnn.runs import load_run
    from record_expected import probe_images

    config = RunConfig.load(FIXTURES / name / "config.json")
    saved = load_run(FIXTURES / name)[1]
    model = build_model(config)
    model.set_weights(saved.get_weights())
    np.testing.assert_allclose(model.predict(probe_images(), verbose=0),
                               np.load(FIXTURES / name / "expected.npz")["scores"], rtol=1e-5, atol=1e-5)
