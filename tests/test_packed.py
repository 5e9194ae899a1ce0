"""Bit-packed export and XOR-popcount inference: exactly the Keras model's integers and classes."""

import json
import os
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from bnn import bitpack
from bnn.errors import BnnError
from bnn.files import AtomicWriteError
from bnn.pack import PACKED, integer_thresholds, main as pack_main, pack_model, save_packed
from bnn.packed import PackedFileError, PackedNetwork, compare_with_keras, load_packed, validate
from conftest import MLP
from tiny_networks import images, tiny_network, write_run

CONV = dict(data_set="cifar-10", conv=[64, 70], fc=[65], max_pool=[0, 1])


def test_pack_bits_round_trip_and_layout():
    bits = np.random.default_rng(0).random((3, 130)) > 0.5
    words = bitpack.pack_bits(bits)
    assert words.shape == (3, 3) and words.dtype == np.uint64
    assert np.array_equal(bitpack.unpack_bits(words, 130), bits)
    one = np.zeros(70, bool)
    one[[0, 65]] = True  # bit 0 of word 0, bit 1 of word 1
    assert bitpack.pack_bits(one).tolist() == [1, 2]
    assert np.array_equal(bitpack.tf_pack_bits(tf.constant(bits)).numpy(), words)


@pytest.mark.parametrize("d", [64, 100])
def test_xor_popcount_dots_equal_integer_dots(d):
    rng = np.random.default_rng(d)
    a, w = rng.choice([-1, 1], (5, d)), rng.choice([-1, 1], (7, d))
    got = bitpack.binary_dot(tf.constant(bitpack.pack_bits(a > 0)), tf.constant(bitpack.pack_bits(w > 0)), d)
    assert np.array_equal(got.numpy(), a @ w.T)
    a, w = rng.choice([-1, 0, 1], (5, d)), rng.choice([-1, 0, 1], (7, d))
    planes = [tf.constant(bitpack.pack_bits(p)) for p in (a > 0, a != 0, w > 0, w != 0)]
    assert np.array_equal(bitpack.ternary_dot(*planes).numpy(), a @ w.T)


def test_thresholds_sign_of_gamma_zero_gamma_and_sign_of_zero():
    # Units: x/2 - 1.5 (zero exactly at x = 3: sign(0) = +1), its negation, gamma = 0 with a
    # negative and a zero shift (never, always +1).
    scale = np.array([0.5, -0.5, 0.0, 0.0], np.float32)
    shift = np.array([-1.5, 1.5, -1.0, 0.0], np.float32)
    sign, t_pos, _ = integer_thresholds(scale, shift, 10, 2, 0.0)
    assert sign.tolist() == [1, -1, 1, 1]
    assert t_pos.tolist() == [3, -3, 11, -10]
    # Ternary, threshold 0.5: +1 where x/2 - 1.5 > 0.5 (x >= 5), -1 where < -0.5 (x <= 1).
    _, t_pos, t_neg = integer_thresholds(scale[:1], shift[:1], 10, 3, 0.5)
    assert (t_pos.tolist(), t_neg.tolist()) == ([5], [1])


def _check_exact(net, model, x):
    result = compare_with_keras(net, model, x, batch_size=len(x))
    for name, row in result["layers"].items():
        assert (row["compared"], row["mismatched"], row["flipped"]) == (len(x), 0, 0), (name, row)
    assert result["same_class"] == len(x)
    return result


@pytest.mark.parametrize("config", [
    MLP,
    CONV,
    dict(CONV, conv=[8, 16], fc=[], max_pool=[1, 1], levels=3, threshold=0.3),
    dict(MLP, quantize_weights=[0, 1, 1]),  # float first layer (as a rotated kernel is)
    dict(data_set="MNIST", conv=[8, 8, 8], fc=[], max_pool=[1, 1, 1]),  # pooling 7x7 -> 4x4
], ids=["mlp", "conv", "ternary-conv", "float-first-layer", "odd-pooling"])
def test_packed_network_is_exact(config):
    # Sizes not multiples of 64 (padding bits), pooling and not, and 'same' borders, where Keras
    # pads with 0: the packed convolution must add the border correction to match.
    _, model = tiny_network(**config)
    x = images(model, 24)
    meta, arrays = pack_model(model)
    net = PackedNetwork(meta, arrays)
    _check_exact(net, model, x)
    first = meta["layers"][0]["name"]
    assert (f"{first}.w_float" in arrays) == (config.get("quantize_weights", [1])[0] == 0)
    scores, keras_scores = net.predict(x), model.predict(x, verbose=0)
    np.testing.assert_allclose(scores, keras_scores, rtol=1e-5, atol=1e-4)


