"""Bit-packed inference (bnn.packed) against the Keras model's own predict, same network, same process.

For one trained run this prints:

* file sizes: the run's .keras (with optimizer state), the float32 .keras without it, the float32
  weights alone, and packed.npz;
* exactness on the test set (``bnn.packed.compare_with_keras``): integer dot products of every
  layer, activation flips at float ties, identical predicted classes;
* end to end, batch 1 and batch 1,000: ``model.predict`` (the Keras way),
  ``model.predict_on_batch`` and ``PackedNetwork.predict``, timed in interleaved rounds;
* per layer: each hidden layer's packed XOR-popcount product against the float32 product of
  the same shape (``tf.matmul`` / ``tf.nn.conv2d`` on the unpacked kernel), both under XLA,
  and for dense layers three formulations of the XOR-popcount sum.

Every timing is over interleaved rounds (A B C A B C ...) so that a shared machine's drift hits all
variants alike; it prints the median, best (min), and max seconds per call, and the per-round
speed-up's median, min and max.

    python benchmarks/bench_inference.py runs/MNIST-binary --data_dir ~/bnn_data
    python benchmarks/bench_inference.py RUN_DIR --rounds 9 --skip_check
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def interleaved(variants, rounds, reps=1):
    """``{name: [seconds per call, one per round]}``, variants called in turn each round."""
    for fn in variants.values():  # warm-up: tracing, XLA compilation, first allocations
        fn()
    times = {name: [] for name in variants}
    for r in range(rounds):
        names = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in names:
            start = time.perf_counter()
            for _ in range(reps):
                variants[name]()
            times[name].append((time.perf_counter() - start) / reps)
    return times


def report(title, times, baseline):
    """Print median / best / max per variant and the per-round speed-up over ``baseline``."""
    print(f"\n{title}")
    for name, t in times.items():
        line = (f"  {name:28s} median {1e3 * statistics.median(t):9.3f} ms   best {1e3 * min(t):9.3f}   "
                f"max {1e3 * max(t):9.3f}")
        if name != baseline:
            speedup = [b / s for b, s in zip(times[baseline], t)]
            line += (f"   speed-up x{statistics.median(speedup):.2f} (min {min(speedup):.2f}, "
                     f"max {max(speedup):.2f})")
        print(line)


def file_sizes(run_dir, which, config, model, out_dir):
    """Sizes in bytes of the run's model file, float32 files without optimizer, and packed.npz."""
    from bnn.model import build_model
    from bnn.pack import pack_run
    from bnn.runs import resolve_model_path

    bare = build_model(config)  # uncompiled: no optimizer state in what it saves
    bare.set_weights(model.get_weights())
    bare.save(out_dir / "float32.keras")
    bare.save_weights(out_dir / "float32.weights.h5")
    packed = pack_run(run_dir, which, out=out_dir / "packed.npz")
    sizes = {"run's .keras (with optimizer state)": resolve_model_path(run_dir, which).stat().st_size,
             "float32 .keras, no optimizer": (out_dir / "float32.keras").stat().st_size,
             "float32 .weights.h5": (out_dir / "float32.weights.h5").stat().st_size,
             "packed.npz": packed.stat().st_size}
    print("\nfile sizes")
    for name, size in sizes.items():
        print(f"  {name:36s} {size / 1e6:9.3f} MB   x{size / sizes['packed.npz']:.1f} packed")
    return packed


def check(net, model, x, y):
    from bnn.packed import compare_with_keras

    start = time.perf_counter()
    result = compare_with_keras(net, model, x, batch_size=500)
    print(f"\nexactness on {result['images']} test images ({time.perf_counter() - start:.0f} s)")
    for name, row in result["layers"].items():
        print(f"  {name:6s} images compared {row['compared']:6d}   dot products differing {row['mismatched']}"
              f"   max |diff| {row['max_abs_diff']:.3g}   activations flipped (float ties) {row['flipped']}"
              + (f" at |batch-normed value| <= {row['flip_max_abs_pre_activation']:.2g}" if row["flipped"] else ""))
    keras_class = model.predict(x, batch_size=1000, verbose=0).argmax(1)
    packed_class = net.predict(x).argmax(1)
    print(f"  same predicted class as Keras predict: {(keras_class == packed_class).sum()} / {len(x)}; "
          f"as the inspected model: {result['same_class']} / {len(x)}; Keras score ties: {result['score_ties']}")
    if y is not None:
        print(f"  test accuracy: Keras {(keras_class == y).mean():.4f}, packed {(packed_class == y).mean():.4f}")


def end_to_end(net, model, x, rounds):
    import numpy as np

    for batch in (1, 1000):
        xb = np.ascontiguousarray(np.resize(x, (batch, *x.shape[1:])))
        reps = 20 if batch == 1 else 1
        variants = {"keras predict": lambda: model.predict(xb, batch_size=batch, verbose=0),
                    "keras predict_on_batch": lambda: model.predict_on_batch(xb),
                    "packed predict": lambda: net.predict(xb, batch_size=batch)}
        if batch > 1:  # predict_on_batch only saves predict's per-call overhead, which matters at batch 1
            del variants["keras predict_on_batch"]
        times = interleaved(variants, rounds, reps)
        report(f"end to end, batch {batch} ({rounds} rounds of {reps} calls)", times, "keras predict")


