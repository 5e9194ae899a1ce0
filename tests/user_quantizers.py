"""A quantizer defined outside bnn, as a user would write one in their own module.

Registered under the user's own package name; bnn learns about it only through the
`bnn.quantizers.Quantizer` interface (a dotted path on the command line, or an instance).
"""

import keras
from keras import ops

from bnn.quantizers import Quantizer


@keras.saving.register_keras_serializable(package="user")
class RoundedClip(Quantizer):
    """``round(clip(scale * x, -1, 1))``: ternary with threshold ``0.5 / scale``."""

    precision = 2

    def __init__(self, scale=1.0):
        self.scale = float(scale)

    def quantize(self, x):
        return ops.round(ops.clip(x * self.scale, -1.0, 1.0))

    def gaussian_pieces(self, std=1.0):
        t = 0.5 / (self.scale * std)
        return [-t, t], [-1.0, 0.0, 1.0]

    def get_config(self):
        return {"scale": self.scale}


@keras.saving.register_keras_serializable(package="user")
class Bare(Quantizer):
    """Only ``quantize``: every declaration keeps its default."""

    def quantize(self, x):
        return ops.where(x > 0.5, 1.0, 0.0) * x
