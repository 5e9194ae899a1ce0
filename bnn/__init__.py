"""bnn: binary and ternary neural networks, and the geometry that explains why they work.

A reproduction of Anderson & Berg, *The High-Dimensional Geometry of Binary Neural Networks*
(ICLR 2018, arXiv:1705.07199) on Keras 3.

Import the submodules you need (``from bnn import layers``). This file imports nothing heavy,
so the numpy-only geometry modules load without TensorFlow.
"""

__version__ = "0.1.0"


def __getattr__(name):
    # bnn.summary(model): the submodule is callable; load it (and Keras) only when asked.
    if name == "summary":
        import importlib

        return importlib.import_module("bnn.summary")
    raise AttributeError(f"module 'bnn' has no attribute {name!r}")
