"""Bit packing and XOR-popcount dot products, in numpy (packing files) and TensorFlow (inference).

A vector of ``c`` values in {-1, +1} is stored as ``ceil(c / 64)`` 64-bit words, value ``i`` in
bit ``i % 64`` of word ``i // 64``, bit 1 for +1 and bit 0 for -1; the bits past ``c`` are 0 in
both operands, so they never count. For two such vectors of length ``d``::

    a . w = d - 2 * popcount(a XOR w)

A ternary vector in {-1, 0, +1} is two bit planes: ``sign`` (1 for +1) and ``mask`` (1 where
non-zero), and ``a . w = popcount(ma & mw) - 2 * popcount((sa XOR sw) & ma & mw)``.
The TensorFlow functions are meant to run under ``tf.function(jit_compile=True)``: XLA fuses the
XOR, the popcount (``tf.raw_ops.PopulationCount``) and the sum into one loop, with no hand-written
kernel.
"""

import numpy as np
import tensorflow as tf

WORD = 64
_SHIFTS = tf.constant(np.arange(WORD, dtype=np.uint64))


def n_words(c):
    """Words that hold ``c`` bits."""
    return -(-int(c) // WORD)


def pack_bits(bits):
    """Pack booleans along the last axis into little-endian 64-bit words (numpy).

    Parameters
    ----------
    bits : array of bool, shape (..., c)

    Returns
    -------
    ndarray of uint64, shape (..., ceil(c / 64))
        Bit ``i % 64`` of word ``i // 64`` is ``bits[..., i]``; the padding bits are 0.
    """
    bits = np.asarray(bits, dtype=bool)
    c = bits.shape[-1]
    padded = np.zeros(bits.shape[:-1] + (n_words(c) * WORD,), dtype=bool)
    padded[..., :c] = bits
    packed = np.packbits(padded, axis=-1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64)


def unpack_bits(words, c):
    """Inverse of :func:`pack_bits`: the first ``c`` bits along the last axis, as bool."""
    words = np.ascontiguousarray(words, dtype="<u8")
    bits = np.unpackbits(words.view(np.uint8), axis=-1, bitorder="little")
    return bits[..., :c].astype(bool)


def tf_pack_bits(bits):
    """:func:`pack_bits` in TensorFlow: bool tensor (..., c) with a static ``c`` -> uint64 words."""
    c = bits.shape[-1]
    w = n_words(c)
    rank = len(bits.shape)
    if w * WORD != c:
        bits = tf.pad(bits, [[0, 0]] * (rank - 1) + [[0, w * WORD - c]])
    x = tf.cast(bits, tf.uint64)
    x = tf.reshape(x, tf.concat([tf.shape(x)[:-1], [w, 2, WORD // 2]], 0))
    # Distinct bits: the sum is their OR. Two sums of at most 32 (see _CHUNK) fuse; one of 64 does not.
    halves = tf.reduce_sum(tf.bitwise.left_shift(x, tf.reshape(_SHIFTS, [2, WORD // 2])), axis=-1)
    return tf.reduce_sum(halves, axis=-1)


# XLA rewrites a reduction over more than 32 elements into a reduce-window it does not fuse with
# the XOR and popcount, materialising every (row, unit, word) count: 10 times slower on the
# paper's conv5-6. Each sum below is therefore over at most 32 words, and the partial sums added.
_CHUNK = 32


def _chunked_count(words_of, p):
    """Sum over words of ``popcount(words_of(start, stop))``, in chunks of at most 32 words -> int32."""
    total = []
    for start in range(0, p, _CHUNK):
        # int16 lanes are faster than int32 under XLA; a chunk counts at most 32 * 64 bits.
        counts = tf.cast(tf.raw_ops.PopulationCount(x=words_of(start, min(start + _CHUNK, p))), tf.int16)
        total.append(tf.cast(tf.reduce_sum(counts, axis=-1), tf.int32))
    return tf.add_n(total)


def binary_dot(x, w, d):
    """Dot products of binary vectors from their packed words.

    Parameters
    ----------
    x : uint64 tensor, shape (m, p)
        ``m`` packed input vectors.
    w : uint64 tensor, shape (f, p)
        ``f`` packed weight vectors.
    d : int
        Length of the vectors (bits that count).

    Returns
    -------
    int32 tensor, shape (m, f)
        ``d - 2 * popcount(x XOR w)``.
    """
    xor = lambda a, b: tf.bitwise.bitwise_xor(x[:, None, a:b], w[None, :, a:b])  # noqa: E731
    return d - 2 * _chunked_count(xor, x.shape[-1])


def ternary_dot(xs, xm, ws, wm):
    """Dot products of ternary vectors from their sign and mask planes, each shaped as in :func:`binary_dot`."""
    def both(a, b):
        return tf.bitwise.bitwise_and(xm[:, None, a:b], wm[None, :, a:b])

    def differ(a, b):
        return tf.bitwise.bitwise_and(tf.bitwise.bitwise_xor(xs[:, None, a:b], ws[None, :, a:b]), both(a, b))

    p = xs.shape[-1]
    return _chunked_count(both, p) - 2 * _chunked_count(differ, p)


def same_padding(k):
    """(before, after) padding of a 'same' convolution with stride 1 and a ``k``-wide filter."""
    return (k - 1) // 2, k - 1 - (k - 1) // 2


def tf_patches(x, k):
    """Stride-1 'same' patches of packed feature maps, padded with zero words.

    Parameters
    ----------
    x : tensor, shape (n, h, w, c_words)
    k : int
        Filter side.

    Returns
    -------
    tensor, shape (n * h * w, k * k * c_words)
        Taps in the order (row, column, word), the order of :func:`pack_conv_kernel`.
    """
    before, after = same_padding(k)
    _, h, w, c = x.shape
    xp = tf.pad(x, [[0, 0], [before, after], [before, after], [0, 0]])
    taps = [xp[:, i:i + h, j:j + w, :] for i in range(k) for j in range(k)]
    return tf.reshape(tf.concat(taps, axis=-1), [-1, k * k * c])


def pack_conv_kernel(bits):
    """Pack a conv kernel's bits (k, k, c_in, f) as (f, k * k * ceil(c_in / 64)) words."""
    k, _, _, f = bits.shape
    return pack_bits(np.transpose(bits, (3, 0, 1, 2))).reshape(f, -1)


def border_correction(kernel, height, width):
    """What zero padding adds back to the binary XOR-popcount result of a 'same' convolution.

    The packed path pads feature maps with zero words, which read as -1 inputs; Keras pads with
    0, which adds nothing. Each tap that falls outside the image thus adds ``-sum_c w[tap, c, f]``,
    which this returns negated, per output position.

    Parameters
    ----------
    kernel : array, shape (k, k, c_in, f), values in {-1, +1}
    height, width : int
        Size of the layer's input (and output) feature maps.

    Returns
    -------
    ndarray of int32, shape (height, width, f)
    """
    k = kernel.shape[0]
    before, _ = same_padding(k)
    tap_sums = kernel.sum(axis=2).astype(np.int32)  # (k, k, f)
    corr = np.zeros((height, width, kernel.shape[-1]), dtype=np.int32)
    rows, cols = np.arange(height), np.arange(width)
    for i in range(k):
        for j in range(k):
            outside = ((rows[:, None] + i - before < 0) | (rows[:, None] + i - before >= height)
                       | (cols[None, :] + j - before < 0) | (cols[None, :] + j - before >= width))
            corr[outside] += tap_sums[i, j]
    return corr
