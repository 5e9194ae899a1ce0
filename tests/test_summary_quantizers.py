"""bnn.summary counts each layer's weights and MACs at its quantizers' declared precision."""

import bnn.summary
from bnn.config import RunConfig
from bnn.model import build_model


def test_declared_precision_gets_its_own_column():
    config = RunConfig(data_set="MNIST", conv=[], fc=[8, 8], weight_quantizer="uniform:bits=4").resolve()
    lines = []
    numbers = bnn.summary(build_model(config), print_fn=lines.append)
    rows = {r["name"]: r for r in numbers["layers"]}
    assert rows["fc2"]["params"] == {1: 0, 2: 0, 4: 64, 32: 0}
    assert rows["fc2"]["macs"] == {1: 0, 2: 0, 4: 64, 32: 0}  # 4-bit weights, 1-bit inputs: the wider
    assert rows["fc1"]["macs"][32] == 784 * 8  # the float image
    assert rows["fc2"]["memory_bytes"] == 64 * 4 / 8
    assert "# 4-bit" in lines[0] and "Below 32-bit MACs:" in lines[0]
