"""Binary Keras layers run on bit-packed words: the same dot products as the float layer, faster on a CPU.

A `bnn.layers.QuantConv2D` or `bnn.layers.QuantDense` whose kernel is binarized, and whose input is
the +-1 output of a binary `bnn.layers.QuantActivation`, computes sums of +-1 products: integers,
which float32 holds exactly (below 2**24). :class:`PackedLayers` computes them instead by
XOR-popcount on 64-bit words (`bnn.bitpack`), so the result is identical, not approximately equal.
The analyses that run the network many times over (the binarization-pattern experiment,
`bnn.pattern_experiment.pattern_scores`) use it for every layer it applies to.

On this project's 2-core CPU (AVX2), each binary layer of the paper's CIFAR-10 network ran a batch of
100 images 1.8 to 3.7 times as fast as oneDNN's float layer (two runs; conv2, two words per tap:
1.8-2.0x; conv3-6: 2.2-3.2x; fc1-2: 2.6-3.7x; ``benchmarks/bench_pattern_experiment.py``), and the
whole pattern experiment 1.54 times as fast.
"""

import numpy as np

from bnn.quantizers import outputs_sign

_tf = None


def _tensorflow():
    """TensorFlow, imported on first use (the module, like `bnn.bitpack` that it imports only where
    it runs, is importable on the JAX backend without it)."""
    global _tf
    if _tf is None:
        import tensorflow as tf
        _tf = tf
    return _tf


def available():
    """True where the packed path should be used: TensorFlow is installed and the float layers would
    run on a CPU (on a GPU the float convolution of cuDNN is the faster engine)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        if jax.default_backend() != "cpu":
            return False
    try:
        tf = _tensorflow()
    except ImportError:
        return False
    return not tf.config.list_physical_devices("GPU")


_FORWARD = {}


def _forward(kind):
    """The compiled dot products of one layer kind, shared by all layers (it retraces per shape)."""
    if kind not in _FORWARD:
        tf = _tensorflow()
        from bnn.bitpack import binary_dot, tf_pack_bits, tf_patches

        def conv(x, w, border, k, d):
            words = tf_pack_bits(x > 0)
            n, height, width = tf.shape(x)[0], x.shape[1], x.shape[2]
            dots = tf.reshape(binary_dot(tf_patches(words, k), w, d), [n, height, width, w.shape[0]])
            return tf.cast(dots + border, tf.float32)

        def dense(x, w, d):
            return tf.cast(binary_dot(tf_pack_bits(x > 0), w, d), tf.float32)

        _FORWARD[kind] = tf.function({"conv": conv, "dense": dense}[kind], jit_compile=True, autograph=False)
    return _FORWARD[kind]


def _binary_input(chain, i):
    """Whether ``chain[i]`` receives the +-1 output of a binary activation (through dropout and
    flatten, which pass it on unchanged at inference)."""
    import keras

    from bnn.layers import QuantActivation

    for layer in reversed(chain[:i]):
        if isinstance(layer, (keras.layers.Dropout, keras.layers.Flatten)):
            continue
        return isinstance(layer, QuantActivation) and outputs_sign(layer.quantizer)
    return False


class PackedLayers:
    """The packed form of each weight layer of a chain that has one, built when first asked for.

    A layer qualifies while its kernel quantizer outputs +-1 (`bnn.quantizers.outputs_sign`: sign,
    not a rotated one) and its input is binary. The kernel is read when the layer is first asked for: use an
    instance only while the weights stay as they are (the flags may change).

    Parameters
    ----------
    chain : list of keras.layers.Layer
        The layers of a network after its input, in order (`bnn.model.build_model`'s).
    """

    def __init__(self, chain):
        from bnn.layers import QuantConv2D, QuantDense

        self._eligible = {id(layer) for i, layer in enumerate(chain)
                          if isinstance(layer, (QuantConv2D, QuantDense)) and _binary_input(chain, i)}
        self._packed = {}
        self._runs = {}

    def get(self, layer):
        """A callable mapping a batch of the layer's +-1 inputs (a numpy array or TensorFlow tensor)
        to its dot products as a float32 tensor, or None if the layer does not qualify now."""
        # Asked on each call: the pattern experiment switches quantize_weights on and off.
        if id(layer) not in self._eligible or not outputs_sign(layer.kernel_quantizer):
            return None
        if id(layer) not in self._packed:
            self._packed[id(layer)] = self._pack(layer)
        return self._packed[id(layer)]

    def run(self, layers):
        """A compiled TensorFlow function running ``layers`` in inference mode, packed where they
        qualify: one graph, so no batch leaves TensorFlow between layers (Keras's TensorFlow
        backend only). Cached by the layers and their quantization flags, which are read when it
        is traced."""
        tf = _tensorflow()
        key = tuple((id(layer), getattr(layer, "quantize_weights", None)) for layer in layers)
        if key not in self._runs:
            steps = [self.get(layer) or (lambda h, layer=layer: layer(h, training=False)) for layer in layers]

            def forward(h):
                for step in steps:
                    h = step(h)
                return h

            self._runs[key] = (tf.function(forward, autograph=False), layers)  # the layers kept alive: ids stay theirs
        return self._runs[key][0]

    @staticmethod
    def _pack(layer):
        import keras

        from bnn.layers import QuantConv2D

        tf = _tensorflow()
        from bnn.bitpack import border_correction, pack_bits, pack_conv_kernel

        kernel = keras.ops.convert_to_numpy(layer.quantized_kernel())
        d = int(np.prod(kernel.shape[:-1]))
        if isinstance(layer, QuantConv2D):
            k = int(kernel.shape[0])  # square filters
            w = tf.constant(pack_conv_kernel(kernel > 0))
            height, width = layer.input.shape[1:3]
            border = tf.constant(border_correction(kernel.astype(np.int32), height, width))
            forward = _forward("conv")
            return lambda x: forward(x, w, border, k, d)
        w = tf.constant(pack_bits((kernel > 0).T))
        forward = _forward("dense")
        return lambda x: forward(x, w, d)
