"""How a run uses the machine: XLA or not, steps per execution, mixed precision, several devices.

``jit_compile``, ``steps_per_execution`` and ``distribute`` change only the speed of a run, so
a run may be resumed with other values (:data:`bnn.config.RUNTIME_FIELDS`). ``dtype_policy``
changes the arithmetic and is part of the run's identity.

``train_and_evaluate`` enters :func:`session` around everything it builds, loads and trains,
and :func:`apply` sets the compile mode on a fresh or a resumed model.
"""

import contextlib
import importlib.util

import keras

from bnn import cluster
from bnn.errors import BnnError

# Steps run per call into the compiled function where a GPU or TPU makes the host's per-step
# work (Python, callbacks, dispatch) the bottleneck. On JAX, Keras loops over the compiled step in
# Python, so this thins the callbacks only. Not tuned: benchmarks/bench_gpu.py's spe=N variants
# compare values (docs/performance.md).
ACCELERATOR_STEPS_PER_EXECUTION = 32


def backend():
    return keras.backend.backend()


def accelerators():
    """The GPUs / TPUs the active backend sees (empty on a CPU-only machine)."""
    if backend() == "jax":
        import jax

        return [d for d in jax.devices() if d.platform != "cpu"]
    if backend() == "tensorflow":
        import tensorflow as tf

        return tf.config.list_logical_devices("GPU") + tf.config.list_logical_devices("TPU")
    return []


def devices():
    """The devices a data-parallel run spreads over: every accelerator, else every CPU device.

    Returns
    -------
    list
        ``jax.Device`` objects on JAX, device names (``'/device:CPU:0'``...) on TensorFlow.
    """
    found = accelerators()
    if found:
        return found if backend() == "jax" else [d.name for d in found]
    if backend() == "jax":
        import jax

        return jax.devices("cpu")
    import tensorflow as tf

    return [d.name for d in tf.config.list_logical_devices("CPU")]


class _Auto:
    jit_compile = None  # the form --jit_compile auto chose for the run in progress (bnn.jit_auto)


def set_auto_jit_compile(on):
    """Make ``--jit_compile auto`` mean ``on`` (a bool) until the session ends."""
    _Auto.jit_compile = on


def jit_compile(config):
    """Whether to compile the train step with XLA: ``--jit_compile on|off``, or ``auto``.

    ``auto`` is what :mod:`bnn.jit_auto` chose for the run in progress (by timing both forms on
    this machine), else :func:`rule_jit_compile`. On JAX, ``jit_compile=False`` means op-by-op
    eager execution.
    """
    if config.jit_compile != "auto":
        return config.jit_compile == "on"
    if _Auto.jit_compile is not None:
        return _Auto.jit_compile
    return rule_jit_compile(config)


def rule_jit_compile(config):
    """The form ``auto`` took before it measured: on, but under ``tf.distribute``, where Keras
    itself turns XLA off (runs begun then resume with it, bit-identically)."""
    if backend() == "jax":
        return True
    if backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not tf.distribute.has_strategy()


def steps_per_execution(config):
    """Training steps per call into the compiled function: ``--steps_per_execution``, 0 = auto.

    Auto is 1 on a CPU, where a step costs milliseconds and the host's overhead is lost in it,
    and :data:`ACCELERATOR_STEPS_PER_EXECUTION` on a GPU or TPU.
    """
    if config.steps_per_execution:
        return config.steps_per_execution
    return ACCELERATOR_STEPS_PER_EXECUTION if accelerators() else 1


