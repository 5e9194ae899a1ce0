"""Loss functions over integer class labels."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="bnn")
def squared_hinge(y_true, y_pred):
    """Mean squared hinge loss on +-1 targets (BinaryNet's loss).

    Parameters
    ----------
    y_true : int tensor, shape (n,) or (n, 1)
        Class labels.
    y_pred : tensor, shape (n, n_classes)
        Scores.

    Returns
    -------
    tensor, shape (n,)
        ``mean_k max(0, 1 - t_k * s_k)**2`` with ``t_k = +1`` for the true class, else -1.
    """
    n_classes = ops.shape(y_pred)[-1]
    labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
    targets = ops.one_hot(labels, n_classes, dtype=y_pred.dtype) * 2.0 - 1.0
    return ops.mean(ops.square(ops.relu(1.0 - targets * y_pred)), axis=-1)


def get_loss(loss_mode):
    """The loss for ``--loss_mode``: ``'hinge-loss'`` or ``'softmax'`` (cross-entropy on scores)."""
    if loss_mode == "hinge-loss":
        return squared_hinge
    if loss_mode == "softmax":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    raise ValueError(f"loss_mode must be 'hinge-loss' or 'softmax'. Received: loss_mode={loss_mode!r}")
