"""Save/restore test: binary and ternary networks fit on tiny random data, are saved, reloaded,
and give identical predictions and inspection tensors.

Run with ``python bnn_test.py`` or ``python -m pytest bnn_test.py``.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bnn import accelerate  # noqa: E402
from bnn.config import RunConfig  # noqa: E402
from bnn.layer_tensors import inspect_network  # noqa: E402
from bnn.model import build_model  # noqa: E402
from bnn.runs import atomic_save, load_model_file  # noqa: E402
from bnn.train import compile_model  # noqa: E402


@pytest.mark.parametrize("levels, threshold", [(2, 0.0), (3, 0.02)])
def test_fit_save_reload_identical(tmp_path, levels, threshold):
    config = RunConfig(data_set="cifar-10", conv=[8, 16], fc=[16], levels=levels,
                       threshold=threshold, epochs=2, batch_size=16).resolve()
    rng = np.random.default_rng(levels)
    x = rng.uniform(-1, 1, (64, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, 64)
    model = compile_model(build_model(config), config)
    before = model.get_layer("conv1").kernel.numpy().copy()
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert not np.array_equal(before, model.get_layer("conv1").kernel.numpy()), "no training step happened"

    path = tmp_path / "model.keras"
    atomic_save(model, path)
    # Compiled as a resumed run compiles it (XLA or not): plain Keras leaves XLA off on a CPU,
    # and the two programs may round the last bit of a score differently.
    loaded = accelerate.apply(load_model_file(path), config)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))

    levels_seen = {-1.0, 0.0, 1.0} if levels == 3 else {-1.0, 1.0}
    for a, b in zip(inspect_network(model, x[:8]), inspect_network(loaded, x[:8]), strict=True):
        assert a.name == b.name
        for field in ("weights_continuous", "weights_quantized", "inputs", "inputs_continuous", "outputs",
                      "pre_activation", "activation"):
            va, vb = getattr(a, field), getattr(b, field)
            if va is None:
                assert vb is None and a.name == "out"
            else:
                np.testing.assert_array_equal(va, vb, err_msg=f"{a.name}.{field}")
        assert set(np.unique(a.weights_quantized)) <= levels_seen
        assert np.abs(a.weights_continuous).max() <= 1.0
        if a.activation is not None:
            assert set(np.unique(a.activation)) <= levels_seen


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
