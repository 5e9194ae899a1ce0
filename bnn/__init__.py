"""bnn: binary and ternary neural networks, and the geometry that explains why they work.

A reproduction of Anderson & Berg, *The High-Dimensional Geometry of Binary Neural Networks*
(ICLR 2018, arXiv:1705.07199) on Keras 3.

Import the submodules you need (``from bnn import layers``). This file imports nothing heavy,
so the numpy-only geometry modules load without TensorFlow. It does three things when (and
only when) TensorFlow or Keras are imported later, by anyone:

* TensorFlow's CPU tensors come from its own caching (BFC) allocator instead of ``malloc``,
  unless ``TF_CPU_ALLOCATOR_USE_BFC`` is already set. A compiled training step needs its
  scratch memory in one block; above glibc's 32 MiB limit ``malloc`` maps fresh pages for it at
  every step and the kernel zeroes them. The binary 3x2048 MLP's block is 38.6 MiB (the
  quantized kernels; the float MLP's is 18.5), so page faults were a quarter of its CPU time
  and binarization seemed to cost 1.2x float per step: with the BFC allocator it costs 1.0x
  (``benchmarks/bench_train.py --variants binary/xla binary/xla/malloc float/xla``).

* TensorFlow's C++ start-up logging (absl, oneDNN, CUDA probing) is silenced, so a command's
  output starts with its own first line. Set ``BNN_TF_LOGS=1`` to see it.
* Once Keras is loaded, bnn's layers, constraints and loss are registered, so plain
  ``keras.saving.load_model(path)`` loads any of our checkpoints.
"""

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys

__version__ = "0.1.0"

# Read by TensorFlow at its first CPU allocation, so this works even after `import tensorflow`
# (see the module docstring for why).
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")


_registration_pending = False


def register_keras_objects():
    """Register every custom Keras object of bnn (importing the modules runs the decorators)."""
    global _registration_pending
    try:
        import bnn.constraints  # noqa: F401
        import bnn.layers  # noqa: F401
        import bnn.losses  # noqa: F401
    except ImportError:
        # Keras was first imported by a module that bnn.layers needs (bnn.quantizers or
        # bnn.constraints), which is half-loaded now: it calls register_if_pending when done.
        _registration_pending = True
    else:
        _registration_pending = False


def register_if_pending():
    """Finish a registration that :func:`register_keras_objects` had to put off."""
    if _registration_pending:
        register_keras_objects()


@contextlib.contextmanager
def _quiet_stderr():
    """Send file descriptor 2 to /dev/null: TensorFlow's C++ logging bypasses ``sys.stderr``."""
    if os.environ.get("BNN_TF_LOGS"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


class _ImportHook(importlib.abc.MetaPathFinder):
    """Wraps the first import of ``tensorflow`` (quietly) and ``keras`` (then registers bnn)."""

    def find_spec(self, name, path=None, target=None):
        if name not in ("tensorflow", "keras"):
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        exec_module = spec.loader.exec_module

        def exec_tensorflow(module):
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            with _quiet_stderr():
                exec_module(module)
                module.config.list_physical_devices()  # probes CUDA now, while quiet

        def exec_keras(module):
            exec_module(module)
            register_keras_objects()

        spec.loader.exec_module = exec_tensorflow if name == "tensorflow" else exec_keras
        return spec


if "keras" in sys.modules:
    register_keras_objects()
elif not any(isinstance(f, _ImportHook) for f in sys.meta_path):
    sys.meta_path.insert(0, _ImportHook())


def __getattr__(name):
    # bnn.summary(model): the submodule is callable; load it (and Keras) only when asked.
    if name == "summary":
        return importlib.import_module("bnn.summary")
    raise AttributeError(f"module 'bnn' has no attribute {name!r}")
