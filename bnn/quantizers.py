"""Binarization and ternarization with the straight-through estimator.

The forward rule maps a real tensor to a few levels; the backward rule passes the incoming
gradient straight through where ``|x| <= 1`` and cancels it elsewhere (Courbariaux, Hubara et
al. 2016, "Binarized Neural Networks", arXiv:1602.02830; the gradient of hard tanh).
"""

import keras
from keras import ops

from bnn.levels import levels_problem, threshold_problem


def straight_through(forward, cancel=True):
    """Give ``forward`` the straight-through gradient with cancellation.

    Parameters
    ----------
    forward : callable
        Element-wise map from a tensor to a tensor of the same shape and dtype.
    cancel : bool
        Zero the gradient where ``|x| > 1``. Pass False only for inputs known to lie in
        [-1, 1], where the mask is all ones: it then saves two passes over the tensor.

    Returns
    -------
    f : callable
        ``f(x) = forward(x)`` in the forward pass; ``df/dx = 1[|x| <= 1]`` in the backward pass.
    """

    @ops.custom_gradient
    def f(x):
        def grad(*args, upstream=None):
            # Keras passes the upstream gradient positionally on JAX, by keyword on TensorFlow.
            if upstream is None:
                (upstream,) = args
            if not cancel:
                return upstream
            return upstream * ops.cast(ops.abs(x) <= 1.0, upstream.dtype)

        return forward(x), grad

    return f


def _sign(x):
    # sign(0) = +1, so every value is exactly -1 or +1.
    return ops.cast(x >= 0, x.dtype) * 2.0 - 1.0


def _ternary(threshold):
    def forward(x):
        return ops.cast(x > threshold, x.dtype) - ops.cast(x < -threshold, x.dtype)

    return forward


_binarize = {cancel: straight_through(_sign, cancel) for cancel in (True, False)}


def _as_tensor(x):
    # A variable read inside custom_gradient makes TensorFlow demand a `variables` gradient;
    # ops.copy reads it outside (tf.identity: no data is copied).
    return ops.copy(x) if isinstance(x, keras.Variable) else ops.convert_to_tensor(x)


def binarize(x, cancel=True):
    """Binarize to {-1, +1} with the straight-through estimator.

    Parameters
    ----------
    x : tensor, any shape, float
    cancel : bool
        See :func:`straight_through`.

    Returns
    -------
    tensor, same shape and dtype
        Forward ``sign(x)`` with ``sign(0) = +1``; backward ``1[|x| <= 1]``.
    """
    return _binarize[cancel](_as_tensor(x))


def ternarize(x, threshold, cancel=True):
    """Ternarize to {-1, 0, +1} with the straight-through estimator.

    Parameters
    ----------
    x : tensor, any shape, float
    threshold : float
        Values with ``|x| <= threshold`` map to 0.
    cancel : bool
        See :func:`straight_through`.

    Returns
    -------
    tensor, same shape and dtype
        Forward ``sign(x) * 1[|x| > threshold]``; backward ``1[|x| <= 1]``.
    """
    return straight_through(_ternary(float(threshold)), cancel)(_as_tensor(x))


def quantize(x, levels=2, threshold=0.0, cancel=True):
    """Quantize ``x`` to ``levels`` values: 2 calls :func:`binarize`, 3 :func:`ternarize`."""
    if levels == 2:
        return binarize(x, cancel)
    if levels == 3:
        return ternarize(x, threshold, cancel)
    raise ValueError(f"levels {levels_problem(levels)}. Received: levels={levels}")


def check_quantizer_args(levels, threshold):
    """Raise ``ValueError`` with the bad value unless ``levels`` in (2, 3) and 0 <= threshold < 1."""
    for name, value, problem in (("levels", levels, levels_problem(levels)),
                                 ("threshold", threshold, threshold_problem(threshold))):
        if problem:
            raise ValueError(f"{name} {problem}. Received: {name}={value}")


def rotated_quantize(w, rotation, levels=2, threshold=0.0):
    """Generalized binarization transformation ``R^T Q(R w)`` of each column of ``w``.

    Parameters
    ----------
    w : tensor, shape (d, n), float
        One vector per column (a layer's flattened filters).
    rotation : tensor, shape (d, d)
        A fixed orthogonal matrix R (Haar-random in `bnn.layers.HaarRotation`).
    levels, threshold
        As in :func:`quantize`, applied in the rotated coordinates.

    Returns
    -------
    tensor, shape (d, n)
        Forward ``R^T Q(R w)`` (Anderson & Berg 2018, "generalized binarization transformation");
        backward the identity, the straight-through rule without cancellation: through the chain
        ``R^T dQ R`` with ``dQ = I`` it is ``R^T R = I``, so the two backward matmuls are skipped.
    """
    rotation = _as_tensor(rotation)
    q = _sign if levels == 2 else _ternary(float(threshold))

    def forward(x):
        return ops.matmul(ops.transpose(rotation), q(ops.matmul(rotation, x)))

    return straight_through(forward, cancel=False)(_as_tensor(w))

