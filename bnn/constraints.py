"""Weight constraints for the high-precision latent weights."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="bnn")
class Clip(keras.constraints.Constraint):
    """Clip weights to ``[-bound, bound]`` after every optimizer step.

    Latent weights beyond +-1 would never change sign again (their straight-through gradient
    is cancelled), so BinaryConnect keeps them in [-1, 1].
    """

    def __init__(self, bound=1.0):
        self.bound = float(bound)

    def __call__(self, w):
        return ops.clip(w, -self.bound, self.bound)

    def get_config(self):
        return {"bound": self.bound}

