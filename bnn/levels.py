"""The quantization levels and thresholds that bnn supports, checked in one place.

Kept free of Keras, so the command line (``bnn.config``) checks its flags without loading
TensorFlow, and the layers (``bnn.quantizers``) check their arguments with the same rule.
"""

LEVELS = (2, 3)  # binary {-1, +1}, ternary {-1, 0, +1}


def levels_problem(levels):
    """What is wrong with ``levels`` (a phrase to follow its name), or None if it is supported."""
    return None if levels in LEVELS else "must be 2 (binary) or 3 (ternary)"


def threshold_problem(threshold):
    """What is wrong with a ternarization ``threshold``, or None if it lies in [0, 1)."""
    return None if 0.0 <= threshold < 1.0 else "must lie in [0, 1)"
