"""The analysis cache: what it stores comes back equal, a changed key or a damaged file recomputes."""

import numpy as np
import pytest

from bnn import analysis_cache
from bnn.network_geometry import LayerGeometry


def layer():
    rng = np.random.default_rng(0)
    wc = rng.normal(0, 0.1, (3, 3, 2, 4)).astype("float32")
    return LayerGeometry(
        name="conv1", kind="conv", levels=2, threshold=0.0, quantize_weights=True, quantized_input=False,
        weights_continuous=wc, weights_quantized=np.where(wc >= 0, 1.0, -1.0).astype("float32"),
        dots={"Ab.Wb": rng.normal(size=50).astype("float32")}, n_dot_products=1000,
        filters=rng.integers(0, 4, 50), batch_norm={"gamma": np.ones(4, "float32"), "epsilon": 1e-4},
        input_mean=np.float64(0.25), weights_rotated=None, activation_std=None)


def test_values_come_back_equal_with_their_types(tmp_path):
    value = {"layers": [layer()], "accuracy": 0.5, "summaries": {"conv1": {"r": None, "n": 3, "ok": True,
                                                                             "fractions": {"-1": 0.5}}},
             "rows": [{"pattern": "all", "quantize_weights": [1, 0]}], "ternary": np.array([-1.0, 0.0, 1.0])}
    path = tmp_path / "c.npz"
    analysis_cache.write(path, {"format": analysis_cache.FORMAT}, value)
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temporary file left
    key, back = analysis_cache.read(path)
    assert key == {"format": analysis_cache.FORMAT}
    (a,), (b,) = back["layers"], value["layers"]
    assert isinstance(a, LayerGeometry)
    for name in ("weights_continuous", "weights_quantized", "filters"):
        got, want = getattr(a, name), getattr(b, name)
        assert got.dtype == want.dtype and np.array_equal(got, want), name
    assert a.dots.keys() == b.dots.keys() and np.array_equal(a.dots["Ab.Wb"], b.dots["Ab.Wb"])
    assert a.batch_norm["epsilon"] == 1e-4 and a.input_mean == 0.25 and a.weights_rotated is None
    assert a.name == "conv1" and a.quantize_weights is True and a.n_dot_products == 1000
    assert back["summaries"] == value["summaries"] and back["rows"] == value["rows"] and back["accuracy"] == 0.5
    assert back["ternary"].dtype == np.float64 and np.array_equal(back["ternary"], value["ternary"])


def test_quantized_kernels_are_stored_in_a_quarter_of_the_bytes(tmp_path):
    w = np.sign(np.random.default_rng(0).normal(size=(256, 256))).astype("float32")
    analysis_cache.write(tmp_path / "q.npz", {}, {"w": w})
    analysis_cache.write(tmp_path / "f.npz", {}, {"w": w * 0.5})
    assert (tmp_path / "q.npz").stat().st_size < 0.3 * (tmp_path / "f.npz").stat().st_size


def test_cached_computes_once_per_key_and_says_what_changed(tmp_path):
    calls, lines = [], []

    def compute():
        calls.append(1)
        return {"x": np.arange(3) * len(calls)}

    path = tmp_path / "cache" / "geometry-best.npz"
    key = {"format": analysis_cache.FORMAT, "model": "abc", "seed": 0}
    value, hit = analysis_cache.cached(path, key, compute, lines.append)
    assert not hit and len(calls) == 1 and lines == []
    value, hit = analysis_cache.cached(path, dict(key), compute, lines.append)
    assert hit and len(calls) == 1 and np.array_equal(value["x"], [0, 1, 2])
    assert lines == [f"read from the analysis cache {path} (delete it to recompute)"]
    lines.clear()
    value, hit = analysis_cache.cached(path, {**key, "seed": 1, "model": "def"}, compute, lines.append)
    assert not hit and len(calls) == 2 and np.array_equal(value["x"], [0, 2, 4])
    assert lines == [f"the analysis cache {path} was made for another model, seed: recomputing"]
    lines.clear()
    assert analysis_cache.cached(path, {**key, "seed": 1, "model": "def"}, compute, lines.append)[1]
    # a file of another layout is not decoded
    assert not analysis_cache.cached(path, {**key, "format": -1}, compute, lines.append)[1]


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not really a zip", b"\x93NUMPY garbage"])
def test_a_damaged_file_costs_one_line_and_is_replaced(tmp_path, content):
    lines = []
    path = tmp_path / "c.npz"
    path.write_bytes(content)
    value, hit = analysis_cache.cached(path, {"format": analysis_cache.FORMAT}, lambda: {"v": 1}, lines.append)
    assert not hit and value == {"v": 1}
    assert len(lines) == 1 and lines[0].startswith(f"ignoring the damaged analysis cache {path} (")
    assert analysis_cache.read(path) == ({"format": analysis_cache.FORMAT}, {"v": 1})


def test_a_file_holding_pickled_objects_is_refused_not_unpickled(tmp_path):
    path = tmp_path / "c.npz"
    np.savez(path, __meta__=np.array([{"key": {}}], dtype=object))  # savez pickles object arrays
    with pytest.raises(ValueError, match="allow_pickle"):
        analysis_cache.read(path)
    with pytest.raises(TypeError, match="cannot cache"):
        analysis_cache.write(tmp_path / "d.npz", {}, {"v": object()})
    with pytest.raises(TypeError, match="Python objects"):
        analysis_cache.write(tmp_path / "d.npz", {}, {"v": np.array([None])})


def test_an_unwritable_cache_costs_one_line_not_the_result(tmp_path):
    (tmp_path / "file").write_text("")
    lines = []
    value, hit = analysis_cache.cached(tmp_path / "file" / "c.npz", {"format": analysis_cache.FORMAT},
                                       lambda: {"v": 2}, lines.append)
    assert value == {"v": 2} and not hit
    assert len(lines) == 1 and lines[0].startswith("could not write the analysis cache")


def test_code_digest_ignores_the_figure_modules():
    assert "plotting.py" in analysis_cache.PRESENTATION_MODULES and "report.py" in analysis_cache.PRESENTATION_MODULES
    assert "network_geometry.py" not in analysis_cache.PRESENTATION_MODULES
    assert len(analysis_cache.code_digest()) == 64


READ_WITHOUT_KERAS = """
import sys
from bnn import analysis_cache
key, value = analysis_cache.read(sys.argv[1])
backend = analysis_cache.keras_backend()
assert "keras" not in sys.modules and "tensorflow" not in sys.modules and "jax" not in sys.modules, \\
    sorted(m for m in sys.modules if m.split(".")[0] in ("keras", "tensorflow", "jax"))
import keras
assert backend == keras.backend.backend(), (backend, keras.backend.backend())
(a,) = value["layers"]
assert a.weight_quantizer == value["quantizer"] and a.weight_quantizer.spec() == "ternary:threshold=0.05,relative=false"
print("ok")
"""


def test_a_cache_hit_reads_quantizers_without_importing_keras(tmp_path):
    """Reading a stored analysis (the second run of gen_plots.ipynb) must not start Keras and its
    backend (seconds); the backend in the key is still the one Keras would use."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from bnn.quantizers import Ternary

    value = {"layers": [layer()], "quantizer": Ternary(0.05)}
    value["layers"][0].weight_quantizer = Ternary(0.05)
    analysis_cache.write(tmp_path / "c.npz", {"format": analysis_cache.FORMAT}, value)
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", READ_WITHOUT_KERAS, str(tmp_path / "c.npz")],
                         env={**os.environ, "PYTHONPATH": str(repo)}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