def test_batch_norm_without_scale():
    _, model = tiny_network(**MLP, bn_scale=0)  # the authors' TF1 batch norm: a shift only
    assert model.get_layer("fc1_bn").gamma is None
    _check_exact(PackedNetwork(*pack_model(model)), model, images(model, 16))


def test_float_layers_are_refused_naming_the_layer():
    _, model = tiny_network(**MLP, continuous=True)
    with pytest.raises(BnnError, match="fc1_act does not quantize its activations"):
        pack_model(model)
    _, model = tiny_network(**MLP, quantize_weights=[1, 0, 1])
    with pytest.raises(BnnError, match="layer fc2 has float weights"):
        pack_model(model)


def test_file_round_trip_and_bad_files(tmp_path):
    _, model = tiny_network(**CONV)
    x = images(model, 8)
    meta, arrays = pack_model(model)
    path = save_packed(meta, arrays, tmp_path / PACKED)
    assert set(np.load(path).files) == {"__meta__", *arrays}
    assert np.array_equal(load_packed(path).predict(x), PackedNetwork(meta, arrays).predict(x))

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(BnnError, match="truncated"):
        load_packed(truncated)
    other = save_packed({**meta, "version": 99}, arrays, tmp_path / "other.npz")
    with pytest.raises(BnnError, match="version 99"):
        load_packed(other)
    with zipfile.ZipFile(tmp_path / "missing.npz", "w") as z:
        z.writestr("__meta__.npy", b"")
    with pytest.raises(BnnError):
        load_packed(tmp_path / "missing.npz")
    with pytest.raises(BnnError, match="does not exist"):
        load_packed(tmp_path / "nothing.npz")
    with pytest.raises(BnnError, match="shape"):
        load_packed(path).predict(np.zeros((1, 28, 28, 1), np.float32))