def eval_batch_size(config):
    """Batch size for validation and test: four training batches, at least 200 images.

    Evaluation keeps no activations for a backward pass, so larger batches fit and spend less
    time per image in per-step overhead; batch norm uses its moving statistics, so the result
    does not depend on the batch size.
    """
    size = max(4 * config.batch_size, 200)
    shards = _shards(config)
    return -(-size // shards) * shards  # every batch splits evenly over the devices


def _shards(config):
    """How many parts JAX splits every batch into (1 unless distributing on JAX)."""
    return len(devices()) if distributing(config) and backend() == "jax" else 1


def apply(model, config):
    """Set the compile mode of a compiled (or just loaded) ``model`` for this run; return it."""
    model.jit_compile = jit_compile(config)
    model.steps_per_execution = steps_per_execution(config)
    # Compiled functions are built on first use; drop any built with other settings.
    model.train_function = model.test_function = model.predict_function = None
    return model


@contextlib.contextmanager
def session(config, print_fn=print):
    """Set the dtype policy and, with ``--distribute``, spread the run over all devices.

    Everything that creates or loads a model must run inside: on TensorFlow, variables made in
    a ``MirroredStrategy`` scope are mirrored; on JAX, ``keras.distribution.DataParallel``
    shards each batch and replicates the weights.

    Raises
    ------
    BnnError
        If ``--distribute`` cannot split ``--batch_size`` evenly over the devices.
    """
    keras.config.set_dtype_policy(config.dtype_policy)
    try:
        with cluster.join(config, print_fn), _distribution(config, print_fn):
            yield
    finally:
        keras.config.set_dtype_policy("float32")
        _Auto.jit_compile = None


def distributing(config):
    """Whether the run is data-parallel: ``--distribute``, or a run over several processes."""
    return config.distribute or cluster.count() > 1


@contextlib.contextmanager
def _distribution(config, print_fn):
    if not distributing(config):
        yield
        return
    found = devices()
    if len(found) < 2 and cluster.count() == 1:
        print_fn(f"--distribute: only one device ({_name(found[0])}) is visible: training on it alone")
        yield
        return
    if config.batch_size % len(found):
        raise BnnError(f"--distribute splits each batch over {len(found)} devices, but --batch_size "
                       f"{config.batch_size} is not a multiple of {len(found)}")
    print_fn(f"--distribute: data-parallel over {len(found)} devices ({', '.join(map(_name, found))}), "
             f"{config.batch_size // len(found)} images each per step")
    if backend() == "jax":
        # Over several processes each feeds its own share of every batch (train.py, through
        # cluster.local_share): Keras must not split the arrays again.
        distribution = keras.distribution.DataParallel(devices=found,
                                                       auto_shard_dataset=cluster.count() == 1)
        with distribution.scope():
            yield
    elif backend() == "tensorflow":
        import tensorflow as tf

        with tf.distribute.MirroredStrategy(found).scope():
            yield
    else:
        raise BnnError(f"--distribute needs the jax or tensorflow backend, not {backend()}")


def trim_for_devices(data, config, print_fn=print):
    """Drop the last few images of each split so JAX can shard every batch evenly over devices.

    ``keras.distribution.DataParallel`` needs every batch, the last one of an epoch included, to
    split evenly; with ``n`` devices at most ``n - 1`` images of a split are left out (none for the
    official data sets). TensorFlow's ``MirroredStrategy`` splits uneven batches itself.

    Parameters
    ----------
    data : Dataset
        ``(x_train, y_train, x_val, y_val, x_test, y_test)`` as ``bnn.runs.load_dataset`` returns.
    """
    n = _shards(config)
    if n < 2:
        return data
    arrays = list(data)
    for i, split in ((0, "training"), (2, "validation"), (4, "test")):
        keep = len(arrays[i]) - len(arrays[i]) % n
        if keep < len(arrays[i]):
            print_fn(f"--distribute: leaving out the last {len(arrays[i]) - keep} {split} images so "
                     f"that every batch splits over {n} devices")
            arrays[i], arrays[i + 1] = arrays[i][:keep], arrays[i + 1][:keep]
    return type(data)(*arrays)


def _name(device):
    return device if isinstance(device, str) else f"{device.platform}:{device.id}"


def tensorboard_available():
    """Keras writes TensorBoard logs through ``tf.summary``, on either backend."""
    return importlib.util.find_spec("tensorflow") is not None
