"""bnn.summary: weights by bit width, memory, MACs by precision, and the command line."""

import subprocess
import sys
from pathlib import Path

import pytest

import bnn
from bnn.summary import main as summary_main
from tiny_networks import tiny_network, write_run

REPO = Path(__file__).resolve().parents[1]
MLP = dict(data_set="MNIST", conv=[], fc=[100])


def _row(result, name):
    return next(r for r in result["layers"] if r["name"] == name)


def test_binary_mlp_counts_and_totals():
    _, model = tiny_network(**MLP)
    result = bnn.summary(model, print_fn=None)
    fc1, out, bn = _row(result, "fc1"), _row(result, "out"), _row(result, "fc1_bn")
    # The first layer sees the float image: its MACs are 32-bit; the output layer's are binary.
    assert (fc1["input_bits"], fc1["params"], fc1["macs"]) == (32, {1: 78400, 2: 0, 32: 0}, {1: 0, 2: 0, 32: 78400})
    assert (out["input_bits"], out["params"][1], out["macs"][1]) == (1, 1000, 1000)
    assert bn["params"] == {1: 0, 2: 0, 32: 400} and bn["output_shape"] == (100,)
    tot = result["totals"]
    assert tot["packed_bytes"] == (78400 + 1000) / 8 + 4 * (400 + 40)
    assert tot["float32_bytes"] == 4 * (78400 + 1000 + 440)
    assert tot["compression"] == pytest.approx(tot["float32_bytes"] / tot["packed_bytes"])
    assert tot["quantized_mac_share"] == pytest.approx(1000 / 79400)


def test_conv_macs_ternary_and_float_networks():
    _, model = tiny_network(data_set="cifar-10", conv=[8, 16], fc=[], levels=3, threshold=0.1)
    result = bnn.summary(model, print_fn=None)
    conv2 = _row(result, "conv2")
    assert conv2["input_bits"] == 2 and conv2["params"][2] == 3 * 3 * 8 * 16
    assert conv2["macs"][2] == 32 * 32 * 3 * 3 * 8 * 16  # 'same' padding: outputs 32x32 before pooling
    _, model = tiny_network(**MLP, continuous=True)
    tot = bnn.summary(model, print_fn=None)["totals"]
    assert tot["params"][1] == tot["params"][2] == 0
    assert tot["compression"] == 1.0 and tot["quantized_mac_share"] == 0.0


def test_printed_table(capsys):
    _, model = tiny_network(**MLP)
    bnn.summary(model)
    text = capsys.readouterr().out
    for expected in ("Input prec. (bit)", "fc1_bn", "78,400", "compression ratio", "Binary or ternary MACs"):
        assert expected in text


def test_command_line_and_light_import(tmp_path):
    config, model = tiny_network(**MLP)
    run_dir = write_run(tmp_path / "run", config, model)
    # `import bnn` stays free of Keras; then the module runs as `python -m bnn.summary` does.
    code = ("import runpy, sys, bnn; assert 'keras' not in sys.modules; "
            f"sys.argv = ['bnn.summary', {str(run_dir)!r}, '--which', 'final']; "
            "runpy.run_module('bnn.summary', run_name='__main__', alter_sys=True)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "compression ratio" in done.stdout


def test_command_line_refuses_a_missing_run(tmp_path, capsys):
    assert summary_main([str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
