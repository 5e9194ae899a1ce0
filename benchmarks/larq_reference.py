"""The paper's networks written with Larq 0.14 (tf-keras 2), as a speed reference for bench_train.py.

Not part of bnn and never needed by it or by CI: run it with a Python that has Larq, e.g. a venv
made with ``python -m venv larq-venv && larq-venv/bin/pip install
"tensorflow==2.17.*" "tf-keras==2.17.*" "numpy<2" "larq==0.14.*"``, then

    python benchmarks/bench_train.py --net conv --larq larq-venv/bin/python

Same architecture as ``bnn.model.build_model``: weights -> [2x2 max pool] -> batch norm
(momentum 0.9, epsilon 1e-4) per layer, sign activations (Larq: the next layer's
``input_quantizer``), ``ste_sign`` kernels with ``weight_clip``, no biases, the image and the
scores unquantized; Adam with gradients clipped to [-1, 1] and the squared hinge loss.
tf-keras compiles the train step without XLA. The worker protocol is bench_train.py's.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Larq 0.14 needs Keras 2: TensorFlow 2.16+ gives it tf-keras only when asked.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def build(net, binary):
    import larq as lq
    import tensorflow as tf

    layers = tf.keras.layers
    bn = dict(momentum=0.9, epsilon=1e-4)
    quant = dict(kernel_quantizer="ste_sign", kernel_constraint="weight_clip") if binary else {}

    def act():
        # Binary: the sign lives in the next layer's input_quantizer. Float: hard tanh.
        return [] if binary else [layers.Activation(lambda x: tf.clip_by_value(x, -1.0, 1.0))]

    inputs_q = dict(input_quantizer="ste_sign") if binary else {}
    model = tf.keras.Sequential()
    if net == "conv":
        model.add(tf.keras.Input((32, 32, 3)))
        for i, filters in enumerate([128, 128, 256, 256, 512, 512]):
            model.add(lq.layers.QuantConv2D(filters, 3, padding="same", use_bias=False,
                                            **quant, **(inputs_q if i else {})))
            if i % 2:
                model.add(layers.MaxPooling2D(2, padding="same"))
            model.add(layers.BatchNormalization(**bn))
            for a in act():
                model.add(a)
        model.add(layers.Flatten())
        hidden, first_dense_input_q = [1024, 1024], inputs_q
    else:
        model.add(tf.keras.Input((28, 28, 1)))
        model.add(layers.Flatten())
        hidden, first_dense_input_q = [2048, 2048, 2048], {}
    for i, units in enumerate(hidden):
        model.add(lq.layers.QuantDense(units, use_bias=False, **quant,
                                       **(first_dense_input_q if i == 0 else inputs_q)))
        model.add(layers.BatchNormalization(**bn))
        for a in act():
            model.add(a)
    model.add(lq.layers.QuantDense(10, use_bias=False, **quant, **inputs_q))
    model.add(layers.BatchNormalization(**bn))

    def squared_hinge(y_true, y_pred):
        targets = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), 10) * 2.0 - 1.0
        return tf.reduce_mean(tf.square(tf.nn.relu(1.0 - targets * y_pred)), axis=-1)

    model.compile(tf.keras.optimizers.Adam(1e-3, clipvalue=1.0), squared_hinge,
                  metrics=["sparse_categorical_accuracy"])
    return model


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--net", choices=["conv", "mlp"], required=True)
    p.add_argument("--kind", choices=["binary", "float"], required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--batch_size", type=int, required=True)
    args = p.parse_args()
    try:
        import larq  # noqa: F401
    except ImportError:
        sys.exit("error: larq is not installed in this Python: see this file's docstring")
    import numpy as np

    model = build(args.net, args.kind == "binary")
    shape = (32, 32, 3) if args.net == "conv" else (28, 28, 1)
    n = args.batch_size * args.steps
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (n, *shape)).astype("float32")
    y = rng.integers(0, 10, n)

    def round_seconds():
        """Wall-clock and CPU seconds per step, as bench_train.time_steps."""
        start, cpu = time.perf_counter(), time.process_time()
        model.fit(x, y, batch_size=args.batch_size, epochs=1, shuffle=False, verbose=0)
        return (time.perf_counter() - start) / args.steps, (time.process_time() - cpu) / args.steps

    round_seconds()  # warm-up: tracing
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        print("%.6f %.6f" % round_seconds(), flush=True)


if __name__ == "__main__":
    main()