def test_pack_cli(tmp_path, capsys):
    config, model = tiny_network(**MLP)
    run_dir = write_run(tmp_path / "run", config, model)
    assert pack_main([str(run_dir), "--which", "final"]) == 0
    meta = json.loads(str(np.load(run_dir / PACKED)["__meta__"]))
    assert [m["name"] for m in meta["layers"]] == ["fc1", "fc2", "out"]
    x = images(model, 8)
    assert np.array_equal(load_packed(run_dir / PACKED).predict(x).argmax(1), model.predict(x, verbose=0).argmax(1))

    config, model = tiny_network(**MLP, continuous=True)
    float_run = write_run(tmp_path / "float", config, model)
    capsys.readouterr()
    assert pack_main([str(float_run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--continuous" in err and err.count("\n") == 1
    assert not (float_run / PACKED).exists()


def _meta_arrays(config):
    _, model = tiny_network(**config)
    meta, arrays = pack_model(model)
    return model, json.loads(json.dumps(meta)), arrays  # meta as the file gives it back


def _layer(meta, name):
    return next(m for m in meta["layers"] if m["name"] == name)


def _set(d, key, value):
    d[key] = value


TERNARY = dict(data_set="MNIST", conv=[8, 16], fc=[], max_pool=[1, 1], levels=3, threshold=0.05)
HOSTILE = {  # name: (network, change to (meta, arrays), what the one-line error names)
    "meta-list": (MLP, None, "its __meta__ is a JSON list, not an object"),
    "layers-empty": (MLP, lambda meta, arrays: meta.update(layers=[]), "layers is []"),
    "layer-not-object": (MLP, lambda meta, arrays: meta["layers"].insert(0, 7), "layers[0] is not an object"),
    "w_sign-shape": (MLP, lambda meta, arrays: _set(arrays, "fc2.w_sign", arrays["fc2.w_sign"][:, :1]),
                     "array fc2.w_sign is uint64 of shape (70, 1), expected uint64 of shape (70, 2)"),
    "dim-huge": (MLP, lambda meta, arrays: _layer(meta, "fc2").update(dim=10**12), "fc2: dim is 1000000000000"),
    "units-mismatch": (MLP, lambda meta, arrays: _layer(meta, "fc2").update(units=71),
                       "array fc2.w_sign is uint64 of shape (70, 2), expected uint64 of shape (71, 2)"),
    "sign-float64": (MLP, lambda meta, arrays: _set(arrays, "fc2.sign", arrays["fc2.sign"].astype(np.float64)),
                     "array fc2.sign is float64"),
    "sign-values": (MLP, lambda meta, arrays: _set(arrays, "fc2.sign", np.full(70, 3, np.int8)),
                    "fc2.sign holds values other than -1 and +1"),
    "threshold-strings": (MLP, lambda meta, arrays: _set(arrays, "fc2.t_pos", arrays["fc2.t_pos"].astype(str)),
                          "array fc2.t_pos is <U"),
    "threshold-range": (MLP, lambda meta, arrays: _set(arrays, "fc2.t_pos", np.full(70, 500, np.int32)),
                        "fc2.t_pos holds thresholds outside [-101, 101]"),
    "scale-nan": (MLP, lambda meta, arrays: arrays["out.scale"].__setitem__(0, np.nan),
                  "array out.scale holds values that are not finite"),
    "padding-bits": (MLP, lambda meta, arrays: arrays["fc2.w_sign"].__setitem__((0, 1), np.uint64(2**63)),
                     "fc2.w_sign has padding bits set"),
    "missing-array": (MLP, lambda meta, arrays: arrays.pop("out.shift"), "array out.shift is missing"),
    "extra-array": (MLP, lambda meta, arrays: _set(arrays, "fc9.w_sign", arrays["fc2.w_sign"]),
                    "array fc9.w_sign belongs to no layer"),
    "in-shape-chain": (MLP, lambda meta, arrays: _layer(meta, "out").update(in_shape=[71]),
                       "out: in_shape is [71], expected [70]"),
    "input-shape-huge": (MLP, lambda meta, arrays: meta.update(input_shape=[10**6, 10**6, 1]),
                         "input_shape [1000000, 1000000, 1]"),
    "levels-chain": (MLP, lambda meta, arrays: _layer(meta, "fc2").update(in_levels=3), "fc2: in_levels is 3"),
    "output-not-last": (MLP, lambda meta, arrays: meta["layers"].pop(), "fc2: the last layer has act_levels"),
    "output-threshold": (MLP, lambda meta, arrays: _layer(meta, "out").update(act_threshold=10**12),
                         "out: the last layer has act_threshold"),
    "dense-pool": (MLP, lambda meta, arrays: _layer(meta, "fc2").update(pool=True), "fc2: pool is True"),
    "mask-below-sign": (TERNARY, lambda meta, arrays: _set(arrays, "conv2.w_mask", np.zeros_like(arrays["conv2.w_mask"])),
                        "conv2.w_sign has a +1 where conv2.w_mask says the weight is 0"),
    "kernel-size": (TERNARY, lambda meta, arrays: _layer(meta, "conv2").update(kernel_size=0), "conv2: kernel_size is 0"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_packed_files_are_refused_naming_the_array(tmp_path, case):
    config, change, message = HOSTILE[case]
    _, meta, arrays = _meta_arrays(config)
    if change is None:
        meta = [meta]  # a JSON list where the object should be
    else:
        change(meta, arrays)
    path = save_packed(meta, arrays, tmp_path / PACKED)
    with pytest.raises(PackedFileError) as e:
        load_packed(path)
    assert message in str(e.value) and "\n" not in str(e.value) and str(path) in str(e.value)
    assert "python -m bnn.pack RUN_DIR" in str(e.value)


def test_every_packed_network_of_the_format_passes_validation():
    for config in (MLP, CONV, TERNARY, dict(MLP, quantize_weights=[0, 1, 1])):
        _, meta, arrays = _meta_arrays(config)
        validate(meta, arrays)


def test_predict_on_an_empty_batch_is_an_empty_result(tmp_path):
    model, meta, arrays = _meta_arrays(MLP)
    net = load_packed(save_packed(meta, arrays, tmp_path / PACKED))
    scores = net.predict(np.zeros((0, 28, 28, 1), np.float32))
    assert scores.shape == (0, 10) and scores.dtype == np.float32
    with pytest.raises(BnnError, match="array of numbers"):
        net.predict([["a"]])


def test_packed_file_to_an_unwritable_path_leaves_nothing(tmp_path):
    _, meta, arrays = _meta_arrays(MLP)
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(AtomicWriteError, match="could not write .*a-file/packed.npz"):
        save_packed(meta, arrays, tmp_path / "a-file" / PACKED)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / "ro").mkdir(mode=0o555)
        with pytest.raises(AtomicWriteError, match="Permission denied"):
            save_packed(meta, arrays, tmp_path / "ro" / PACKED)
        assert list((tmp_path / "ro").iterdir()) == []