def _float_product(layer, kernel):
    import tensorflow as tf

    if layer.kind == "conv":
        return tf.function(lambda a: tf.nn.conv2d(a, kernel, 1, "SAME"), jit_compile=True)
    return tf.function(lambda a: tf.matmul(a, kernel), jit_compile=True)


def _dense_formulations(w):
    """XOR-popcount sums of a dense layer: the library's (int16 sum over words), int32, and the
    weights transposed so that XLA vectorizes across units instead of words."""
    import tensorflow as tf

    from bnn.bitpack import WORD

    pc = tf.raw_ops.PopulationCount
    d = w.shape[1] * WORD
    wt = tf.transpose(w)

    def int32_sum(x):
        xor = tf.bitwise.bitwise_xor(x[:, None, :], w[None])
        return d - 2 * tf.reduce_sum(tf.cast(pc(x=xor), tf.int32), -1)

    def units_minor(x):
        xor = tf.bitwise.bitwise_xor(x[:, :, None], wt[None])
        return d - 2 * tf.reduce_sum(tf.cast(pc(x=xor), tf.int32), 1)

    return {"xor-popcount, int32 sum": tf.function(int32_sum, jit_compile=True),
            "xor-popcount, units minor": tf.function(units_minor, jit_compile=True)}


def per_layer(net, batch, rounds):
    """Each packed hidden layer's product against the float32 product of the same shape."""
    import numpy as np
    import tensorflow as tf

    from bnn.bitpack import n_words

    rng = np.random.default_rng(0)
    for layer in net.layers[1:]:
        if layer.levels != 2:
            continue
        words = n_words(layer.in_shape[-1])
        planes = tf.constant(rng.integers(0, 2 ** 63, (batch, *layer.in_shape[:-1], words), dtype=np.uint64))
        x_float = tf.constant(rng.choice([-1.0, 1.0], (batch, *layer.in_shape)).astype(np.float32))
        kernel = tf.constant(rng.choice([-1.0, 1.0], (layer.m["dim"], layer.units)).astype(np.float32))
        if layer.kind == "conv":
            k = layer.m["kernel_size"]
            kernel = tf.reshape(kernel, (k, k, layer.in_shape[-1], layer.units))
        else:
            x_float = tf.reshape(x_float, (batch, -1))
        packed = tf.function(lambda p: layer.dots((p,)), jit_compile=True)
        variants = {"float32 (XLA)": lambda: _float_product(layer, kernel)(x_float).numpy(),
                    "xor-popcount (bnn.bitpack)": lambda: packed(planes).numpy()}
        if layer.kind == "dense":
            flat = tf.reshape(planes, (batch, -1))
            for name, fn in _dense_formulations(layer.w_sign).items():
                variants[name] = lambda fn=fn: fn(flat).numpy()
        shape = f"{batch}x{layer.m['dim']} by {layer.m['dim']}x{layer.units}"
        if layer.kind == "conv":
            shape = f"batch {batch}, {layer.in_shape} -> {layer.units} maps, 3x3"
        report(f"layer {layer.name}: {shape} ({rounds} rounds)", interleaved(variants, rounds), "float32 (XLA)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a trained binary run directory (it is only read)")
    parser.add_argument("--which", default="best", help="'best', 'final' or a checkpoint epoch")
    parser.add_argument("--data_dir", default=None,
                        help="where the data sets are (default: the run's --data_dir if it had one, "
                             "else $BNN_DATA_DIR, else data/)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--layer_batch", type=int, default=100, help="batch of the per-layer products")
    parser.add_argument("--skip_check", action="store_true", help="skip the exactness check on the test set")
    args = parser.parse_args(argv)
    which = int(args.which) if args.which.isdigit() else args.which

    import keras
    import tensorflow as tf

    from bnn.packed import load_packed
    from bnn.runs import load_run
    from bnn.runs import load_dataset

    config, model = load_run(args.run_dir, which)
    if args.data_dir:
        config.data_dir = args.data_dir
    data = load_dataset(config)
    print(f"{args.run_dir} ({which}): {config.data_set} {config.mode}, conv {config.conv} fc {config.fc}; "
          f"{os.cpu_count()} CPUs, TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"Keras predict jit_compile={model.jit_compile}")
    with tempfile.TemporaryDirectory() as tmp:
        net = load_packed(file_sizes(args.run_dir, which, config, model, Path(tmp)))
    if not args.skip_check:
        check(net, model, data.x_test, data.y_test)
    end_to_end(net, model, data.x_test, args.rounds)
    per_layer(net, args.layer_batch, args.rounds)


if __name__ == "__main__":
    main()
