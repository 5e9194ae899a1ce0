"""bnn: binary and ternary neural networks, and the geometry that explains why they work.

A reproduction of Anderson & Berg, *The High-Dimensional Geometry of Binary Neural Networks*
(ICLR 2018, arXiv:1705.07199) on Keras 3.

Import the submodules you need (``from bnn import layers``). This file imports nothing heavy,
so the numpy-only geometry modules load without TensorFlow, and it changes nothing outside the
package (no import hooks, no redirected output) but one environment default:

* TensorFlow's CPU tensors come from its own caching (BFC) allocator instead of ``malloc``,
  unless ``TF_CPU_ALLOCATOR_USE_BFC`` is already set. A compiled training step needs its
  scratch memory in one block; above glibc's 32 MiB limit ``malloc`` maps fresh pages for it at
  every step and the kernel zeroes them. The binary 3x2048 MLP's block is 38.6 MiB (the
  quantized kernels; the float MLP's is 18.5), so page faults were a quarter of its CPU time
  and binarization seemed to cost 1.2x float per step: with the BFC allocator it costs 1.0x
  (``benchmarks/bench_train.py --variants binary/xla binary/xla/malloc float/xla``). TensorFlow
  reads the variable at its first CPU allocation, so this works even after ``import tensorflow``.

Loading a checkpoint: ``bnn.runs.load_model_file(path)`` (a one-line error for a bad file), or
plain ``keras.saving.load_model(path)`` after ``import bnn.layers``, which registers bnn's layers,
constraints and loss with Keras. The command-line programs hold back TensorFlow's start-up
logging themselves (``bnn.cli.load_keras``).
"""

import importlib
import os

__version__ = "0.1.0"

os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")


def __getattr__(name):
    # bnn.summary(model): the submodule is callable; load it (and Keras) only when asked.
    if name == "summary":
        return importlib.import_module("bnn.summary")
    raise AttributeError(f"module 'bnn' has no attribute {name!r}")
