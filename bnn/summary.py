"""How small and how cheap a network is: weights by bit width, their memory, MACs by precision.

``bnn.summary(model)`` (this module is callable) or ``python -m bnn.summary --run_dir RUN_DIR``
prints, per layer, the precision of its input, its output shape, its weights by bit width (the ``precision``
each quantizer declares: 1 for sign, 2 for ternary, k for ``uniform:bits=k``; 32 for floats: batch
norm, kernels that are not quantized or are rotated back), their memory, and its multiply-
accumulates by precision; then the packed and float32 sizes, the compression ratio and the share
of MACs below 32 bits. The table follows ``larq.models.summary``.

A MAC is counted at the wider of its two operands: binary only if both the input and the weights
are binary, ternary if both are at most ternary, and so on, else 32-bit (the first layer, whose
input is the float image, and any layer on the float path).
"""

if __name__ == "__main__":  # parse before the imports below load TensorFlow: --help is instant
    import sys

    from bnn.commands import summary

    sys.exit(summary())

import sys
import types

import keras
import numpy as np

from bnn.layers import QuantActivation, QuantConv2D, QuantDense

BITS = (1, 2, 32)  # always shown; a quantizer of another precision adds its own column


def _bits(quantizer):
    """Bits per value of what ``quantizer`` outputs: its declared ``precision``; 32 for None (float)."""
    return 32 if quantizer is None else int(quantizer.precision)


def _macs(layer):
    kernel_size = int(np.prod(layer.kernel.shape))
    if isinstance(layer, QuantConv2D):
        height, width = layer.output.shape[1:3]
        return kernel_size * height * width
    return kernel_size


def layer_rows(model):
    """Per layer: name, input bits, output shape, weights and MACs by bit width.

    Returns
    -------
    list of dict
        Keys ``name``, ``input_bits`` (1, 2 or 32), ``output_shape`` (tuple, batch left out),
        ``params`` and ``macs`` (each ``{1: n, 2: n, 32: n}``) and ``memory_bytes`` (of the
        params at their bit widths).
    """
    widths = sorted(set(BITS) | {_bits(q) for layer in model.layers
                                 for q in (getattr(layer, "kernel_quantizer", None), getattr(layer, "quantizer", None))})
    rows, bits = [], 32  # the image is float
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        params, macs = dict.fromkeys(widths, 0), dict.fromkeys(widths, 0)
        input_bits = bits
        if isinstance(layer, (QuantDense, QuantConv2D)):
            w_bits = _bits(layer.kernel_quantizer)
            params[w_bits] += int(np.prod(layer.kernel.shape))
            macs[max(w_bits, input_bits)] += _macs(layer)
            bits = 32
        elif isinstance(layer, QuantActivation):
            bits = _bits(layer.quantizer)
        else:
            params[32] += sum(int(np.prod(w.shape)) for w in layer.weights)
            if isinstance(layer, keras.layers.BatchNormalization):
                bits = 32
        rows.append({"name": layer.name, "input_bits": input_bits,
                     "output_shape": tuple(layer.output.shape[1:]), "params": params, "macs": macs,
                     "memory_bytes": sum(n * b for b, n in params.items()) / 8})
    return rows


def totals(rows):
    """Sums over :func:`layer_rows`: params and MACs by bit width, packed and float32 bytes,
    ``compression`` (float32 / packed) and ``quantized_mac_share`` (binary or ternary MACs / all)."""
    widths = sorted(rows[0]["params"]) if rows else list(BITS)
    params = {b: sum(r["params"][b] for r in rows) for b in widths}
    macs = {b: sum(r["macs"][b] for r in rows) for b in widths}
    packed = sum(r["memory_bytes"] for r in rows)
    float32 = 4 * sum(params.values())
    all_macs = sum(macs.values())
    return {"params": params, "macs": macs, "packed_bytes": packed, "float32_bytes": float32,
            "compression": float32 / packed if packed else float("nan"),
            "quantized_mac_share": sum(n for b, n in macs.items() if b < 32) / all_macs if all_macs else 0.0}


def _count(n):
    return f"{n:,}" if n else "0"


def format_summary(name, rows, tot):
    """The table of :func:`summary` as text."""
    bits = sorted(tot["params"])
    header = ["Layer", "Input prec. (bit)", "Outputs", *(f"# {b}-bit" for b in bits),
              "Memory (kB)", *(f"{b}-bit MACs" for b in bits)]
    table = [[r["name"], str(r["input_bits"]), str(r["output_shape"]).replace(" ", ""),
              *(_count(r["params"][b]) for b in bits), f"{r['memory_bytes'] / 1e3:.2f}",
              *(_count(r["macs"][b]) for b in bits)] for r in rows]
    table.append(["Total", "", "", *(_count(tot["params"][b]) for b in bits),
                  f"{tot['packed_bytes'] / 1e3:.2f}", *(_count(tot["macs"][b]) for b in bits)])
    if tuple(bits) == BITS:
        packed_at, quantized = "1-bit binary, 2-bit ternary, 32-bit float weights", "Binary or ternary"
    else:
        packed_at, quantized = "weights at their quantizers' precision", "Below 32-bit"
    widths = [max(len(row[i]) for row in [header] + table) for i in range(len(header))]
    line = lambda row: "  ".join(c.ljust(w) if i < 3 else c.rjust(w)  # noqa: E731
                                 for i, (c, w) in enumerate(zip(row, widths)))
    rule = "-" * len(line(header))
    out = [f"{name} summary", rule, line(header), rule, *map(line, table[:-1]), rule, line(table[-1]), rule]
    out += [f"Total params: {sum(tot['params'].values()):,}",
            f"Packed size ({packed_at}): {tot['packed_bytes'] / 1e6:.3f} MB",
            f"Float32 size: {tot['float32_bytes'] / 1e6:.3f} MB",
            f"Memory compression ratio: {tot['compression']:.1f}x",
            f"{quantized} MACs: {100 * tot['quantized_mac_share']:.2f}% of "
            f"{sum(tot['macs'].values()):,}"]
    return "\n".join(out)


def summary(model, print_fn=print):
    """Print a Larq-style summary of ``model`` and return its numbers.

    Parameters
    ----------
    model : keras.Model
        A network built by :func:`bnn.model.build_model` (or loaded with :func:`bnn.runs.load_run`).
    print_fn : callable or None
        Called with the table as one string; None prints nothing.

    Returns
    -------
    dict
        ``layers``: :func:`layer_rows`; ``totals``: :func:`totals`.
    """
    rows = layer_rows(model)
    tot = totals(rows)
    if print_fn is not None:
        print_fn(format_summary(model.name, rows, tot))
    return {"layers": rows, "totals": tot}


def main(argv=None):
    """Command line: ``python -m bnn.summary --run_dir RUN_DIR [--which best|final|N]``; returns the
    exit status (``bnn.commands.summary``)."""
    from bnn.commands import summary as command

    return command(argv)


class _CallableModule(types.ModuleType):
    """Makes ``bnn.summary(model)`` work: importing this module sets ``bnn.summary`` to the
    module itself, which would hide a function of the same name in ``bnn/__init__.py``."""

    def __call__(self, model, print_fn=print):
        return summary(model, print_fn)


sys.modules[__name__].__class__ = _CallableModule
